"""Low-precision deployment against the float ONNX export: speed, agreement, mIoU.

    python benchmarks/low_precision.py --config configs/demo/pointrend_resnet18_os8_demo.yml \
        --model_path demo_output/train/best_model/model.pdparams \
        [--save_dir /tmp/low_precision] [--calib_num 32] [--threads 2] [--variants] [--write]

Exports the model as float ONNX (``export.py --format onnx``) and as INT8
(``export.py --format onnx --quantize int8``, calibrated on the config's
val images), then runs the config's ``val_dataset`` through each path and
prints, per path, beside its time per image: the share of pixels whose
class equals the float ONNX Runtime export's (worst image and all pixels),
its mIoU on the val labels (val.py's metrics) and the difference from the
float export's. Paths:

* ``onnxruntime fp32``: the float export (the reference);
* ``onnxruntime int8``: the INT8 export (what ``--quantize int8`` writes);
* with ``--variants``, the measurements behind what stays float: the INT8
  quantization of the convolutions *and* the point head's layers (nothing
  kept float), and of the convolutions with the point head sampling the
  quantized copy of the features;
* ``openvino fp32`` / ``openvino bf16``: the float export in OpenVINO with
  ``INFERENCE_PRECISION_HINT`` f32 / bf16, every layer as the plugin
  chooses;
* ``openvino bf16, refinement fp32``: bf16 with the PointRend refinement
  kept fp32, as ``--engine openvino --precision bf16`` runs it
  (``openvino_runtime.keep_refinement_fp32``);
* ``openvino int8``: the INT8 export in OpenVINO, reshaped to the static
  input size (OpenVINO 2026.4 does not compile the QDQ model with a dynamic
  input: "Accessing out-of-range dimension").

``val.py --engine onnx`` is also run on both exports (its mIoU must equal
this script's for the ONNX Runtime paths). The first line names the CPU,
its instruction sets and the threads. ``--write`` appends the table to
benchmarks/BENCHMARKS.md.
"""

import argparse
import datetime
import os
import shutil
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from machine import machine_line  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', required=True)
    p.add_argument('--model_path', required=True)
    p.add_argument('--save_dir', default='/tmp/low_precision')
    p.add_argument('--calib_num', type=int, default=32)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--variants', action='store_true',
                   help='also the quantizations that keep less in float')
    p.add_argument('--no_openvino', action='store_true')
    p.add_argument('--write', action='store_true', help='append to benchmarks/BENCHMARKS.md')
    return p.parse_args(argv)


def export_models(args):
    """The float and INT8 exports (export.py): ``{'fp32': dir, 'int8': dir}``."""
    import export as export_cli
    common = ['--config', args.config, '--model_path', args.model_path, '--device', 'cpu',
              '--format', 'onnx']
    dirs = {'fp32': os.path.join(args.save_dir, 'fp32'),
            'int8': os.path.join(args.save_dir, 'int8')}
    export_cli.main(common + ['--save_dir', dirs['fp32']])
    export_cli.main(common + ['--save_dir', dirs['int8'], '--quantize', 'int8',
                              '--calib_num', str(args.calib_num)])
    return dirs


def variant_models(args, builder, dirs):
    """INT8 quantizations that keep less float (``--variants``), each a copy
    of the float export: ``{name: dir}``."""
    from paddleseg.deploy import quantize as quant
    from paddleseg.deploy.quantize import quantize_onnx
    paths, _ = quant.calibration_images(builder, None, args.calib_num)
    variants = {
        'onnxruntime int8, point head quantized too': dict(
            op_types=('Conv', 'Gemm', 'MatMul'), float_from=()),
        'onnxruntime int8, point head reading the quantized features': dict(
            float_features=False),
    }
    out = {}
    for name, kwargs in variants.items():
        folder = os.path.join(args.save_dir, 'variant{}'.format(len(out)))
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(dirs['fp32'], folder)
        quantize_onnx(os.path.join(folder, 'model.onnx'),
                      quant.calibration_batches(paths, builder.export_transforms), **kwargs)
        out[name] = folder
    return out


def openvino_runner(model_file, precision, threads, static=False, keep_refinement=False):
    """``x -> class map`` of ``model_file`` in OpenVINO on the CPU with the
    inference precision hint ``precision``; ``static``: compiled for each
    input size met (reshaped); ``keep_refinement``: the refinement marked
    to stay fp32."""
    from paddleseg.deploy.openvino_runtime import keep_refinement_fp32
    from paddleseg.utils.openvino_core import openvino_core
    core = openvino_core()
    config = {'INFERENCE_PRECISION_HINT': precision, 'INFERENCE_NUM_THREADS': threads}
    compiled = {}

    def run(x):
        key = x.shape if static else None
        if key not in compiled:
            model = core.read_model(model_file)
            if static:
                model.reshape(list(x.shape))
            if keep_refinement:
                model = keep_refinement_fp32(core, model)[0]
            compiled[key] = core.compile_model(model, 'CPU', config)
        return compiled[key](x)[0]
    return run


def paths_to_run(args, dirs, variants):
    """``[(name, callable)]``: every path of the module's doc."""
    from paddleseg.deploy import load_engine
    runs = [('onnxruntime fp32', load_engine(dirs['fp32'], 'onnx', cpu_threads=args.threads)),
            ('onnxruntime int8', load_engine(dirs['int8'], 'onnx', cpu_threads=args.threads))]
    runs += [(name, load_engine(folder, 'onnx', cpu_threads=args.threads))
             for name, folder in variants.items()]
    if not args.no_openvino:
        fp32 = os.path.join(dirs['fp32'], 'model.onnx')
        runs += [('openvino fp32', openvino_runner(fp32, 'f32', args.threads)),
                 ('openvino bf16', openvino_runner(fp32, 'bf16', args.threads)),
                 ('openvino bf16, refinement fp32', openvino_runner(
                     fp32, 'bf16', args.threads, keep_refinement=True)),
                 ('openvino int8 (static shape)', openvino_runner(
                     os.path.join(dirs['int8'], 'model.onnx'), 'f32', args.threads,
                     static=True))]
    return runs


def measure(builder, runs):
    """Each path over the val set: per-image ms (median; the first image of
    each size is a warm-up), class maps, confusion matrix."""
    from paddleseg.utils.metrics import confusion_matrix
    dataset = builder.val_dataset
    num_classes = dataset.num_classes
    results = {name: {'ms': [], 'maps': [], 'cm': 0} for name, _ in runs}
    seen = set()
    for i in range(len(dataset)):
        item = dataset[i]
        x = np.ascontiguousarray(item['img'][np.newaxis], dtype='float32')
        label = np.asarray(item['label'])
        for name, run in runs:
            if (name, x.shape) not in seen:  # warm-up (and OpenVINO's compile)
                run(x)
                seen.add((name, x.shape))
            t0 = time.perf_counter()
            out = np.asarray(run(x))
            results[name]['ms'].append(1000 * (time.perf_counter() - t0))
            results[name]['maps'].append(out.reshape(label.shape[-2:]))
            results[name]['cm'] = results[name]['cm'] + confusion_matrix(
                out.reshape(label.shape), label, num_classes, dataset.ignore_index)
    return results


def table(results, reference='onnxruntime fp32'):
    """The markdown table of :func:`measure`'s results."""
    from paddleseg.utils.metrics import metrics_from_confusion
    ref = results[reference]
    ref_ms = statistics.median(ref['ms'])
    ref_miou = metrics_from_confusion(ref['cm'])['miou']
    lines = ['| path | ms / image | speed vs ORT fp32 | pixels equal to ORT fp32: worst image '
             '| all pixels | mIoU | mIoU - fp32 (points) |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for name, r in results.items():
        ms = statistics.median(r['ms'])
        shares = [float((a == b).mean()) for a, b in zip(r['maps'], ref['maps'])]
        equal = sum(float((a == b).sum()) for a, b in zip(r['maps'], ref['maps']))
        total = sum(a.size for a in ref['maps'])
        miou = metrics_from_confusion(r['cm'])['miou']
        lines.append('| {} | {:.1f} | {:.2f}x | {:.4%} | {:.4%} | {:.4f} | {:+.2f} |'.format(
            name, ms, ref_ms / ms, min(shares), equal / total, miou, 100 * (miou - ref_miou)))
    return '\n'.join(lines)


def val_py(args, dirs):
    """val.py --engine onnx on both exports: ``{name: mIoU}``."""
    import val as val_cli
    out = {}
    for name, folder in dirs.items():
        result = val_cli.run(val_cli.parse_args([
            '--config', args.config, '--model_path', folder, '--engine', 'onnx',
            '--device', 'cpu', '--cpu_threads', str(args.threads)]))
        out[name] = result['miou']
    return out


def main(argv=None):
    args = parse_args(argv)
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils.env import tune_process
    tune_process(training=False)
    builder = SegBuilder(Config(args.config))
    dirs = export_models(args)
    variants = variant_models(args, builder, dirs) if args.variants else {}
    results = measure(builder, paths_to_run(args, dirs, variants))
    head = '{}; {} threads, shared machine: speeds are indicative'.format(
        machine_line(), args.threads)
    from paddleseg.deploy import load_deploy
    text = '{}\n\n{} val images of {}, {} calibration images\n\n{}'.format(
        head, len(results['onnxruntime fp32']['ms']), args.config,
        load_deploy(dirs['int8'])['calibration']['images'], table(results))
    print('\n' + text)
    mious = val_py(args, dirs)
    print('\nval.py --engine onnx: mIoU fp32 export {:.4f}, int8 export {:.4f} ({:+.2f} '
          'points)'.format(mious['fp32'], mious['int8'], 100 * (mious['int8'] - mious['fp32'])))
    if args.write:
        with open(os.path.join(HERE, 'BENCHMARKS.md'), 'a') as f:
            f.write('\n## {} — low precision (benchmarks/low_precision.py)\n\n{}\n'.format(
                datetime.date.today().isoformat(), text))
    return results


if __name__ == '__main__':
    main()
