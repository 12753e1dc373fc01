"""How to run an exported model: :class:`DeployOptions`, validated once.

Owns the deployment options (engine, device, precision, CPU threads, oneDNN,
the GPU memory pool and the TensorRT settings), their defaults and every
check of them on their own, the engine vocabulary (:data:`ENGINES`), the
rule of which engine runs which export format (:func:`engine_for_format`),
the fp16-on-a-CPU fallback of ``val.py`` / ``predict.py`` and the refusal
of bf16 but by OpenVINO on a CPU with bf16 instructions
(:func:`check_bf16`). Checks that need the export itself (the TensorRT shape range against its input) are
:mod:`paddleseg.deploy.paddle_inference`'s.

Every bad value raises one :class:`~paddleseg.errors.DeployError` line
naming the option (a ValueError too).
"""

import dataclasses
import os
from typing import Optional

import numpy as np

from paddleseg.errors import ConfigError, DeployError
from paddleseg.utils import cpu, dist, logger
from paddleseg.utils.dist import device_kind

ENGINES = ('dygraph', 'inference', 'onnx', 'openvino')
"""The ``--engine`` values of val.py / predict.py; all but dygraph run an
export (Paddle Inference, ONNX Runtime, OpenVINO Runtime)."""

ENGINE_FORMATS = {'inference': ('paddle_legacy', 'paddle'), 'onnx': ('onnx',),
                  'openvino': ('onnx',)}
"""The export formats each engine runs (the first: the one to export)."""

CPU_ENGINES = {'onnx': "ONNX Runtime's CPU provider",
               'openvino': "OpenVINO's CPU plugin"}
"""The engines that run on the CPU only, and what of theirs runs."""

PRECISIONS = ('fp32', 'fp16', 'bf16', 'int8')
"""The precisions of ``--precision``. fp32: every engine. On the CPU, bf16
is OpenVINO's on a CPU with AMX-BF16 or AVX512-BF16 (:func:`check_bf16`);
an int8 model is an export of its own (``export.py --quantize int8``), run
with fp32. On a GPU (Paddle Inference): :data:`GPU_PRECISIONS`."""

GPU_PRECISIONS = {'fp32': ('gpu', 'tensorrt'), 'fp16': ('gpu', 'tensorrt'),
                  'bf16': ('gpu',), 'int8': ('tensorrt',)}
"""Paddle Inference on a GPU: which precision runs without TensorRT
('gpu': ``enable_use_gpu``'s ``precision_mode``) and with it ('tensorrt':
``enable_tensorrt_engine``'s). bf16 has no TensorRT mode in Paddle
Inference's docs; int8 is TensorRT's, with a calibration table
(:func:`paddleseg.deploy.tensorrt.calibrate_int8`)."""

_TRT_SETTINGS = ('trt_dynamic_shape', 'trt_use_static', 'trt_cache_dir', 'trt_auto_tune',
                 'trt_shape_file')


def int_option(name, value, minimum):
    """``value`` as an int; one-line DeployError naming ``name`` unless it is
    an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise DeployError('{} must be an integer >= {}, got {!r}'.format(
            name, minimum, value))
    return int(value)


def _parse_device(device):
    """``'gpu:1'`` -> ``('gpu', 1)``; ``'cpu'`` -> ``('cpu', 0)``."""
    try:
        kind, index = dist.parse_device(device)
    except ConfigError:
        raise DeployError('device must be cpu or gpu[:index], got {!r}'.format(
            device)) from None
    return kind, index or 0


def engine_for_format(engine, fmt, model_dir):
    """The engine that runs an export of format ``fmt`` in ``model_dir``:
    ``engine`` itself (:data:`ENGINE_FORMATS`), or for 'auto' ONNX Runtime
    ('onnx') for an ONNX export and Paddle Inference ('inference')
    otherwise.

    Raises:
        DeployError: ``engine`` is none of 'auto' and :data:`ENGINES` but
            dygraph, or cannot run this format (the message names
            ``--format``).
    """
    _check_engine(engine)
    if engine == 'auto':
        return 'onnx' if fmt == 'onnx' else 'inference'
    formats = ENGINE_FORMATS[engine]
    if fmt not in formats:
        raise DeployError('{}: holds a {} export; --engine {} runs {} (export with '
                          '--format {})'.format(model_dir, fmt, engine,
                                                ' or '.join(formats), formats[0]))
    return engine


def _check_engine(engine):
    if engine not in ('auto',) + tuple(ENGINE_FORMATS):
        names = ["'{}'".format(e) for e in ('auto',) + tuple(ENGINE_FORMATS)]
        raise DeployError('engine must be {} or {}, got {!r}'.format(
            ', '.join(names[:-1]), names[-1], engine))


def _check_trt_shape_spec(spec):
    """The ``trt_dynamic_shape`` mapping on its own: ``{'min', 'opt',
    'max'}`` of 4 positive integers each, ``min <= opt <= max`` per size,
    an optional non-empty ``name``. Returns it with lists of ints."""
    if not isinstance(spec, dict):
        raise DeployError("trt_dynamic_shape must be a dict {{'min': [N, C, H, W], "
                          "'opt': [...], 'max': [...]}}, got {!r}".format(spec))
    keys = set(spec)
    if not {'min', 'opt', 'max'} <= keys or keys - {'min', 'opt', 'max', 'name'}:
        raise DeployError('trt_dynamic_shape takes the keys min, opt, max (and '
                          'optionally name), got {}'.format(sorted(map(str, keys))))
    shapes = {}
    for key in ('min', 'opt', 'max'):
        values = spec[key]
        if not isinstance(values, (list, tuple)) or len(values) != 4 or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0
                for v in values):
            raise DeployError("trt_dynamic_shape['{}'] must be 4 positive integers "
                              "N C H W, got {!r}".format(key, values))
        shapes[key] = [int(v) for v in values]
    for i, axis in enumerate('NCHW'):
        low, opt, high = shapes['min'][i], shapes['opt'][i], shapes['max'][i]
        if not low <= opt <= high:
            raise DeployError('trt_dynamic_shape needs min <= opt <= max for each '
                              'size; {} is min {}, opt {}, max {}'.format(
                                  axis, low, opt, high))
    if 'name' in spec:
        name = spec['name']
        if name is not None and (not isinstance(name, str) or not name):
            raise DeployError("trt_dynamic_shape['name'] must be a non-empty string, "
                              "got {!r}".format(name))
        shapes['name'] = name
    return shapes


@dataclasses.dataclass(frozen=True)
class DeployOptions:
    """How to run an exported model; checked when made (DeployError).

    Args:
        engine (str): 'inference' (Paddle Inference), 'onnx' (ONNX Runtime,
            CPU only), 'openvino' (OpenVINO Runtime, CPU only) or 'auto' (by
            the export's format, :func:`engine_for_format`). Default: 'auto'.
        device (str): 'cpu', 'gpu' or 'gpu:<id>' (kept as 'cpu' or
            'gpu:<id>'). Default: 'cpu'.
        precision (str): One of :data:`PRECISIONS`. On a GPU (Paddle
            Inference) as :data:`GPU_PRECISIONS` says: fp32, fp16 and bf16
            without TensorRT, fp32, fp16 and int8 (calibrated) with it. On
            the CPU fp32, and bf16 with engine 'openvino' on a CPU with
            AMX-BF16 or AVX512-BF16 (an int8 export runs with fp32).
            Default: 'fp32'.
        cpu_threads (int, optional): CPU math threads (>= 0; None or 0:
            the engine's default). Default: None.
        use_onednn (bool): oneDNN kernels of Paddle Inference on the CPU.
            Default: False.
        gpu_mem_mb (int): The initial GPU memory pool in MB (> 0).
            Default: 256.
        use_trt (bool): Paddle-TensorRT subgraphs (needs the GPU).
            Default: False.
        trt_min_subgraph_size (int): TensorRT runs a subgraph only with
            more nodes than this (>= 1). Default: 3.
        trt_workspace_mb (int): TensorRT's workspace in MB (> 0).
            Default: 1024.
        trt_dynamic_shape (dict, optional): ``{'min': [N, C, H, W], 'opt':
            [...], 'max': [...]}`` with ``min <= opt <= max``, optionally
            ``'name'`` (the input's). Default: None.
        trt_use_static (bool): Serialise the TensorRT engines. Default: False.
        trt_cache_dir (str, optional): Where they go (and the int8
            calibration tables). Default: None.
        trt_auto_tune (bool): Collect the shape range of every tensor first
            (a run of the export on the tuning shapes,
            :func:`paddleseg.deploy.tensorrt.collect_shape_ranges`), then
            build TensorRT with them (PaddleSeg's ``--enable_auto_tune``).
            Default: False.
        trt_shape_file (str, optional): The shape-range file: where
            ``trt_auto_tune`` writes it, or, without it, a file collected
            before. Default: None (``shape_range_info.pbtxt`` in
            ``trt_cache_dir``, else in the export's folder).

    The TensorRT settings other than the sizes need ``use_trt``.
    """

    engine: str = 'auto'
    device: str = 'cpu'
    precision: str = 'fp32'
    cpu_threads: Optional[int] = None
    use_onednn: bool = False
    gpu_mem_mb: int = 256
    use_trt: bool = False
    trt_min_subgraph_size: int = 3
    trt_workspace_mb: int = 1024
    trt_dynamic_shape: Optional[dict] = None
    trt_use_static: bool = False
    trt_cache_dir: Optional[str] = None
    trt_auto_tune: bool = False
    trt_shape_file: Optional[str] = None

    def __post_init__(self):
        _check_engine(self.engine)
        kind, index = _parse_device(self.device)
        if kind not in ('cpu', 'gpu'):
            raise DeployError('--engine {} runs on cpu or gpu, not {}'.format(
                self.engine, kind))
        if self.engine in CPU_ENGINES and kind != 'cpu':
            raise DeployError('--engine {} runs on the CPU ({}): use --device cpu, '
                              'or --engine inference on the GPU'.format(
                                  self.engine, CPU_ENGINES[self.engine]))
        index = int_option('device_id', index, 0)
        self._set('device', 'gpu:{}'.format(index) if kind == 'gpu' else 'cpu')
        for name, minimum in (('gpu_mem_mb', 1), ('trt_min_subgraph_size', 1),
                              ('trt_workspace_mb', 1)):
            self._set(name, int_option(name, getattr(self, name), minimum))
        if self.cpu_threads is not None:
            self._set('cpu_threads', int_option('cpu_threads', self.cpu_threads, 0))
        self._check_precision()
        if self.use_trt and not self.use_gpu:
            raise DeployError('use_trt (TensorRT) needs use_gpu=True')
        if not self.use_trt:
            for name in _TRT_SETTINGS:
                value, default = getattr(self, name), _default(name)
                if value is not default and value != default:
                    raise DeployError('{} is a TensorRT setting: it needs use_trt=True'
                                      .format(name))
        elif self.trt_dynamic_shape is not None:
            self._set('trt_dynamic_shape', _check_trt_shape_spec(self.trt_dynamic_shape))
        for name in ('trt_cache_dir', 'trt_shape_file'):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike))
                                      or not str(value)):
                raise DeployError('{} must be a path, got {!r}'.format(name, value))
        for name in ('use_onednn', 'use_trt', 'trt_use_static', 'trt_auto_tune'):
            self._set(name, bool(getattr(self, name)))

    def _set(self, name, value):
        object.__setattr__(self, name, value)  # frozen: normalising in __post_init__

    def _check_precision(self):
        if self.precision not in PRECISIONS:
            raise DeployError('precision must be one of {}, got {!r}'.format(
                PRECISIONS, self.precision))
        if _fp16_off_gpu(self.precision, self.device):
            raise DeployError("precision 'fp16' needs use_gpu=True (on the CPU the "
                              "exported model runs in fp32)")
        if self.use_gpu:
            _check_gpu_precision(self.precision, self.use_trt)
        elif self.precision == 'bf16':
            check_bf16(self.engine)
        elif self.precision != 'fp32':
            raise DeployError("precision {!r} needs use_gpu=True (TensorRT); on the CPU an "
                              "int8 model is an export of its own (export.py --format onnx "
                              "--quantize int8), run with precision 'fp32'".format(
                                  self.precision))

    @property
    def use_gpu(self):
        """True on a GPU."""
        return device_kind(self.device) == 'gpu'

    @property
    def device_id(self):
        """The GPU's id (0 on the CPU)."""
        return _parse_device(self.device)[1]

    @classmethod
    def from_predictor_args(cls, engine='inference', use_gpu=False, use_onednn=False,
                            cpu_threads=None, device_id=0, **options):
        """The options of :func:`~paddleseg.deploy.build_config`'s arguments
        (``use_gpu`` and ``device_id`` for ``device``)."""
        device_id = int_option('device_id', device_id, 0)
        device = 'gpu:{}'.format(device_id) if use_gpu else 'cpu'
        return cls(engine=engine, device=device, use_onednn=use_onednn,
                   cpu_threads=cpu_threads, **options)

    @classmethod
    def with_fallbacks(cls, **fields):
        """``DeployOptions(**fields)``, except that fp16 asked of a CPU runs
        fp32 with a warning (val.py / predict.py ``--engine``) instead of
        raising."""
        if _fp16_off_gpu(fields.get('precision'), fields.get('device', 'cpu')):
            logger.warning('fp16 needs a GPU; --engine {} runs fp32 on the CPU'.format(
                fields.get('engine', 'auto')))
            fields['precision'] = 'fp32'
        return cls(**fields)

    def predictor_options(self):
        """The keyword-only arguments of
        :func:`~paddleseg.deploy.build_config` these options give: those
        that differ from their defaults, and on a GPU its id and the
        precision."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ('engine', 'device', 'cpu_threads', 'use_onednn')
                  and getattr(self, f.name) != f.default}
        if self.use_gpu:
            kwargs.update(device_id=self.device_id, precision=self.precision)
        return kwargs


def _default(name):
    return DeployOptions.__dataclass_fields__[name].default


def _check_gpu_precision(precision, use_trt):
    """The rule of :data:`GPU_PRECISIONS`: one DeployError line when
    Paddle Inference on a GPU cannot run ``precision`` (with or without
    TensorRT)."""
    where = 'tensorrt' if use_trt else 'gpu'
    if where in GPU_PRECISIONS[precision]:
        return
    if use_trt:
        raise DeployError("precision {!r} has no TensorRT mode in Paddle Inference: "
                          "use 'fp32', 'fp16' or 'int8' with use_trt, or {!r} without "
                          "it".format(precision, precision))
    raise DeployError("precision {!r} on the GPU is TensorRT's (a calibrated int8 "
                      "engine): add use_trt=True (--use_trt)".format(precision))


def check_bf16(engine):
    """bf16 is OpenVINO's (``engine`` 'openvino'), on a CPU with bf16
    instructions (:func:`paddleseg.utils.cpu.bf16_isa`); for another engine
    (dygraph included) or CPU, one DeployError line saying so and what to
    run instead."""
    if engine != 'openvino':
        raise DeployError('--precision bf16 on the CPU runs with --engine openvino '
                          '(OpenVINO); --engine {} runs fp32 here: use --precision '
                          'fp32'.format(engine))
    if cpu.bf16_isa() is None:
        raise DeployError('--precision bf16: {} has neither AMX-BF16 nor AVX512-BF16, '
                          'so OpenVINO would compute in fp32: use --precision fp32'
                          .format(cpu.cpu_model()))


def _fp16_off_gpu(precision, device):
    """fp16 needs the GPU: whether ``precision`` asks it of another device."""
    return precision == 'fp16' and _parse_device(device)[0] != 'gpu'
