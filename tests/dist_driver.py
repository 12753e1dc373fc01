"""Run by test_train_e2e.test_distributed_two_processes under
``paddle.distributed.launch``: trains 2 iterations and records, per rank, the
sample indices loaded at each iteration and the final weights."""

import json
import os
import sys

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddleseg.core import train  # noqa: E402
from paddleseg.cvlibs import config_builder as builder  # noqa: E402
from paddleseg.cvlibs.config import load_and_check  # noqa: E402
from paddleseg.utils.cli import setup_device  # noqa: E402


class Recording:
    """Records which items this rank loads (num_workers=0: same process)."""

    def __init__(self, dataset):
        self.dataset, self.loaded = dataset, []
        self.num_classes = dataset.num_classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.loaded.append(int(index))
        return self.dataset[index]


def main(cfg_path, out):
    cfg = load_and_check(cfg_path, opts=['batch_size=2', 'iters=2'])
    setup_device('cpu')
    model = builder.build_model(cfg, cfg_path)
    data = Recording(builder.build_dataset(cfg, 'train_dataset', cfg_path))
    lr = builder.build_lr_scheduler(cfg, 2, cfg_path)
    opt = builder.build_optimizer(cfg, model, lr, cfg_path)
    train(model, data, losses=builder.build_losses(cfg, cfg_path), optimizer=opt,
          iters=2, batch_size=2, save_dir=os.path.join(out, 'ckpt'),
          save_interval=2, log_iters=1, seed=5)
    rank = paddle.distributed.get_rank()
    os.makedirs(out, exist_ok=True)
    per_iter = [data.loaded[i:i + 2] for i in range(0, len(data.loaded), 2)]
    with open(os.path.join(out, 'seen_{}.json'.format(rank)), 'w') as f:
        json.dump(per_iter, f)
    np.savez(os.path.join(out, 'weights_{}.npz'.format(rank)),
             **{k: v.numpy() for k, v in model.state_dict().items()})


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
