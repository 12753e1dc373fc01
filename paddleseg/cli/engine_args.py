"""``--engine`` of val.py and predict.py: the flags, the one
:class:`~paddleseg.deploy.DeployOptions` they make, and the exported model
they load in the place of the dygraph one.

What an export carries from a config (its transforms, the class count) is
the config's to say: :attr:`~paddleseg.cvlibs.Config.export_transforms`,
:attr:`~paddleseg.cvlibs.Config.num_classes`.

The TensorRT flags are those of PaddleSeg's deploy script (``--use_trt``,
``--min_subgraph_size``, ``--enable_auto_tune`` / ``--auto_tune``,
``--auto_tuned_shape_file``), ``--trt_precision`` (the same value as
``--precision``, for TensorRT) and ``--trt_dynamic_shape``; each maps onto
one :class:`~paddleseg.deploy.DeployOptions` field, which checks it.
"""

from paddleseg.cli.args import precision_of, str2bool
from paddleseg.deploy.options import ENGINES, PRECISIONS
from paddleseg.errors import DeployError

__all__ = ['add_engine_args', 'add_trt_args', 'deploy_options', 'dygraph_precision',
           'load_exported', 'trt_options']


def add_engine_args(parser):
    """--engine dygraph|inference|onnx|openvino and --enable_mkldnn (val.py,
    predict.py); --precision is :func:`~paddleseg.cli.args.add_precision_args`'s."""
    parser.add_argument('--engine', choices=list(ENGINES), default='dygraph',
                        help='dygraph: the model of --config with the weights of '
                             '--model_path; inference (Paddle Inference), onnx '
                             '(ONNX Runtime) or openvino (OpenVINO Runtime, CPU; '
                             '--precision fp32|bf16): the exported model of the '
                             'folder --model_path (export.py --format '
                             'paddle_legacy|paddle for inference, onnx for onnx '
                             'and openvino). Default: dygraph.')
    parser.add_argument('--enable_mkldnn', type=str2bool, default=True,
                        metavar='true|false',
                        help='oneDNN kernels of --engine inference on the CPU '
                             '(default: true).')
    add_trt_args(parser)


def add_trt_args(parser):
    """The Paddle-TensorRT flags of ``--engine inference`` on a GPU."""
    group = parser.add_argument_group('TensorRT (--engine inference, --device gpu)')
    group.add_argument('--use_trt', type=str2bool, nargs='?', const=True, default=False,
                       metavar='true|false',
                       help='Run the TensorRT subgraphs of a paddle_legacy export.')
    group.add_argument('--trt_precision', choices=list(PRECISIONS), default=None,
                       help='The precision with --use_trt (fp32, fp16, or int8 with '
                            'a calibration table); the same as --precision.')
    group.add_argument('--auto_tune', '--enable_auto_tune', dest='auto_tune',
                       type=str2bool, nargs='?', const=True, default=False,
                       metavar='true|false',
                       help='Collect the shape range of every tensor first (a run on '
                            'the --trt_dynamic_shape sizes, or the fixed export size); '
                            'needed when the point head splits the program.')
    group.add_argument('--auto_tuned_shape_file', default=None, metavar='FILE',
                       help='The shape-range file --auto_tune writes (default: '
                            'shape_range_info.pbtxt in the export folder); without '
                            '--auto_tune, one collected before.')
    group.add_argument('--min_subgraph_size', type=int, default=3,
                       help='TensorRT runs subgraphs of more ops than this (default: 3).')
    group.add_argument('--trt_dynamic_shape', nargs=3, default=None,
                       metavar=('MIN', 'OPT', 'MAX'),
                       help='The input size range of a dynamic export, each N,C,H,W '
                            '(e.g. 1,3,512,512 1,3,1024,2048 1,3,1024,2048).')


def _shape_arg(text):
    try:
        values = [int(v) for v in text.replace('x', ',').split(',')]
    except ValueError:
        values = None
    if not values or len(values) != 4:
        raise DeployError('--trt_dynamic_shape: each size is N,C,H,W, got {!r}'.format(
            text))
    return values


def trt_options(args):
    """The TensorRT fields of :class:`~paddleseg.deploy.DeployOptions` that
    the flags give (none without ``--use_trt``: DeployOptions then refuses
    any given), and the precision ``--trt_precision`` / ``--precision`` ask
    for."""
    precision = precision_of(args)
    trt_precision = getattr(args, 'trt_precision', None)
    if trt_precision is not None:
        if not getattr(args, 'use_trt', False):
            raise DeployError('--trt_precision is the precision of TensorRT: add '
                              '--use_trt (or use --precision)')
        if precision not in ('fp32', trt_precision):
            raise DeployError('--precision {} and --trt_precision {} disagree'.format(
                precision, trt_precision))
        precision = trt_precision
    fields = {'use_trt': getattr(args, 'use_trt', False),
              'trt_auto_tune': getattr(args, 'auto_tune', False),
              'trt_shape_file': getattr(args, 'auto_tuned_shape_file', None),
              'trt_min_subgraph_size': getattr(args, 'min_subgraph_size', 3)}
    shapes = getattr(args, 'trt_dynamic_shape', None)
    if shapes:
        fields['trt_dynamic_shape'] = dict(zip(('min', 'opt', 'max'),
                                               map(_shape_arg, shapes)))
    return precision, fields


def dygraph_precision(args):
    """The precision of ``--precision`` / ``--fp16`` for ``--engine
    dygraph``; bf16 is refused there with the one line of
    :func:`paddleseg.deploy.options.check_bf16`."""
    precision = precision_of(args)
    if precision == 'bf16':
        from paddleseg.deploy.options import check_bf16
        check_bf16('dygraph')
    return precision


def deploy_options(args, cpu_threads=None):
    """The :class:`~paddleseg.deploy.DeployOptions` of ``--engine``,
    ``--enable_mkldnn``, ``--precision`` / ``--fp16`` and the TensorRT flags
    (:func:`trt_options`) on the device set (``paddle.get_device()``) with
    ``cpu_threads``; fp16 on the CPU runs fp32 with a warning, bf16 where it
    cannot run is refused (:class:`~paddleseg.deploy.DeployOptions`)."""
    import paddle
    from paddleseg.deploy import DeployOptions
    precision, trt = trt_options(args)
    return DeployOptions.with_fallbacks(
        engine=args.engine, device=paddle.get_device(), precision=precision,
        cpu_threads=cpu_threads, use_onednn=getattr(args, 'enable_mkldnn', True), **trt)


def load_exported(args, cfg, cpu_threads=None):
    """The :class:`~paddleseg.deploy.EngineModel` of ``--model_path`` for
    ``--engine``, on the device set; warns when the export's transforms
    differ from the config's (:attr:`Config.export_transforms`).

    Args:
        cfg (Config): The checked config.
    """
    from paddleseg.deploy import EngineModel
    from paddleseg.utils import logger
    model = EngineModel.from_options(args.model_path, deploy_options(args, cpu_threads),
                                     num_classes=cfg.num_classes)
    exported = model.deploy.get('transforms')
    _, wanted = cfg.export_transforms
    if exported is not None and wanted and exported != wanted:
        logger.warning('{}/deploy.yaml: its transforms differ from the eval '
                       'transforms of {}, which this run applies'.format(
                           args.model_path, args.config))
    if getattr(args, 'amp_level', 'O1') == 'O2' and precision_of(args) == 'fp16':
        logger.warning('--amp_level O2 is for dygraph; --engine {} runs the '
                       'exported program in {}'.format(args.engine, model.precision))
    return model
