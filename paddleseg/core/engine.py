"""An exported model in the place of the dygraph one.

Owns :class:`EngineModel`, what ``val.py`` and ``predict.py`` run with
``--engine inference`` (Paddle Inference) or ``--engine onnx`` (ONNX
Runtime): the folder ``export.py`` wrote, loaded with
:func:`paddleseg.core.export.load_engine`, behind the call the evaluation
and prediction loops make of a model (``model(images)[0]``), so sharding,
metrics, writers and outputs are the same code for every engine.

What an export can do depends on its ``output_op``:

* ``argmax`` (export.py's default): the class map. Whole-image inference
  only; a resize of the eval transforms is undone on the class map
  (nearest), where dygraph resizes the logits (bilinear) before its argmax,
  so only the pixels at class borders of a resized image can differ.
* ``none`` (logits) and ``softmax`` (probabilities, passed on as their
  logarithm, whose softmax they are): everything dygraph does, sliding
  windows and multi-scale / flip averaging included.
"""

import os

import numpy as np
import paddle

from paddleseg.errors import ConfigError
from paddleseg.utils import logger

ENGINES = ('dygraph', 'inference', 'onnx')


def _device_of(device):
    """``'gpu:1'`` -> ``('gpu', 1)``; ``'cpu'`` -> ``('cpu', 0)``."""
    kind, _, index = str(device).partition(':')
    return kind, int(index or 0)


class EngineModel:
    """Runs an exported model on normalised image batches.

    Args:
        model_dir (str): The folder export.py wrote (with ``deploy.yaml``).
        engine (str): 'inference' or 'onnx'.
        device (str, optional): ``cpu`` or ``gpu[:id]`` (Paddle Inference
            only). Default: 'cpu'.
        cpu_threads (int, optional): CPU math threads. Default: the engine's.
        use_onednn (bool, optional): oneDNN kernels of Paddle Inference on
            the CPU. Default: True.
        precision (str, optional): 'fp32', or 'fp16' (Paddle Inference on a
            GPU). Default: 'fp32'.
        num_classes (int, optional): For palettes and checks; the exported
            program does not record it. Default: None.

    Raises:
        ConfigError: ``model_dir`` is not an export, its format is not one
            ``engine`` runs, or the engine's package is missing (one line).

    Calling it with ``[N, 3, H, W]`` float32 images (a Tensor or numpy)
    returns a one-item list: the ``int64 [N, H, W]`` class map for an
    ``argmax`` export (``returns_class_map`` is then True), else ``float32
    [N, C, H, W]`` logits (the log of a ``softmax`` export's
    probabilities).
    """

    def __init__(self, model_dir, engine, device='cpu', cpu_threads=None,
                 use_onednn=True, precision='fp32', num_classes=None):
        from paddleseg.core.export import deploy_format, load_deploy, load_engine
        if engine not in ENGINES[1:]:
            raise ConfigError('--engine must be one of {}, got {!r}'.format(
                ENGINES, engine))
        deploy_file = os.path.join(str(model_dir), 'deploy.yaml')
        if not os.path.isfile(deploy_file):
            raise ConfigError(
                '--model_path {}: --engine {} runs an exported model: give the '
                'folder export.py wrote (it holds deploy.yaml), not a weights '
                'file'.format(model_dir, engine))
        try:
            deploy = load_deploy(model_dir)
        except Exception as exc:
            raise ConfigError('{}: not a readable deploy.yaml ({}: {})'.format(
                deploy_file, type(exc).__name__, exc)) from None
        if not isinstance(deploy, dict) or 'model' not in deploy:
            raise ConfigError('{}: Deploy.model: missing'.format(deploy_file))
        kind, device_id = _device_of(device)
        if kind not in ('cpu', 'gpu'):
            raise ConfigError('--engine {} runs on cpu or gpu, not {}'.format(engine, kind))
        if engine == 'onnx' and kind != 'cpu':
            raise ConfigError('--engine onnx runs on the CPU (ONNX Runtime\'s CPU '
                              'provider): use --device cpu, or --engine inference '
                              'on the GPU')
        fmt = deploy_format(deploy)
        wanted = 'onnx' if engine == 'onnx' else 'paddle_legacy or paddle'
        if (fmt == 'onnx') != (engine == 'onnx'):
            raise ConfigError('{}: holds a {} export; --engine {} runs {} (export '
                              'with --format {})'.format(
                                  model_dir, fmt, engine, wanted,
                                  'onnx' if engine == 'onnx' else 'paddle_legacy'))
        if precision not in ('fp32', 'fp16'):
            raise ConfigError('precision must be fp32 or fp16, got {!r}'.format(precision))
        if precision == 'fp16' and kind != 'gpu':
            logger.warning('fp16 needs a GPU; --engine {} runs fp32 on the CPU'.format(engine))
            precision = 'fp32'
        options = {}
        if kind == 'gpu':
            options = dict(device_id=device_id, precision=precision)
        try:
            self.run = load_engine(model_dir, engine, use_gpu=kind == 'gpu',
                                   use_onednn=bool(use_onednn) and kind == 'cpu',
                                   cpu_threads=cpu_threads, **options)
        except ImportError as exc:  # the optional ONNX packages
            raise ConfigError(str(exc)) from None
        self.engine = engine
        self.format = fmt
        self.deploy = deploy
        self.model_dir = model_dir
        self.output_op = deploy.get('output_op', 'argmax')
        self.num_classes = num_classes
        self.device = 'gpu:{}'.format(device_id) if kind == 'gpu' else 'cpu'
        self.precision = precision

    @property
    def returns_class_map(self):
        """True for an ``argmax`` export: the output is the class map."""
        return self.output_op == 'argmax'

    def eval(self):  # the loops call model.eval()
        return self

    def check_inference(self, aug=False, is_slide=False):
        """Raise ConfigError when this export cannot do what is asked."""
        if self.returns_class_map and (aug or is_slide):
            raise ConfigError(
                '{}: {} needs the scores, but this export outputs the class map '
                '(output_op argmax): export with --output_op none (or softmax)'.format(
                    os.path.join(str(self.model_dir), 'deploy.yaml'),
                    'sliding-window inference' if is_slide else
                    'multi-scale / flip averaging'))

    def __call__(self, images):
        x = images.numpy() if isinstance(images, paddle.Tensor) else np.asarray(images)
        out = self.run(np.ascontiguousarray(x, dtype='float32'))
        if self.returns_class_map:
            return [paddle.to_tensor(out.astype('int64'))]
        if self.output_op == 'softmax':
            out = np.log(np.maximum(out, np.finfo(np.float32).tiny))
        return [paddle.to_tensor(out.astype('float32'))]

    def __repr__(self):
        return 'EngineModel({!r}, engine={!r}, format={!r}, output_op={!r}, {})'.format(
            self.model_dir, self.engine, self.format, self.output_op, self.device)
