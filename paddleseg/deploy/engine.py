"""Running an export: :func:`load_engine` and :class:`EngineModel`.

Owns picking the runtime of an export (Paddle Inference, ONNX Runtime or
OpenVINO Runtime, :func:`open_engine`), the callable :func:`load_engine`
returns, and :class:`EngineModel`, what ``val.py`` and ``predict.py`` run
with ``--engine inference`` (Paddle Inference), ``--engine onnx`` (ONNX
Runtime) or ``--engine openvino`` (OpenVINO Runtime, fp32 or bf16): the
folder ``export.py`` wrote behind the call the evaluation and
prediction loops make of a model (``model(images)[0]``), so sharding,
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

import dataclasses
import os

import numpy as np
import paddle

from paddleseg.deploy import onnx_runtime, openvino_runtime, paddle_inference
from paddleseg.deploy.deploy_file import deploy_format, load_deploy, read_export
from paddleseg.deploy.options import CPU_ENGINES, DeployOptions, engine_for_format
from paddleseg.errors import DeployError

_ENGINE_KWARGS = {'onnx': set(), 'openvino': {'precision'}}
"""The keyword arguments of :func:`load_engine` beyond its own that the CPU
engines take."""


def load_engine(model_dir, engine='auto', use_gpu=False, use_onednn=False,
                cpu_threads=None, **predictor_options):
    """A callable that runs an exported model.

    Args:
        model_dir (str): The folder :func:`~paddleseg.deploy.export` wrote.
        engine (str, optional): 'inference' (Paddle Inference), 'onnx'
            (ONNX Runtime), 'openvino' (OpenVINO Runtime; ONNX exports) or
            'auto' (ONNX Runtime for an ONNX export, Paddle Inference
            otherwise). Default: 'auto'.
        use_gpu, use_onednn, cpu_threads: Of Paddle Inference (see
            :func:`~paddleseg.deploy.build_config`); ``cpu_threads`` also of
            ONNX Runtime and OpenVINO.
        **predictor_options: The keyword-only arguments of
            :func:`~paddleseg.deploy.build_config` (GPU precision, TensorRT,
            ...), for the 'inference' engine; 'openvino' takes
            ``precision`` ('fp32' or 'bf16') alone.

    Raises:
        DeployError: (a ValueError) an engine that cannot run this export's
            format, Paddle Inference options for 'onnx' or 'openvino', a bad
            option (:class:`~paddleseg.deploy.DeployOptions`; bf16 on a CPU
            without bf16 instructions).

    Returns:
        callable: ``images`` (``float32 [N, 3, H, W]`` numpy, normalised as
        ``deploy.yaml``'s transforms say) -> numpy output of the exported
        program: the ``int32 [N, H, W]`` class map (output_op argmax), or
        ``float32 [N, C, H, W]`` probabilities or logits. The callable has
        ``engine``, ``output_op`` and ``deploy`` attributes.
    """
    deploy = load_deploy(model_dir)
    engine = engine_for_format(engine, deploy_format(deploy), model_dir)
    foreign = sorted(set(predictor_options) - _ENGINE_KWARGS.get(engine, set()))
    if engine in _ENGINE_KWARGS and foreign:
        raise DeployError('engine {} ({}) takes no Paddle Inference options, got '
                          '{}'.format(engine, CPU_ENGINES[engine], foreign))
    options = DeployOptions.from_predictor_args(engine, use_gpu, use_onednn, cpu_threads,
                                                **predictor_options)
    return open_engine(model_dir, options, deploy)


def open_engine(model_dir, options, deploy=None):
    """:func:`load_engine` with the options as a
    :class:`~paddleseg.deploy.DeployOptions` (and the ``Deploy`` mapping,
    when already read)."""
    deploy = deploy if deploy is not None else load_deploy(model_dir)
    engine = engine_for_format(options.engine, deploy_format(deploy), model_dir)
    if engine == 'onnx':
        run = onnx_runtime.onnx_runner(
            onnx_runtime.create_onnx_session(model_dir, options.cpu_threads))
    elif engine == 'openvino':
        run = openvino_runtime.openvino_runner(model_dir, options.cpu_threads,
                                               options.precision)
    else:
        predictor = paddle_inference.create_predictor(
            model_dir, options.use_gpu, options.use_onednn, options.cpu_threads,
            **options.predictor_options())

        def run(images):
            return paddle_inference.run_predictor(predictor, images)
    run.engine = engine
    run.output_op = deploy.get('output_op', 'argmax')
    run.deploy = deploy
    return run


class EngineModel:
    """Runs an exported model on normalised image batches.

    Args:
        model_dir (str): The folder export.py wrote (with ``deploy.yaml``).
        engine (str): 'inference', 'onnx' or 'openvino' (or 'auto': by the
            format).
        device (str, optional): ``cpu`` or ``gpu[:id]`` (Paddle Inference
            only). Default: 'cpu'.
        cpu_threads (int, optional): CPU math threads. Default: the engine's.
        use_onednn (bool, optional): oneDNN kernels of Paddle Inference on
            the CPU. Default: True.
        precision (str, optional): 'fp32', 'fp16' (Paddle Inference on a
            GPU; elsewhere fp32 with a warning) or 'bf16' (OpenVINO on a CPU
            with AMX-BF16 or AVX512-BF16; refused elsewhere). Default: 'fp32'.
        num_classes (int, optional): For palettes and checks; the exported
            program does not record it. Default: None.

    :meth:`from_options` makes one of a
    :class:`~paddleseg.deploy.DeployOptions`.

    Raises:
        DeployError: (a ConfigError) ``model_dir`` is not an export, its
            format is not one ``engine`` runs, an option is bad, or the
            engine's package is missing (one line).

    Calling it with ``[N, 3, H, W]`` float32 images (a Tensor or numpy)
    returns a one-item list: the ``int64 [N, H, W]`` class map for an
    ``argmax`` export (``returns_class_map`` is then True), else ``float32
    [N, C, H, W]`` logits (the log of a ``softmax`` export's
    probabilities).
    """

    def __init__(self, model_dir, engine, device='cpu', cpu_threads=None,
                 use_onednn=True, precision='fp32', num_classes=None):
        options = DeployOptions.with_fallbacks(
            engine=engine, device=device, precision=precision, cpu_threads=cpu_threads,
            use_onednn=use_onednn)  # Paddle Inference on a GPU leaves it out
        self._open(model_dir, options, num_classes)

    @classmethod
    def from_options(cls, model_dir, options, num_classes=None):
        """The EngineModel of ``model_dir`` run with ``options``
        (:class:`~paddleseg.deploy.DeployOptions`)."""
        model = cls.__new__(cls)
        model._open(model_dir, options, num_classes)
        return model

    def _open(self, model_dir, options, num_classes):
        deploy = read_export(model_dir, options.engine)
        try:
            self.run = open_engine(model_dir, options, deploy)
        except ImportError as exc:  # the optional packages (ONNX, OpenVINO)
            raise DeployError(str(exc)) from None
        self.options = dataclasses.replace(options, engine=self.run.engine)
        self.engine = self.run.engine
        self.format = deploy_format(deploy)
        self.deploy = deploy
        self.model_dir = model_dir
        self.output_op = self.run.output_op
        self.num_classes = num_classes
        self.device = options.device
        self.precision = options.precision

    @property
    def returns_class_map(self):
        """True for an ``argmax`` export: the output is the class map."""
        return self.output_op == 'argmax'

    def eval(self):  # the loops call model.eval()
        return self

    def check_inference(self, aug=False, is_slide=False):
        """Raise DeployError when this export cannot do what is asked."""
        if self.returns_class_map and (aug or is_slide):
            raise DeployError(
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
