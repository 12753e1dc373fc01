"""Predict images with a trained model and save colour maps and overlays.

    python predict.py --config configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512×1024_80k.yml \
        --model_path output/best_model/model.pdparams \
        --image_path data/cityscapes/leftImg8bit/val --save_dir output/result

Writes ``<save_dir>/pseudo_color_prediction/`` (palette PNGs whose pixel
values are the class ids) and ``<save_dir>/added_prediction/`` (overlays),
keeping the sub-folders of ``--image_path``.

``--engine inference|onnx|openvino --model_path <export folder>`` runs the
exported model (Paddle Inference, ONNX Runtime, OpenVINO Runtime) instead of
the dygraph one, in ``--precision`` (fp32; fp16: Paddle Inference on a GPU;
bf16: OpenVINO on a CPU with AMX-BF16 or AVX512-BF16).

Exit status: 0 every image predicted; 1 some could not be read (each named on
stderr; the others are written); 2 a user error (one line on stderr).

Several processes: ``python -m paddle.distributed.launch predict.py ...``;
each predicts its own share of the images (each written once). Rank 0
names the images skipped on any rank and exits 1 for them, which is the
launcher's exit status; the other ranks exit 0 (a rank of the launcher that
fails first would have the others stopped with SIGTERM, and the launcher
reports the status of the first failed rank in rank order).
"""

import argparse
import sys

from paddleseg.cli.args import (add_common_args, add_inference_args, add_precision_args,
                                hide_known_warnings, user_errors)
from paddleseg.cli.engine_args import add_engine_args

hide_known_warnings()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='predict.py',
                                description='Predict with a PointRend-Paddle model.')
    add_common_args(p)
    p.add_argument('--model_path', required=True,
                   help='Weights: model.pdparams; with --engine '
                        'inference|onnx|openvino, the folder export.py wrote.')
    p.add_argument('--image_path', required=True,
                   help='An image, a folder (recursive) or a .txt list of images.')
    p.add_argument('--save_dir', default='./output/result', help='Output folder.')
    p.add_argument('--aug_pred', action='store_true',
                   help='Multi-scale / flip prediction (see --scales, --flip_*).')
    add_inference_args(p)
    add_engine_args(p)
    add_precision_args(p, engines=True, amp=False)  # of --engine; dygraph: fp32
    p.add_argument('--custom_color', nargs='+', type=int, default=None,
                   help='Class colours as r g b r g b ...')
    p.add_argument('--save_cityscapes', default=None, metavar='DIR',
                   help='Also write Cityscapes label-id PNGs, '
                        'DIR/<city>/<city>_<seq>_<frame>_pred_labelIds.png '
                        '(a test-server submission; 19-class models only).')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(args.debug, 'predict.py'):
        result = run(args)
    if result.get('rank', 0) != 0:
        return  # rank 0 reports for every rank
    # the readable images are done; name each one that was not, exit 1
    for path, reason in result['failed']:
        print('predict.py: error: skipped {}: {}'.format(path, reason), file=sys.stderr)
    if result['failed'] or not result['done']:
        raise SystemExit(1)


def run(args):
    import paddle
    from paddleseg.cli.build import build_for_inference
    from paddleseg.core.predict import predict_images
    from paddleseg.errors import ConfigError
    from paddleseg.transforms import Compose
    from paddleseg.utils.cityscapes import NUM_TRAIN_IDS
    from paddleseg.utils.env import tune_process
    from paddleseg.utils.images import collect_images
    if args.engine == 'dygraph' and args.precision != 'fp32':
        raise ConfigError('--precision {}: predict.py runs the dygraph model in '
                          'fp32; the precision is for --engine inference|openvino'
                          .format(args.precision))
    images, image_dir = collect_images(args.image_path)
    tune_process(training=False)  # MKL's fast path on AMD, before the first kernel
    builder, model = build_for_inference(args)
    if args.save_cityscapes and getattr(model, 'num_classes', None) != NUM_TRAIN_IDS:
        raise ConfigError('--save_cityscapes needs a model of the {} Cityscapes '
                          'train classes; this one has {}'.format(
                              NUM_TRAIN_IDS, getattr(model, 'num_classes', None)))
    if args.engine != 'dygraph':
        model.check_inference(aug=args.aug_pred, is_slide=args.is_slide)
    builder.require('val_dataset.transforms',
                    needed_for=' (predict.py uses the eval transforms)')
    transforms = Compose(builder.val_transforms)
    result = predict_images(model, transforms, images, args.save_dir, image_dir,
                            num_classes=getattr(model, 'num_classes', None),
                            aug_pred=args.aug_pred, scales=args.scales or 1.0,
                            flip_horizontal=args.flip_horizontal,
                            flip_vertical=args.flip_vertical, is_slide=args.is_slide,
                            stride=args.stride, crop_size=args.crop_size,
                            custom_color=args.custom_color,
                            cityscapes_dir=args.save_cityscapes)
    result['rank'] = paddle.distributed.get_rank()
    return result


if __name__ == '__main__':
    main()
