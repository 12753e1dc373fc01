"""Shared plumbing of the entry scripts (train.py, val.py, predict.py)."""

import argparse
import contextlib
import sys
import traceback

from paddleseg.errors import SegError


def str2bool(value):
    """argparse type for true/false flags given a value."""
    lowered = str(value).lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got {!r}'.format(value))


def add_common_args(parser):
    """--config, --opts, --device, --cpu_threads, --debug."""
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


def setup_device(device=None, cpu_threads=None):
    """Select the device and, on CPU, use every core (or ``cpu_threads``)."""
    import paddle
    from paddleseg.utils.env import set_cpu_threads
    if device is None:
        device = 'gpu' if paddle.is_compiled_with_cuda() else 'cpu'
    paddle.set_device(device)
    return set_cpu_threads(cpu_threads)


@contextlib.contextmanager
def user_errors(debug=False, prog=None):
    """Turn user errors into one line on stderr and exit status 2.

    With ``debug`` the traceback is shown instead. Interrupts exit with 130.
    """
    prog = prog or sys.argv[0]
    try:
        yield
    except SegError as exc:
        if debug:
            traceback.print_exc()
        print('{}: error: {}'.format(prog, exc), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('{}: interrupted'.format(prog), file=sys.stderr)
        sys.exit(130)


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
    """Load and check the config, build the model, load ``--model_path``.

    Returns:
        tuple: ``(cfg, model, dataset or None)``.
    """
    from paddleseg.cvlibs import config_builder as builder
    from paddleseg.cvlibs.config import load_and_check
    from paddleseg.utils.checkpoint import load_entire_model
    cfg = without_pretrained(load_and_check(args.config, opts=args.opts,
                                            for_training=False))
    setup_device(args.device, args.cpu_threads)
    model = builder.build_model(cfg, args.config)
    load_entire_model(model, args.model_path)
    dataset = builder.build_dataset(cfg, dataset_key, args.config) \
        if dataset_key else None
    return cfg, model, dataset
