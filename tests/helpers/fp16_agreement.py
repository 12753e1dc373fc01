"""How far float16 inference moves a model's class maps, measured on a CPU.

A float16 GPU run (a predictor with ``precision='fp16'``, TensorRT fp16,
AMP evaluation) rounds the weights and the input to float16's 10-bit
mantissa and keeps the activations in float16 (products still accumulate in
float32). This emulates that in float32 on the CPU:

* ``'weights+input'``: weights and input rounded to float16;
* ``'weights+input+activations'``: also every leaf layer's output rounded
  to float16 (forward post-hooks),

and gives the share of pixels whose class the rounding leaves unchanged
against the float32 model (:func:`measure`). A randomly initialised model has
many near-ties between its classes, which such rounding flips; a trained
model has far fewer. tests/gpu/conftest.py's fp16 thresholds come from
these numbers (``python tests/helpers/fp16_agreement.py``).

    python tests/helpers/fp16_agreement.py                     # the GPU suite's tiny model
    python tests/helpers/fp16_agreement.py --config C --model_path M --images DIR
"""

import argparse
import glob
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import paddle  # noqa: E402

MODES = ('weights+input', 'weights+input+activations')
# the GPU suite's inputs (tests/gpu/test_trt_predictor_gpu.py SHAPES, seeds n + h + w)
TINY_SHAPES = [(1, 64, 128), (2, 96, 160), (1, 128, 256)]
TINY_SEED = 11  # tests/gpu/conftest.py random_weights


def round16(x):
    """``x`` (a float32 tensor) rounded to the nearest float16, as float32."""
    return x.astype('float16').astype('float32')


def _round_outputs(layer, inputs, output):
    if isinstance(output, paddle.Tensor) and output.dtype == paddle.float32:
        return round16(output)
    if isinstance(output, (list, tuple)):
        return type(output)(round16(o) if isinstance(o, paddle.Tensor)
                            and o.dtype == paddle.float32 else o for o in output)
    return output


def emulate_fp16(model, activations):
    """Round ``model``'s float32 weights and buffers to float16 in place;
    with ``activations``, also every leaf layer's outputs (hooks: the
    returned handles remove them)."""
    with paddle.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype == paddle.float32:
                tensor.set_value(round16(tensor))
    if not activations:
        return []
    return [layer.register_forward_post_hook(_round_outputs)
            for layer in model.sublayers() if not layer.sublayers()]


def class_maps(model, images):
    """``[N, H, W]`` int classes of the float32 ``images`` (``[N, 3, H, W]``)."""
    from paddleseg.core.infer import inference
    with paddle.no_grad():
        return paddle.argmax(inference(model, paddle.to_tensor(images)), axis=1).numpy()


def measure(make_model, batches, modes=MODES):
    """``{mode: [agreement per batch]}``: the class maps of ``make_model()``
    (a fresh float32 model in eval mode) after the rounding of ``mode``,
    against its float32 ones, for each of ``batches`` (float32 arrays)."""
    reference = make_model()
    expected = [class_maps(reference, x) for x in batches]
    out = {}
    for mode in modes:
        model = make_model()
        handles = emulate_fp16(model, activations=mode.endswith('activations'))
        out[mode] = [float(np.mean(class_maps(model, round16(paddle.to_tensor(x)).numpy())
                                   == ref)) for x, ref in zip(batches, expected)]
        for handle in handles:
            handle.remove()
    return out


def tiny_batches():
    return [np.random.default_rng(n + h + w).standard_normal((n, 3, h, w)).astype('float32')
            for n, h, w in TINY_SHAPES]


def tiny_model_factory(cfg_path, seed=TINY_SEED):
    """The GPU suite's tiny model with its seeded random weights (eval mode)."""
    from tiny_data import seeded_model
    return lambda: seeded_model(cfg_path, seed)


def _trained_factory(config, model_path):
    from paddleseg.cli.build import without_pretrained
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils.checkpoint import load_entire_model

    def make():
        cfg = Config(config)
        without_pretrained(cfg.dic)
        model = SegBuilder(cfg).model
        load_entire_model(model, model_path)
        model.eval()
        return model
    return make


def _image_batches(folder, limit):
    """The first ``limit`` .png images under ``folder``, RGB, normalised as
    the default ``Normalize`` does (``(img / 255 - 0.5) / 0.5``), one per batch."""
    import cv2
    paths = sorted(glob.glob(os.path.join(folder, '**', '*.png'), recursive=True))[:limit]
    out = []
    for path in paths:
        im = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out.append(((im.astype('float32') / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', help='default: the GPU suite\'s tiny model, seeded')
    parser.add_argument('--model_path')
    parser.add_argument('--images', help='a folder of .png images (normalised as val)')
    parser.add_argument('--limit', type=int, default=24)
    args = parser.parse_args(argv)
    paddle.set_device('cpu')
    if args.config is None:
        import tempfile
        from robust_helpers import NARROW_MODEL
        from tiny_data import make_tiny_cityscapes, write_tiny_config
        base = tempfile.mkdtemp()
        root = make_tiny_cityscapes(os.path.join(base, 'data'), n_train=4, n_val=2)
        cfg = write_tiny_config(os.path.join(base, 'tiny.yml'), root, iters=4, batch_size=1,
                                crop=32, model=NARROW_MODEL)
        result = measure(tiny_model_factory(cfg), tiny_batches())
        what = 'tiny model, random weights (seed {}), inputs {}'.format(TINY_SEED, TINY_SHAPES)
    else:
        batches = _image_batches(args.images, args.limit)
        result = measure(_trained_factory(args.config, args.model_path), batches)
        what = '{} ({}), {} images of {}'.format(args.config, args.model_path, len(batches),
                                                 args.images)
    print(what)
    for mode, shares in result.items():
        print('  {:28s} min {:.4%}  mean {:.4%}  per batch {}'.format(
            mode, min(shares), float(np.mean(shares)),
            ', '.join('{:.4%}'.format(s) for s in shares)))
    return result


if __name__ == '__main__':
    main()
