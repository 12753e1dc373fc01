"""The CPU demo: synthetic data, training, evaluation and prediction.

    python utils/demo.py            (what ``bash run.sh demo`` runs)

1. makes the synthetic street scenes in ``data/demo`` with
   ``utils/make_demo_data.py`` (kept when already made with the same
   seed and sizes),
2. trains ``configs/demo/pointrend_resnet18_os8_demo.yml`` with evaluation
   into ``demo_output/train`` (``best_model/`` included),
3. evaluates the best model with ``val.py`` (metrics also in
   ``demo_output/val_metrics.json``),
4. predicts the validation images with ``predict.py`` into
   ``demo_output/predict/{pseudo_color_prediction,added_prediction}``,

and prints the validation mIoU and the prediction pictures. Each step runs
the project's own command-line script in a child process; the first one that
fails stops the demo with its exit status.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

UTILS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(UTILS_DIR)
for _path in (ROOT, UTILS_DIR):  # the package, and the sibling tools when imported
    if _path not in sys.path:
        sys.path.insert(0, _path)

from paddleseg.errors import SegError  # noqa: E402

CONFIG = 'configs/demo/pointrend_resnet18_os8_demo.yml'
DATA_ROOT = 'data/demo'
SAVE_DIR = 'demo_output'
# The data the demo config is tuned for (see the config's header).
DATA = {'train': 200, 'val': 24, 'height': 96, 'width': 192, 'seed': 0}


class StepFailed(Exception):
    def __init__(self, step, code):
        super().__init__('{} failed with exit status {}'.format(step, code))
        self.code = code


def run_step(name, cmd):
    """Run ``cmd`` (a python script and its arguments); return seconds taken."""
    print('\n==> {}: {}'.format(name, ' '.join(cmd)), flush=True)
    start = time.time()
    code = subprocess.call([sys.executable] + cmd, cwd=ROOT)
    if code != 0:
        raise StepFailed(name, code)
    return time.time() - start


def config_iters(config):
    """``iters`` of ``config`` (with its ``_base_`` files)."""
    from paddleseg.cvlibs import Config
    return int(Config(config).iters)


def make_data(args):
    from make_demo_data import make_demo_data
    print('==> data: {} (seed {}, {} train + {} val, {}x{})'.format(
        args.data_root, args.seed, DATA['train'], DATA['val'],
        DATA['height'], DATA['width']), flush=True)
    start = time.time()
    make_demo_data(args.data_root, DATA['train'], DATA['val'], DATA['height'],
                   DATA['width'], args.seed, force=args.force_data)
    return time.time() - start


def prediction_files(predict_dir):
    found = {}
    for kind in ('pseudo_color_prediction', 'added_prediction'):
        found[kind] = sorted(glob.glob(os.path.join(predict_dir, kind, '**',
                                                    '*.*'), recursive=True))
    return found


def run_demo(args):
    train_dir = os.path.join(args.save_dir, 'train')
    predict_dir = os.path.join(args.save_dir, 'predict')
    metrics_json = os.path.join(args.save_dir, 'val_metrics.json')
    for path in (train_dir, predict_dir, metrics_json):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(args.save_dir, exist_ok=True)

    times = {'data': make_data(args)}
    opts = ['train_dataset.dataset_root=' + args.data_root,
            'val_dataset.dataset_root=' + args.data_root]
    iters = args.iters or config_iters(args.config)
    train_cmd = ['train.py', '--config', args.config, '--iters', str(iters),
                 '--save_dir', train_dir, '--do_eval', '--save_interval', str(iters), '--seed',
                 str(args.seed), '--num_workers', str(args.num_workers),
                 '--log_iters', str(max(1, min(20, iters // 10))),
                 '--keep_checkpoint_max', '1', '--opts'] + opts
    times['train'] = run_step('train', train_cmd)
    model = os.path.join(train_dir, 'best_model', 'model.pdparams')
    times['val'] = run_step('evaluate', [
        'val.py', '--config', args.config, '--model_path', model,
        '--save_json', metrics_json, '--opts'] + opts)
    times['predict'] = run_step('predict', [
        'predict.py', '--config', args.config, '--model_path', model,
        '--image_path', os.path.join(args.data_root, 'leftImg8bit', 'val'),
        '--save_dir', predict_dir])

    with open(metrics_json) as f:
        metrics = json.load(f)
    present = {name: c['iou'] for name, c in metrics['classes'].items()
               if c['iou'] is not None}
    files = prediction_files(predict_dir)
    print('\n==> demo finished')
    print('time (s): ' + ', '.join('{} {:.0f}'.format(k, v)
                                   for k, v in times.items()) +
          ', total {:.0f}'.format(sum(times.values())))
    print('per-class val IoU: ' + ', '.join(
        '{} {:.3f}'.format(name, iou) for name, iou in present.items()))
    print('val mIoU ({} classes present): {:.4f}   pixel accuracy: {:.4f}'.format(
        len(present), metrics['miou'], metrics['acc']))
    print('best model: {}'.format(os.path.join(ROOT, model)))
    for kind, paths in files.items():
        print('{} ({} pictures in {}):'.format(
            kind, len(paths), os.path.join(ROOT, predict_dir, kind)))
        for path in paths:
            print('  ' + os.path.join(ROOT, path))
    if not all(files.values()):
        raise StepFailed('predict (no pictures written)', 1)
    return metrics


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Run the CPU demo: synthetic data, train, evaluate, '
        'predict.')
    p.add_argument('--config', default=CONFIG, help='the demo config')
    p.add_argument('--data_root', default=DATA_ROOT,
                   help='where the synthetic data goes (default: data/demo)')
    p.add_argument('--save_dir', default=SAVE_DIR,
                   help='output folder (default: demo_output)')
    p.add_argument('--seed', type=int, default=DATA['seed'],
                   help='seed of the data and of training (default: 0)')
    p.add_argument('--iters', type=int, default=None,
                   help='override the config\'s iters (e.g. a quick check)')
    p.add_argument('--num_workers', type=int, default=0,
                   help='data loader workers of training (default: 0, the '
                   'fastest on a 2-core machine)')
    p.add_argument('--force_data', action='store_true',
                   help='regenerate the data even if it is up to date')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.chdir(ROOT)
    try:
        run_demo(args)
    except StepFailed as exc:
        print('demo: error: {}'.format(exc), file=sys.stderr)
        return exc.code if exc.code > 0 else 1
    except (ValueError, OSError, SegError) as exc:  # making the data
        print('demo: error: {}'.format(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('demo: interrupted', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
