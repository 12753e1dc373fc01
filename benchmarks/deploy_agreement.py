"""Class-map agreement of every deployment consumer with predict.py.

    python benchmarks/deploy_agreement.py --config configs/demo/pointrend_resnet18_os8_demo.yml \
        --model_path output/best_model/model.pdparams --image_path data/demo/leftImg8bit/val \
        --save_dir /tmp/deploy_agreement [--sizes 96x192 160x320 121x203] [--limit 24] [--val]

Runs predict.py on the images (each also resized to every ``--sizes``
entry), exports the model in each format with export.py (dynamic input
size), runs every consumer on the same images and prints, per consumer,
the share of pixels whose class equals predict.py's (the worst image and
the mean) and the time per image:

* ``paddle_legacy`` (the default export) in PaddleSeg v2.8.0's
  ``deploy/python/infer.py`` as reproduced by ``tests/helpers/deploy_helpers.py``,
  without and with ``--enable_mkldnn``; and under a default
  ``paddle.inference.Config``;
* ``paddle`` (new IR) through ``paddleseg.deploy.create_predictor``,
  without and with oneDNN;
* ``onnx`` in ONNX Runtime (when paddle2onnx and onnxruntime are installed).

``--val`` also runs val.py on the config's ``val_dataset`` with each
``--engine`` (dygraph, Paddle Inference with and without oneDNN, ONNX
Runtime) and prints each mIoU beside dygraph's.
"""

import argparse
import importlib.util
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'helpers'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', required=True)
    p.add_argument('--model_path', required=True)
    p.add_argument('--image_path', required=True, help='A folder of images (recursive).')
    p.add_argument('--save_dir', default='/tmp/deploy_agreement')
    p.add_argument('--sizes', nargs='*', default=[], metavar='HxW',
                   help='Also each image resized to these sizes.')
    p.add_argument('--limit', type=int, default=24, help='Images used (first N).')
    p.add_argument('--cpu_threads', type=int, default=2)
    p.add_argument('--val', action='store_true',
                   help="Also run val.py on the config's val_dataset with each "
                        '--engine and print mIoU against dygraph.')
    return p.parse_args(argv)


def collect(args):
    import cv2
    exts = ('.png', '.jpg', '.jpeg', '.bmp')
    found = sorted(os.path.join(d, f) for d, _, fs in os.walk(args.image_path)
                   for f in fs if f.lower().endswith(exts))[:args.limit]
    folder = os.path.join(args.save_dir, 'images')
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    paths = []
    for i, path in enumerate(found):
        im = cv2.imread(path, cv2.IMREAD_COLOR)
        for size in [None] + list(args.sizes):
            out = im
            tag = '{}x{}'.format(*im.shape[:2])
            if size:
                h, w = (int(v) for v in size.lower().split('x'))
                out = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
                tag = size
            paths.append(os.path.join(folder, 'im{:03d}_{}.png'.format(i, tag)))
            cv2.imwrite(paths[-1], out)
    return paths


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    from PIL import Image

    import export as export_cli
    import predict as predict_cli
    from deploy_helpers import deploy_transforms, paddleseg_infer
    from paddleseg.deploy import create_predictor, load_deploy, load_engine, run_predictor

    paths = collect(args)
    common = ['--config', args.config, '--model_path', args.model_path, '--device', 'cpu',
              '--cpu_threads', str(args.cpu_threads)]
    pred_dir = os.path.join(args.save_dir, 'predict')
    predict_cli.main(common + ['--image_path', os.path.join(args.save_dir, 'images'),
                               '--save_dir', pred_dir])
    reference = {os.path.basename(p): np.array(Image.open(os.path.join(
        pred_dir, 'pseudo_color_prediction', os.path.basename(p)))) for p in paths}

    formats = ['paddle_legacy', 'paddle']
    if all(importlib.util.find_spec(m) for m in ('paddle2onnx', 'onnxruntime')):
        formats.append('onnx')
    else:
        print('ONNX skipped: pip install -r requirements-deploy.txt')
    dirs = {}
    for fmt in formats:
        dirs[fmt] = os.path.join(args.save_dir, fmt)
        export_cli.main(common + ['--save_dir', dirs[fmt], '--format', fmt])

    rows = []

    def record(name, maps, seconds):
        shares = [float((maps[os.path.basename(p)] == reference[os.path.basename(p)]).mean())
                  for p in paths]
        rows.append((name, len(shares), min(shares), sum(shares) / len(shares),
                     1000 * seconds / len(paths)))

    for mkl in (False, True):
        out = os.path.join(args.save_dir, 'infer_mkldnn_{}'.format(mkl))
        t0 = time.perf_counter()
        pngs = paddleseg_infer(os.path.join(dirs['paddle_legacy'], 'deploy.yaml'), paths,
                               out, enable_mkldnn=mkl, cpu_threads=args.cpu_threads)
        seconds = time.perf_counter() - t0
        record('paddle_legacy: PaddleSeg infer.py{}'.format(
            ' --enable_mkldnn True' if mkl else ''),
            {os.path.basename(p): np.array(Image.open(p)) for p in pngs}, seconds)

    def run_all(name, fn, deploy):
        transforms = deploy_transforms(deploy)
        maps, seconds = {}, 0.0
        for path in paths:
            x = transforms({'img': path})['img'][np.newaxis]
            t0 = time.perf_counter()
            maps[os.path.basename(path)] = fn(x)[0]
            seconds += time.perf_counter() - t0
        record(name, maps, seconds)

    from paddle.inference import Config
    from paddle.inference import create_predictor as paddle_predictor
    d = dirs['paddle_legacy']
    deploy = load_deploy(d)
    default = paddle_predictor(Config(os.path.join(d, deploy['model']),
                                      os.path.join(d, deploy['params'])))
    run_all('paddle_legacy: default paddle.inference.Config',
            lambda x: run_predictor(default, x), deploy)
    for onednn in (False, True):
        predictor = create_predictor(dirs['paddle'], use_onednn=onednn,
                                     cpu_threads=args.cpu_threads)
        run_all('paddle: create_predictor(use_onednn={})'.format(onednn),
                lambda x, p=predictor: run_predictor(p, x), load_deploy(dirs['paddle']))
    if 'onnx' in dirs:
        run_all('onnx: ONNX Runtime', load_engine(dirs['onnx'], cpu_threads=args.cpu_threads),
                load_deploy(dirs['onnx']))

    sizes = sorted({'{}x{}'.format(*m.shape) for m in reference.values()})
    print('\n{} images, sizes {}; agreement with predict.py (share of pixels)\n'.format(
        len(paths), ', '.join(sizes)))
    print('| consumer | images | worst image | mean | ms / image |')
    print('| --- | --- | --- | --- | --- |')
    for name, n, worst, mean, ms in rows:
        print('| {} | {} | {:.6f} | {:.6f} | {:.0f} |'.format(name, n, worst, mean, ms))
    if args.val:
        val_engines(args, common, dirs)
    return rows


def val_engines(args, common, dirs):
    """val.py with each ``--engine`` on the config's val_dataset: mIoU,
    its difference from dygraph's, and the wall time."""
    import val as val_cli
    runs = [('dygraph', args.model_path, []),
            ('inference, oneDNN (paddle_legacy)', dirs['paddle_legacy'],
             ['--engine', 'inference']),
            ('inference, no oneDNN (paddle_legacy)', dirs['paddle_legacy'],
             ['--engine', 'inference', '--enable_mkldnn', 'false']),
            ('inference, oneDNN (paddle)', dirs['paddle'], ['--engine', 'inference'])]
    if 'onnx' in dirs:
        runs.append(('onnx', dirs['onnx'], ['--engine', 'onnx']))
    results = []
    for name, path, extra in runs:
        argv = [a if a != args.model_path else path for a in common] + extra
        t0 = time.perf_counter()
        result = val_cli.run(val_cli.parse_args(argv))
        results.append((name, result, time.perf_counter() - t0))
    base = results[0][1]
    print('\nval.py on {} images of {}\n'.format(base['images'], args.config))
    print('| engine | mIoU | mIoU - dygraph | acc | pixels in another cell | s |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, result, seconds in results:
        moved = abs(result['confusion'] - base['confusion']).sum() / 2 / base['confusion'].sum()
        print('| {} | {:.6f} | {:+.1e} | {:.6f} | {:.2e} | {:.1f} |'.format(
            name, result['miou'], result['miou'] - base['miou'], result['acc'], moved,
            seconds))
    return results


if __name__ == '__main__':
    main()
