"""Evaluate a trained model: mIoU, accuracy, Kappa, per-class IoU/precision/recall.

    python val.py --config configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512×1024_80k.yml \
        --model_path output/best_model/model.pdparams

The config's ``test_config`` (``is_slide``, ``crop_size``, ``stride``,
``aug_eval``, ``scales``, ``flip_horizontal``, ``flip_vertical``) applies; a
flag given (``--is_slide``, ``--crop_size``, ...) overrides it.

The exported model instead (``export.py``): ``--engine inference`` (Paddle
Inference, oneDNN on the CPU unless ``--enable_mkldnn false``), ``--engine
onnx`` (ONNX Runtime) or ``--engine openvino`` (OpenVINO Runtime; with
``--precision bf16`` on a CPU with AMX-BF16 or AVX512-BF16), ``--model_path``
the export's folder; the metrics are computed the same way.

Several processes: ``python -m paddle.distributed.launch val.py ...``; each
evaluates its own share of the images (each image once) and rank 0 prints
the metrics of the whole set and writes ``--save_json``.
"""

import argparse
import json

from paddleseg.cli.args import (add_common_args, add_inference_args,
                                add_precision_args, hide_known_warnings, user_errors)
from paddleseg.cli.engine_args import add_engine_args

hide_known_warnings()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Evaluate a PointRend-Paddle model.')
    add_common_args(p)
    p.add_argument('--model_path', required=True,
                   help='Weights: model.pdparams (or .safetensors); with --engine '
                        'inference|onnx|openvino, the folder export.py wrote.')
    p.add_argument('--num_workers', type=int, default=0)
    p.add_argument('--aug_eval', action='store_true',
                   help='Multi-scale / flip evaluation (see --scales, --flip_*).')
    add_inference_args(p)
    add_engine_args(p)
    add_precision_args(p, engines=True)
    p.add_argument('--save_json', default=None, metavar='FILE',
                   help='Also write the metrics as JSON.')
    p.add_argument('--save_cityscapes', default=None, metavar='DIR',
                   help='Also write each prediction as a Cityscapes label-id PNG, '
                        'DIR/<city>/<city>_<seq>_<frame>_pred_labelIds.png, for '
                        'the official evaluation (utils/eval_cityscapes.py) or '
                        'the test server.')
    return p.parse_args(argv)


def format_table(result, class_names=None):
    """The per-class metrics as a text table."""
    names = class_names or [str(i) for i in range(len(result['class_iou']))]
    width = max(8, max(len(n) for n in names))
    lines = ['{:<{w}}  {:>8}  {:>9}  {:>8}'.format('class', 'IoU', 'precision',
                                                   'recall', w=width)]
    for name, iou, prec, rec in zip(names, result['class_iou'],
                                    result['class_precision'],
                                    result['class_recall']):
        lines.append('{:<{w}}  {:>8.4f}  {:>9.4f}  {:>8.4f}'.format(
            name, iou, prec, rec, w=width))
    lines.append('{:<{w}}  {:>8.4f}  {:>9.4f}  {:>8.4f}'.format(
        'mean', result['miou'], result['mean_precision'], result['mean_recall'],
        w=width))
    lines.append('Acc: {:.4f}  Kappa: {:.4f}  images: {}  ({:.2f} images/s)'.format(
        result['acc'], result['kappa'], result['images'], result['images_per_sec']))
    return '\n'.join(lines)


def to_json(result, class_names=None):
    names = class_names or [str(i) for i in range(len(result['class_iou']))]

    def num(x):
        return None if x != x else float(x)  # NaN (absent class) -> null
    return {
        'miou': result['miou'], 'acc': result['acc'], 'kappa': result['kappa'],
        'mean_precision': result['mean_precision'],
        'mean_recall': result['mean_recall'], 'images': result['images'],
        'classes': {n: {'iou': num(i), 'precision': num(p), 'recall': num(r)}
                    for n, i, p, r in zip(names, result['class_iou'],
                                          result['class_precision'],
                                          result['class_recall'])},
        'confusion': result['confusion'].tolist(),
    }


def main(argv=None):
    args = parse_args(argv)
    with user_errors(args.debug, 'val.py'):
        run(args)


def run(args):
    from paddleseg.cli.build import build_for_inference, eval_kwargs
    from paddleseg.cli.engine_args import dygraph_precision
    from paddleseg.core import amp, evaluate_details
    from paddleseg.core.val import resolve_precision
    from paddleseg.utils.dist import init_distributed
    from paddleseg.utils.env import tune_process
    tune_process(training=False)  # MKL's fast path on AMD, before the first kernel
    builder, model = build_for_inference(args)
    dataset = builder.val_dataset
    rank, _ = init_distributed()
    test_config = eval_kwargs(args, builder.config)
    if args.engine == 'dygraph':
        precision = resolve_precision(dygraph_precision(args), args.amp_level)
        # O2: fp16 weights, cast once (normalisation layers stay fp32)
        model, _ = amp.prepare(model, None, precision, args.amp_level)
    else:  # the exported program runs in the precision it was loaded with
        precision = 'fp32'
        model.check_inference(aug=test_config.get('aug_eval', False),
                              is_slide=test_config.get('is_slide', False))
    writer = None
    if args.save_cityscapes:
        from paddleseg.utils.cityscapes import NUM_TRAIN_IDS, CityscapesWriter
        if dataset.num_classes != NUM_TRAIN_IDS:
            from paddleseg.errors import ConfigError
            raise ConfigError('--save_cityscapes needs the {} Cityscapes train '
                              'classes; val_dataset has {}'.format(
                                  NUM_TRAIN_IDS, dataset.num_classes))
        writer = CityscapesWriter(args.save_cityscapes)
    result = evaluate_details(model, dataset, num_workers=args.num_workers,
                              on_prediction=writer, precision=precision,
                              amp_level=args.amp_level, **test_config)
    if rank != 0:  # each rank wrote its own images; rank 0 reports
        return result
    names = getattr(dataset, 'class_names', None)
    print(format_table(result, names))
    if args.save_json:
        with open(args.save_json, 'w') as f:
            json.dump(to_json(result, names), f, indent=2)
    if writer is not None:
        # one PNG per image, on whichever rank predicted it
        print('Wrote {} Cityscapes label-id PNGs to {}'.format(
            result['images'], args.save_cityscapes))
    return result


if __name__ == '__main__':
    main()
