"""Shared plumbing of the entry scripts (train.py, val.py, predict.py).

Exit status of the entry scripts:

* 0: done.
* 1: predict.py could not read some of the images (the others are done).
* 2: a user error (bad flag, config, data, checkpoint, download, a
  non-finite loss with ``--nan_policy stop``); one line on stderr,
  ``<script>: error: <what, naming the file or key>``.
* 124: training made no progress for ``--stall_timeout`` seconds (e.g. a
  collective waiting for a process that died); see ``paddleseg.core.train``.
* 130 / 143: stopped by SIGINT (Ctrl-C) / SIGTERM; training saves a
  checkpoint first.
"""

import argparse
import contextlib
import functools
import signal
import sys
import traceback
import warnings

from paddleseg.errors import SegError

EXIT_USER_ERROR = 2

# paddle's BatchNorm warns on every training run that it tracks the running
# statistics, which it always did; it is noise on stderr.
warnings.filterwarnings(
    'ignore', message='When training, we now always track global mean and variance')


def str2bool(value):
    """argparse type for true/false flags given a value."""
    lowered = str(value).lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got {!r}'.format(value))


def _one_line_error(parser, message):
    """argparse's ``error`` without the usage block: one line, status 2."""
    parser.exit(EXIT_USER_ERROR, '{0}: error: {1} (see {0} --help)\n'.format(
        parser.prog, message))


def one_line_errors(parser):
    """Make ``parser`` report a bad command line in one line (exit 2)."""
    parser.error = functools.partial(_one_line_error, parser)
    return parser


def add_common_args(parser):
    """--config, --opts, --device, --cpu_threads, --debug.

    Also makes the parser report a bad command line in one line (exit 2).
    """
    one_line_errors(parser)
    parser.add_argument('--config', required=True, help='The YAML config file.')
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE',
                        help='Override config keys, e.g. batch_size=2 '
                             'model.backbone.output_stride=16.')
    parser.add_argument('--device', choices=['cpu', 'gpu', 'xpu', 'npu'],
                        default=None, help='Device (default: gpu if paddle '
                                           'was built with CUDA, else cpu).')
    parser.add_argument('--cpu_threads', type=int, default=None,
                        help='Threads of CPU kernels (default: all cores, or '
                             'the SEG_CPU_THREADS environment variable).')
    parser.add_argument('--debug', action='store_true',
                        help='Show the Python traceback of errors.')


def add_inference_args(parser):
    """The whole/slide/multi-scale inference flags of val.py and predict.py."""
    parser.add_argument('--is_slide', action='store_true',
                        help='Sliding-window inference.')
    parser.add_argument('--crop_size', nargs=2, type=int, default=None,
                        metavar=('W', 'H'), help='Sliding window size.')
    parser.add_argument('--stride', nargs=2, type=int, default=None,
                        metavar=('W', 'H'), help='Sliding window step.')
    parser.add_argument('--scales', nargs='+', type=float, default=[1.0],
                        help='Scales of multi-scale inference.')
    parser.add_argument('--flip_horizontal', action='store_true',
                        help='Also average the horizontally flipped image.')
    parser.add_argument('--flip_vertical', action='store_true',
                        help='Also average the vertically flipped image.')


def add_precision_args(parser):
    """--fp16, --precision fp32|fp16, --amp_level O1|O2 (as train.py's)."""
    parser.add_argument('--fp16', action='store_true',
                        help='Mixed precision (GPU); same as --precision fp16.')
    parser.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32',
                        help='fp16 needs a GPU; elsewhere fp32 with a warning.')
    parser.add_argument('--amp_level', choices=['O1', 'O2'], default='O1',
                        help='With fp16: O1 casts op by op, O2 casts the '
                             'whole model to fp16 (except normalisation).')


def precision_of(args):
    """The precision that --fp16 / --precision ask for."""
    return 'fp16' if getattr(args, 'fp16', False) else getattr(args, 'precision', 'fp32')


def setup_device(device=None, cpu_threads=None):
    """Select the device and, on CPU, use every core (or ``cpu_threads``).

    ``device`` is ``cpu``, ``gpu``, ``xpu``, ``npu`` (or another custom
    device type), optionally ``:index``; None picks ``gpu`` when paddle is
    built with CUDA and sees a GPU, else ``cpu``. A device this PaddlePaddle
    build cannot use (``gpu`` on a CPU-only build, ``xpu`` without XPU
    support, ``npu`` without its plugin, none visible) raises one
    :class:`~paddleseg.errors.ConfigError` line naming it
    (:func:`paddleseg.utils.dist.resolve_device`).

    Returns:
        int|None: The CPU thread count set (see ``set_cpu_threads``).
    """
    import paddle
    from paddleseg.utils.dist import resolve_device
    from paddleseg.utils.env import set_cpu_threads
    paddle.set_device(resolve_device(device))
    return set_cpu_threads(cpu_threads)


@contextlib.contextmanager
def user_errors(debug=False, prog=None):
    """Turn user errors into one line on stderr and exit status 2.

    With ``debug`` the traceback is shown too (and, for an error raised in
    a DataLoader worker, the worker's). An interrupt exits with 128 + the
    signal number (130 for SIGINT); an exception that carries a ``signum``
    attribute (``paddleseg.core.train.TrainingInterrupted``) names the signal
    and the checkpoint saved.
    """
    prog = prog or sys.argv[0]
    try:
        yield
    except SegError as exc:
        if debug:
            traceback.print_exc()
            if exc.worker_traceback:
                print('Where the data was loaded (DataLoader):\n' + exc.worker_traceback,
                      file=sys.stderr)
        print('{}: error: {}'.format(prog, exc), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        signum = getattr(exc, 'signum', signal.SIGINT)
        print('{}: {}'.format(prog, str(exc) or 'interrupted'), file=sys.stderr)
        sys.exit(128 + int(signum))


def without_pretrained(cfg):
    """Drop ``pretrained`` from the model and its backbone: val.py and
    predict.py load a whole trained model, so fetching ImageNet weights
    first would be wasted (and needs the network)."""
    model = cfg.get('model') or {}
    model.pop('pretrained', None)
    if isinstance(model.get('backbone'), dict):
        model['backbone'].pop('pretrained', None)
    return cfg


def build_for_inference(args, dataset_key=None):
    """Load and check the config, build the model, load ``--model_path``
    (with ``--engine inference|onnx``: the export there, see
    :func:`paddleseg.cli.engine_args.load_exported`).

    Returns:
        tuple: ``(cfg, model, dataset or None)``.
    """
    from paddleseg.cvlibs import config_builder as builder
    from paddleseg.cvlibs.config import load_and_check
    from paddleseg.utils.checkpoint import load_entire_model
    cfg = without_pretrained(load_and_check(args.config, opts=args.opts,
                                            for_training=False))
    threads = setup_device(args.device, args.cpu_threads)
    engine = getattr(args, 'engine', 'dygraph')
    if engine == 'dygraph':
        model = builder.build_model(cfg, args.config)
        load_entire_model(model, args.model_path)
    else:
        from paddleseg.cli.engine_args import load_exported
        model = load_exported(args, cfg, threads)
    dataset = builder.build_dataset(cfg, dataset_key, args.config) \
        if dataset_key else None
    return cfg, model, dataset
