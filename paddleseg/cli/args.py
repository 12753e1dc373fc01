"""The argparse plumbing the entry scripts share: the flags, one-line errors
and the exit status.

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

__all__ = ['EXIT_USER_ERROR', 'str2bool', 'one_line_errors', 'add_common_args',
           'add_inference_args', 'add_precision_args', 'precision_of',
           'user_errors', 'hide_known_warnings']

EXIT_USER_ERROR = 2



def hide_known_warnings():
    """Hide the warnings that are noise on an entry script's stderr:
    paddle's BatchNorm says on every training run that it tracks the running
    statistics, which it always did. For the entry scripts, which own their
    process; importing this module changes no filter."""
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
    """The whole/slide/multi-scale inference flags of val.py and predict.py
    (their defaults are None or False, so that val.py can tell a flag given,
    which overrides the config's ``test_config``, from one not given)."""
    parser.add_argument('--is_slide', action='store_true',
                        help='Sliding-window inference.')
    parser.add_argument('--crop_size', nargs=2, type=int, default=None,
                        metavar=('W', 'H'), help='Sliding window size.')
    parser.add_argument('--stride', nargs=2, type=int, default=None,
                        metavar=('W', 'H'), help='Sliding window step.')
    parser.add_argument('--scales', nargs='+', type=float, default=None,
                        help='Scales of multi-scale inference (default: 1.0; '
                             "val.py: the config's test_config.scales).")
    parser.add_argument('--flip_horizontal', action='store_true',
                        help='Also average the horizontally flipped image.')
    parser.add_argument('--flip_vertical', action='store_true',
                        help='Also average the vertically flipped image.')


def add_precision_args(parser, engines=False, amp=True):
    """--precision fp32|fp16, with ``amp`` also --fp16 and --amp_level O1|O2
    (as train.py's); with ``engines`` (the scripts that have ``--engine``)
    --precision also takes bf16 (the precisions of
    :data:`paddleseg.deploy.PRECISIONS`, whose rules
    :class:`~paddleseg.deploy.DeployOptions` checks)."""
    if amp:
        parser.add_argument('--fp16', action='store_true',
                            help='Mixed precision (GPU); same as --precision fp16.')
    helps = 'fp16 needs a GPU; elsewhere fp32 with a warning.'
    choices = ['fp32', 'fp16']
    if engines:
        from paddleseg.deploy.options import PRECISIONS
        choices = list(PRECISIONS)
        helps += (' bf16: --engine openvino on a CPU with AMX-BF16 or AVX512-BF16 '
                  '(refused on another CPU). Default: fp32.')
    parser.add_argument('--precision', choices=choices, default='fp32', help=helps)
    if amp:
        parser.add_argument('--amp_level', choices=['O1', 'O2'], default='O1',
                            help='With fp16: O1 casts op by op, O2 casts the '
                                 'whole model to fp16 (except normalisation).')


def precision_of(args):
    """The precision that --fp16 / --precision ask for."""
    return 'fp16' if getattr(args, 'fp16', False) else getattr(args, 'precision', 'fp32')


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
