"""``--engine`` of val.py and predict.py, and what export.py takes from a config.

Owns the engine flags (:func:`add_engine_args`), turning them into the one
:class:`~paddleseg.deploy.DeployOptions` (:func:`deploy_options`), loading
``--model_path``'s export with them (:func:`load_exported`), and which
transforms an export carries (:func:`export_transforms`).
"""

from paddleseg.deploy.options import ENGINES
from paddleseg.utils.cli import precision_of, str2bool


def add_engine_args(parser):
    """--engine dygraph|inference|onnx and --enable_mkldnn (val.py, predict.py)."""
    parser.add_argument('--engine', choices=list(ENGINES), default='dygraph',
                        help='dygraph: the model of --config with the weights of '
                             '--model_path; inference (Paddle Inference) or onnx '
                             '(ONNX Runtime): the exported model of the folder '
                             '--model_path (export.py --format paddle_legacy|paddle, '
                             'or onnx). Default: dygraph.')
    parser.add_argument('--enable_mkldnn', type=str2bool, default=True,
                        metavar='true|false',
                        help='oneDNN kernels of --engine inference on the CPU '
                             '(default: true).')


def export_transforms(cfg):
    """``(key, specs)``: the transforms an export carries in deploy.yaml,
    the config's ``export.transforms`` if given, else ``val_dataset``'s
    (``[]`` when neither has any)."""
    key = 'export' if (cfg.get('export') or {}).get('transforms') else 'val_dataset'
    return key, (cfg.get(key) or {}).get('transforms') or []


def deploy_options(args, cpu_threads=None):
    """The :class:`~paddleseg.deploy.DeployOptions` of ``--engine``,
    ``--enable_mkldnn``, ``--precision`` / ``--fp16`` on the device set
    (``paddle.get_device()``) with ``cpu_threads``; fp16 on the CPU runs
    fp32 with a warning."""
    import paddle
    from paddleseg.deploy import DeployOptions
    return DeployOptions.with_fallbacks(
        engine=args.engine, device=paddle.get_device(), precision=precision_of(args),
        cpu_threads=cpu_threads, use_onednn=getattr(args, 'enable_mkldnn', True))


def load_exported(args, cfg, cpu_threads=None):
    """The :class:`~paddleseg.deploy.EngineModel` of ``--model_path``
    for ``--engine``, on the device set; warns when the export's
    normalisation differs from the config's eval transforms."""
    from paddleseg.deploy import EngineModel
    from paddleseg.utils import logger
    options = deploy_options(args, cpu_threads)
    model = EngineModel.from_options(
        args.model_path, options,
        num_classes=(cfg.get('model') or {}).get('num_classes') or
        (cfg.get('val_dataset') or {}).get('num_classes'))
    exported = model.deploy.get('transforms')
    _, wanted = export_transforms(cfg)
    if exported is not None and wanted and exported != wanted:
        logger.warning('{}/deploy.yaml: its transforms differ from the eval '
                       'transforms of {}, which this run applies'.format(
                           args.model_path, args.config))
    if getattr(args, 'amp_level', 'O1') == 'O2' and precision_of(args) == 'fp16':
        logger.warning('--amp_level O2 is for dygraph; --engine {} runs the '
                       'exported program in {}'.format(args.engine, model.precision))
    return model
