"""Export a trained model for deployment.

    python export.py --config configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512×1024_80k.yml \
        --model_path output/best_model/model.pdparams --save_dir output/inference_model \
        [--format paddle_legacy|paddle|onnx] [--quantize int8 [--calib_num N] [--calib_images DIR]]

Writes the model, its parameters and ``deploy.yaml`` into ``--save_dir``:
``model.pdmodel`` + ``model.pdiparams`` (``paddle_legacy``, the default:
Paddle Inference with any Config, PaddleSeg v2.8.0's
``deploy/python/infer.py``), ``model.json`` + ``model.pdiparams``
(``paddle``: Paddle >= 3.0's new IR) or ``model.onnx`` (``onnx``: ONNX
Runtime; needs ``pip install -r requirements-deploy.txt``). The program is
the eval-mode model (with PointRend's subdivision) and, by default, an
argmax: its output is the ``int32 [N, H, W]`` class map of the normalised
``float32 [N, 3, H, W]`` input. ``--input_shape`` fixes the input size; -1
entries are dynamic.

``--format onnx --quantize int8`` writes the INT8 post-training
quantization of the ONNX model (ONNX Runtime's static quantization of the
convolutions; the subdivision and the point head stay float), calibrated
on ``--calib_num`` images (default 32) of the config's ``val_dataset``, or
of ``--calib_images``; ``deploy.yaml`` records ``precision: int8`` and the
calibration (docs/deployment.md, "INT8"). ``--format paddle_legacy
--quantize int8`` (a GPU build of paddle with TensorRT, a fixed
``--input_shape`` of the images' size) runs Paddle-TensorRT's int8
calibration on the same images instead: the float program, with the
calibration tables in ``_opt_cache`` and the shape ranges beside it, which
``val.py`` / ``predict.py --use_trt`` then run as int8 TensorRT.
"""

import argparse

from paddleseg.cli.args import add_common_args, user_errors
from paddleseg.deploy.deploy_file import DEFAULT_FORMAT, FORMATS, OUTPUT_OPS
from paddleseg.deploy.quantize import DEFAULT_CALIB_NUM, QUANTIZE_CHOICES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export a PointRend-Paddle model.')
    add_common_args(p)
    p.add_argument('--model_path', required=True,
                   help='Weights: model.pdparams (or .safetensors).')
    p.add_argument('--save_dir', default='./output/inference_model',
                   help='Output folder.')
    p.add_argument('--input_shape', nargs=4, type=int, default=[-1, 3, -1, -1],
                   metavar=('N', 'C', 'H', 'W'),
                   help='Input shape; -1 = dynamic. Default: -1 3 -1 -1.')
    p.add_argument('--output_op', choices=list(OUTPUT_OPS),
                   default='argmax',
                   help='argmax: int32 class map [N, H, W]; softmax: '
                        'probabilities [N, C, H, W]; none: logits. Default: argmax.')
    p.add_argument('--format', choices=list(FORMATS), default=DEFAULT_FORMAT,
                   help='paddle_legacy: model.pdmodel, run by Paddle '
                        'Inference with any Config and by PaddleSeg deploy/'
                        'python/infer.py; paddle: model.json '
                        '(Paddle >= 3.0 new IR); onnx: model.onnx (needs '
                        'paddle2onnx). Default: paddle_legacy.')
    p.add_argument('--quantize', choices=list(QUANTIZE_CHOICES), default=None,
                   help='int8: post-training quantization of the ONNX model (--format '
                        'onnx, CPUs), or the TensorRT int8 calibration of a paddle_legacy '
                        'export with a fixed --input_shape (a GPU with TensorRT). '
                        'Default: none (float32).')
    p.add_argument('--calib_num', type=int, default=DEFAULT_CALIB_NUM,
                   help='Calibration images for --quantize. Default: {}.'.format(
                       DEFAULT_CALIB_NUM))
    p.add_argument('--calib_images', default=None,
                   help="Calibrate on this folder's images (or image list) instead "
                        "of the config's val_dataset.")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(args.debug, 'export.py'):
        return run(args)


def run(args):
    from paddleseg.cli.build import build_for_inference
    from paddleseg.deploy import check_format, export, parse_input_shape
    from paddleseg.deploy import quantize as quant
    from paddleseg.errors import ConfigError
    from paddleseg.utils.env import tune_process
    try:
        parse_input_shape(args.input_shape)
    except ValueError as exc:
        raise ConfigError('--input_shape: {}'.format(exc)) from None
    try:
        check_format(args.format)
    except ImportError as exc:  # paddle2onnx missing: say so before the work
        raise ConfigError('--format {}: {}'.format(args.format, exc)) from None
    try:
        quant.check_quantize(args.quantize, args.format, args.input_shape)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    tune_process(training=False)  # MKL's fast path on AMD, before the first kernel
    builder, model = build_for_inference(args)
    builder.export_transforms  # noqa: B018  built now: a bad one fails here, not at deployment
    _, transforms = builder.config.export_transforms
    calib = {}
    if args.quantize:  # the images are checked before the export's work
        paths, source = quant.calibration_images(builder, args.calib_images, args.calib_num)
        calib = {'calib_batches': quant.calibration_batches(paths, builder.export_transforms),
                 'calib_source': source}
    return export(model, args.save_dir, args.input_shape, args.output_op,
                  transforms, format=args.format, quantize=args.quantize, **calib)


if __name__ == '__main__':
    main()
