"""Measure the training memory of a config's model on the CPU, at small
sizes, to extrapolate what a GPU needs at the training crop.

    python utils/measure_train_memory.py \
        --config configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512x1024_80k.yml \
        --sizes 128x256 256x512 512x1024

It builds the model in train mode (random weights: the pretrained download
is skipped), runs one unmeasured step (which allocates the gradients), then
for each ``HxW`` one step of ``--batch`` images (default 1): forward, the
config's losses, backward. It reads paddle's host allocator counters
(``core.host_memory_stat_*_value('Allocated', 0)``: bytes in use, not what
the allocator reserved), all above what was in use before the step
(parameters, buffers, gradients, printed apart):

* ``saved``: still in use after forward + loss: the tensors kept for
  backward (the activations);
* ``fwd_peak`` / ``bwd_peak``: the peak during forward + loss, and during
  backward.

It prints one line per size and the least-squares fit ``a + b * pixels`` of
``saved`` and ``bwd_peak``, evaluated at ``--target`` (default
``4x512x1024``: batch 4 at the Cityscapes crop). fp32 only: paddle's
autocast changes nothing on a CPU (a bfloat16 O1 forward of Paddle 3.3.1
saved exactly the fp32 bytes), so fp16 is estimated, not measured. The
numbers and how to use them are in docs/training.md (Memory).
"""

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_size(text):
    h, w = text.lower().split('x')
    return int(h), int(w)


def measure(model, losses, size, batch=1):
    import paddle
    from paddle.base import core

    from paddleseg.core.trainer import compute_losses

    def allocated():
        return core.host_memory_stat_current_value('Allocated', 0)

    h, w = size
    img = paddle.randn([batch, 3, h, w])
    label = paddle.randint(0, 19, [batch, h, w], dtype='int64')
    gc.collect()
    base = allocated()
    core.host_memory_stat_reset_peak_value('Allocated', 0)
    tic = time.time()
    logits = model(img)
    loss = paddle.add_n(compute_losses(logits, label, losses))
    saved = allocated() - base
    fwd_peak = core.host_memory_stat_peak_value('Allocated', 0) - base
    core.host_memory_stat_reset_peak_value('Allocated', 0)
    loss.backward()
    bwd_peak = core.host_memory_stat_peak_value('Allocated', 0) - base
    seconds = time.time() - tic
    model.clear_gradients()
    del logits, loss
    gc.collect()
    return {'saved': saved, 'fwd_peak': fwd_peak, 'bwd_peak': bwd_peak, 'seconds': seconds}


def fit(points, target):
    """Least-squares ``a + b * x`` through ``points`` [(x, y)], at ``target``."""
    import numpy as np
    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    b, a = np.polyfit(x, y, 1) if len(points) > 1 else (y[0] / x[0], 0.0)
    return a, b, a + b * target


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', required=True)
    p.add_argument('--sizes', nargs='+', default=['64x128', '128x256', '256x512'])
    p.add_argument('--target', default='4x512x1024', help='BATCHxHxW to extrapolate to.')
    p.add_argument('--batch', type=int, default=1, help='Images per measured step.')
    args = p.parse_args(argv)

    import paddle
    from paddle.base import core

    import paddleseg  # noqa: F401
    from paddleseg.cvlibs import Config, SegBuilder

    paddle.set_device('cpu')
    cfg = Config(args.config, opts=['model.backbone.pretrained=null'])
    builder = SegBuilder(cfg)
    gc.collect()
    before = core.host_memory_stat_current_value('Allocated', 0)
    model = builder.model
    params = core.host_memory_stat_current_value('Allocated', 0) - before
    count = sum(int(q.numel()) for q in model.parameters())
    model.train()
    print('config {}\nparameters {} ({:.1f} MB allocated with buffers), batch {}'.format(
        args.config, count, params / 2 ** 20, args.batch))
    # a first step allocates the gradients (kept, zeroed, from then on)
    before = core.host_memory_stat_current_value('Allocated', 0)
    measure(model, builder.loss, parse_size(args.sizes[0]))
    grads = core.host_memory_stat_current_value('Allocated', 0) - before
    print('gradients {:.1f} MB'.format(grads / 2 ** 20))
    rows = []
    for text in args.sizes:
        size = parse_size(text)
        row = measure(model, builder.loss, size, args.batch)
        pixels = args.batch * size[0] * size[1]
        rows.append((pixels, row))
        print('{:>9}  saved {:8.1f} MB  fwd_peak {:8.1f} MB  bwd_peak {:8.1f} MB  '
              '({:.0f} B/pixel saved, {:.1f} s)'.format(
                  text, row['saved'] / 2 ** 20, row['fwd_peak'] / 2 ** 20,
                  row['bwd_peak'] / 2 ** 20, row['saved'] / pixels, row['seconds']),
              flush=True)
    batch, th, tw = (int(v) for v in args.target.lower().split('x'))
    target = batch * th * tw
    for key in ('saved', 'bwd_peak'):
        a, b, at = fit([(px, r[key]) for px, r in rows], target)
        print('fit {:8}: {:.0f} B + {:.1f} B/pixel -> {:.2f} GB at {}'.format(
            key, a, b, at / 2 ** 30, args.target))


if __name__ == '__main__':
    main()
