"""Run by test_train_e2e.test_distributed_two_processes, under
``paddle.distributed.launch`` or as one process:

    python dist_driver.py CONFIG OUT BATCH_SIZE [--global-bn]

Trains 2 iterations of BATCH_SIZE images per process (seed 5) from initial
weights that are the same in every run (``paddle.seed(0)`` before the model
is built; rank 0 writes them to ``OUT/init.npz``), and records, per rank,
the sample indices loaded at each iteration (``OUT/seen_<rank>.json``) and
the final weights (``OUT/weights_<rank>.npz``). ``--global-bn`` makes every
BatchNorm normalise with its running statistics in training too
(``use_global_stats``), so that the forward pass of each image does not
depend on the others of its batch or on how the batch is split over ranks.
"""

import json
import os
import sys

import numpy as np
import paddle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from paddleseg.core import train  # noqa: E402
from paddleseg.cli.build import setup_device  # noqa: E402
from paddleseg.cvlibs import Config, builder  # noqa: E402
from paddleseg.utils.dist import init_distributed  # noqa: E402

ITERS = 2


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


def use_global_bn_stats(model):
    """Make every BatchNorm of ``model`` use its running statistics in training."""
    count = 0
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
            layer._use_global_stats = True
            count += 1
    if not count:
        raise AssertionError('the model has no BatchNorm')


def _weights(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def main(cfg_path, out, batch_size, global_bn=False):
    cfg = Config(cfg_path, opts=['batch_size={}'.format(batch_size),
                                 'iters={}'.format(ITERS)], for_training=True).dic
    setup_device('cpu')
    rank, _ = init_distributed()
    paddle.seed(0)  # the same initial weights in every run and on every rank
    model = builder.build_model(cfg, cfg_path)
    if global_bn:
        use_global_bn_stats(model)
    os.makedirs(out, exist_ok=True)
    if rank == 0:
        np.savez(os.path.join(out, 'init.npz'), **_weights(model))
    data = Recording(builder.build_dataset(cfg, 'train_dataset', cfg_path))
    lr = builder.build_lr_scheduler(cfg, ITERS, cfg_path)
    opt = builder.build_optimizer(cfg, model, lr, cfg_path)
    train(model, data, losses=builder.build_losses(cfg, cfg_path), optimizer=opt,
          iters=ITERS, batch_size=batch_size, save_dir=os.path.join(out, 'ckpt'),
          save_interval=ITERS, log_iters=1, seed=5)
    # the loader reads ahead (a prefetch thread): the first ITERS batches
    # loaded are the ones trained on
    per_iter = [data.loaded[i:i + batch_size]
                for i in range(0, ITERS * batch_size, batch_size)]
    with open(os.path.join(out, 'seen_{}.json'.format(rank)), 'w') as f:
        json.dump(per_iter, f)
    np.savez(os.path.join(out, 'weights_{}.npz'.format(rank)), **_weights(model))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), '--global-bn' in sys.argv[4:])
