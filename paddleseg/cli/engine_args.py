"""The ``--engine`` flags of val.py and predict.py and the exported model
they load (moved from utils/cli.py; :func:`load_exported` takes the
:class:`~paddleseg.cvlibs.Config` and reads ``cfg.num_classes`` and
``cfg.export_transforms``).
"""

from paddleseg.cli.args import precision_of, str2bool

__all__ = ['add_engine_args', 'load_exported']


def add_engine_args(parser):
    """--engine dygraph|inference|onnx and --enable_mkldnn (val.py, predict.py)."""
    parser.add_argument('--engine', choices=['dygraph', 'inference', 'onnx'],
                        default='dygraph',
                        help='dygraph: the model of --config with the weights of '
                             '--model_path; inference (Paddle Inference) or onnx '
                             '(ONNX Runtime): the exported model of the folder '
                             '--model_path (export.py --format paddle_legacy|paddle, '
                             'or onnx). Default: dygraph.')
    parser.add_argument('--enable_mkldnn', type=str2bool, default=True,
                        metavar='true|false',
                        help='oneDNN kernels of --engine inference on the CPU '
                             '(default: true).')


def load_exported(args, cfg, cpu_threads=None):
    """The :class:`~paddleseg.core.engine.EngineModel` of ``--model_path``
    for ``--engine``, on the device set; warns when the export's
    transforms differ from the config's (:attr:`Config.export_transforms`).

    Args:
        cfg (Config): The checked config.
    """
    import paddle
    from paddleseg.core.engine import EngineModel
    precision = precision_of(args)
    model = EngineModel(args.model_path, args.engine, device=paddle.get_device(),
                        cpu_threads=cpu_threads,
                        use_onednn=getattr(args, 'enable_mkldnn', True),
                        precision=precision,
                        num_classes=cfg.num_classes)
    exported = model.deploy.get('transforms')
    _, wanted = cfg.export_transforms
    if exported is not None and wanted and exported != wanted:
        from paddleseg.utils import logger
        logger.warning('{}/deploy.yaml: its transforms differ from the eval '
                       'transforms of {}, which this run applies'.format(
                           args.model_path, args.config))
    if getattr(args, 'amp_level', 'O1') == 'O2' and precision == 'fp16':
        from paddleseg.utils import logger
        logger.warning('--amp_level O2 is for dygraph; --engine {} runs the '
                       'exported program in {}'.format(args.engine, model.precision))
    return model
