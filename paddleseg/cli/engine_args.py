"""``--engine`` of val.py and predict.py: the flags, the one
:class:`~paddleseg.deploy.DeployOptions` they make, and the exported model
they load in the place of the dygraph one.

What an export carries from a config (its transforms, the class count) is
the config's to say: :attr:`~paddleseg.cvlibs.Config.export_transforms`,
:attr:`~paddleseg.cvlibs.Config.num_classes`.
"""

from paddleseg.cli.args import precision_of, str2bool
from paddleseg.deploy.options import ENGINES

__all__ = ['add_engine_args', 'deploy_options', 'dygraph_precision', 'load_exported']


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
    ``--enable_mkldnn``, ``--precision`` / ``--fp16`` on the device set
    (``paddle.get_device()``) with ``cpu_threads``; fp16 on the CPU runs
    fp32 with a warning, bf16 where it cannot run is refused
    (:class:`~paddleseg.deploy.DeployOptions`)."""
    import paddle
    from paddleseg.deploy import DeployOptions
    return DeployOptions.with_fallbacks(
        engine=args.engine, device=paddle.get_device(), precision=precision_of(args),
        cpu_threads=cpu_threads, use_onednn=getattr(args, 'enable_mkldnn', True))


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
