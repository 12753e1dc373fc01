"""Export a model for deployment, and run an exported model.

This module owns the export (:func:`export`, ``deploy.yaml``), reading an
export back (:func:`load_deploy`, :func:`deploy_format`,
:func:`program_input_name`) and running it: the Paddle Inference
configuration (:func:`build_config`: CPU threads and oneDNN, GPU device,
memory pool and fp16, TensorRT subgraphs with their dynamic shape range) and
predictor (:func:`create_predictor`, :func:`run_predictor`), the ONNX Runtime
session (:func:`create_onnx_session`), and :func:`load_engine`, which picks
one of them.

The saved program is the eval-mode model (PointRend's adaptive subdivision
included) followed by the output op, with ``deploy.yaml`` next to it:

.. code-block:: yaml

    Deploy:
      model: model.pdmodel       # model.json (format paddle), model.onnx (onnx)
      params: model.pdiparams    # absent with format onnx
      transforms:                # the config's export.transforms, else
        - type: Normalize        # val_dataset.transforms
      input_shape: [-1, 3, -1, -1]
      output_op: argmax
      output_dtype: int32
      format: paddle_legacy

Formats (:data:`FORMATS`):

* ``paddle_legacy`` (the default): Paddle's old program format
  (``model.pdmodel``), written with ``FLAGS_enable_pir_api`` off for the
  time of the export. The one that runs everywhere: Paddle Inference with
  any ``Config``, its CPU defaults included (also ``enable_memory_optim()``,
  which Paddle 3.3.1 rejects for every new-IR program, and oneDNN),
  PaddleSeg's ``deploy/python/infer.py`` (and, untested, other readers of
  ``.pdmodel`` such as FastDeploy; paddle2onnx 2.1.0 crashes on it, hence
  the ``onnx`` format, converted from the new IR).
* ``paddle``: the new IR (PIR, ``model.json``), Paddle >= 3.0 only; runs
  under a default ``paddle.inference.Config`` but not with
  ``enable_memory_optim()`` on Paddle 3.3.1.
* ``onnx``: ``model.onnx`` (paddle2onnx, opset :data:`ONNX_OPSET`) for ONNX
  Runtime and other ONNX consumers; needs the optional packages of
  ``requirements-deploy.txt``.
"""

import contextlib
import os
import shutil
import tempfile

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from paddleseg.utils import logger

OUTPUT_OPS = ('argmax', 'softmax', 'none')
FORMATS = ('paddle_legacy', 'paddle', 'onnx')
DEFAULT_FORMAT = 'paddle_legacy'
ONNX_OPSET = 17  # GridSample needs 16
DEPLOY_EXTRAS = 'pip install -r requirements-deploy.txt'
PRECISIONS = ('fp32', 'fp16')
"""The ``precision`` values of :func:`build_config` (``int8`` is refused)."""

EXPORT_INPUT_NAME = 'x'
"""The name :func:`export` gives the program's input."""


def _old_ir_static():
    """Whether ops are being added to an old-IR static program."""
    return not paddle.in_dynamic_mode() and not paddle.framework.in_pir_mode()


class ExportedModel(nn.Layer):
    """The model in eval mode plus the output op.

    Args:
        model (nn.Layer): Returns a list whose first item is the logits
            ``[N, C, H, W]`` at the input size.
        output_op (str): 'argmax' (``int32 [N, H, W]`` class ids), 'softmax'
            (``float32 [N, C, H, W]`` probabilities) or 'none' (the logits).
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ValueError('output_op must be one of {}, got {!r}'.format(
                OUTPUT_OPS, output_op))
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        out = self.model(x)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        if self.output_op == 'argmax':
            return _argmax_int32(logits)
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def _argmax_int32(logits):
    """``paddle.argmax(logits, axis=1, dtype='int32')``; in an old-IR
    program, where Paddle 3.3's ``paddle.argmax`` builds new-IR ops only,
    the ``arg_max`` op it stands for."""
    if not _old_ir_static():
        return paddle.argmax(logits, axis=1, dtype='int32')
    from paddle.base.layer_helper import LayerHelper
    helper = LayerHelper('arg_max')
    out = helper.create_variable_for_type_inference(paddle.int32)
    helper.append_op(type='arg_max', inputs={'X': logits}, outputs={'Out': out},
                     attrs={'axis': 1, 'keepdims': False, 'flatten': False,
                            'dtype': int(paddle.base.core.VarDesc.VarType.INT32)})
    return out


def parse_input_shape(values):
    """``[N, C, H, W]`` with -1 for a dynamic size -> the InputSpec shape
    (None for dynamic). Raises ValueError on anything else."""
    values = [int(v) for v in values]
    if len(values) != 4:
        raise ValueError('input_shape needs 4 numbers N C H W, got {}'.format(values))
    if values[1] <= 0:
        raise ValueError('input_shape: the channels C must be given, got {}'.format(values))
    if any(v == 0 or v < -1 for v in values):
        raise ValueError('input_shape: each size is positive or -1 (dynamic), '
                         'got {}'.format(values))
    return [None if v == -1 else v for v in values]


def check_format(fmt):
    """Raise ValueError for an unknown format, ImportError (one line, with
    the install command) when ``onnx`` lacks paddle2onnx."""
    if fmt not in FORMATS:
        raise ValueError('format must be one of {}, got {!r}'.format(FORMATS, fmt))
    if fmt == 'onnx':
        _import_or_explain('paddle2onnx', 'export --format onnx')


def _import_or_explain(module, what):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError('{} needs {} (optional): {}'.format(
            what, module, DEPLOY_EXTRAS)) from None


@contextlib.contextmanager
def _ir(old_ir):
    """Build programs in the old IR (``old_ir``) or the new one, whatever
    ``FLAGS_enable_pir_api`` the process started with."""
    from paddle import pir_utils
    with (pir_utils.DygraphOldIrGuard() if old_ir else pir_utils.DygraphPirGuard()):
        yield


def _save_program(net, prefix, shape, old_ir):
    """``paddle.jit.save`` of ``net`` at ``prefix``; returns the model file."""
    spec = paddle.static.InputSpec(shape=shape, dtype='float32', name=EXPORT_INPUT_NAME)
    with _ir(old_ir):
        static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
        paddle.jit.save(static, prefix)
    model_file = prefix + ('.pdmodel' if old_ir else '.json')
    if not os.path.isfile(model_file):
        raise RuntimeError('paddle.jit.save wrote no {}'.format(model_file))
    return model_file


def _to_onnx(model_file, params_file, onnx_file):
    """Convert a new-IR program to ONNX with paddle2onnx."""
    p2o = _import_or_explain('paddle2onnx', 'export --format onnx')
    try:  # save_file=None: the bytes, without paddle2onnx's optional folding
        data = p2o.export(model_file, params_file, save_file=None,
                          opset_version=ONNX_OPSET, auto_upgrade_opset=True,
                          enable_onnx_checker=True)
    except NameError:  # paddle2onnx logs its error and returns nothing
        data = None
    if not data:
        raise RuntimeError('paddle2onnx could not convert {} (see its log above)'
                           .format(model_file))
    with open(onnx_file, 'wb') as f:
        f.write(data)
    return onnx_file


def export(model, save_dir, input_shape=(-1, 3, -1, -1), output_op='argmax',
           transforms=None, format=DEFAULT_FORMAT):
    """Save ``model`` and ``deploy.yaml`` into ``save_dir``.

    Args:
        model (nn.Layer): Weights loaded; put in eval mode here.
        save_dir (str): Output folder (created).
        input_shape (list[int], optional): ``N C H W``; -1 = dynamic.
            Default: (-1, 3, -1, -1).
        output_op (str, optional): See :class:`ExportedModel`. Default: 'argmax'.
        transforms (list[dict], optional): The transform specs written to
            ``deploy.yaml``. Default: None (empty list).
        format (str, optional): One of :data:`FORMATS` (see the module's
            doc). Default: 'paddle_legacy'.

    Returns:
        dict: ``{'model': path, 'params': path or None, 'deploy': path}``.
    """
    shape = parse_input_shape(input_shape)
    check_format(format)
    model.eval()
    net = ExportedModel(model, output_op)
    net.eval()
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, 'model')
    params_file = prefix + '.pdiparams'
    if format == 'onnx':
        tmp = tempfile.mkdtemp(prefix='export_onnx_')
        try:
            tmp_prefix = os.path.join(tmp, 'model')
            model_file = _save_program(net, tmp_prefix, shape, old_ir=False)
            model_file = _to_onnx(model_file, tmp_prefix + '.pdiparams',
                                  prefix + '.onnx')
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        params_file = None
    else:
        model_file = _save_program(net, prefix, shape,
                                   old_ir=format == 'paddle_legacy')
    deploy = {'model': os.path.basename(model_file)}
    if params_file:
        deploy['params'] = os.path.basename(params_file)
    deploy.update({
        'transforms': list(transforms or []),
        'input_shape': [-1 if v is None else v for v in shape],
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
        'format': format,
    })
    deploy_file = os.path.join(save_dir, 'deploy.yaml')
    with open(deploy_file, 'w') as f:
        yaml.safe_dump({'Deploy': deploy}, f, sort_keys=False)
    logger.info('Exported the inference model to {} ({}, format {}, input {}, '
                'output {})'.format(save_dir, deploy['model'], format,
                                    deploy['input_shape'], output_op))
    return {'model': model_file, 'params': params_file, 'deploy': deploy_file}


def load_deploy(model_dir):
    """The ``Deploy`` mapping of ``model_dir/deploy.yaml``."""
    with open(os.path.join(model_dir, 'deploy.yaml')) as f:
        return yaml.safe_load(f)['Deploy']


def deploy_format(deploy):
    """The format of a ``Deploy`` mapping (older ones have no ``format``)."""
    if deploy.get('format'):
        return deploy['format']
    model = deploy['model']
    if model.endswith('.onnx'):
        return 'onnx'
    return 'paddle' if model.endswith('.json') else 'paddle_legacy'


def _int_arg(name, value, minimum):
    """``value`` as an int; one-line ValueError naming ``name`` unless it is
    an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ValueError('{} must be an integer >= {}, got {!r}'.format(
            name, minimum, value))
    return int(value)


def program_input_name(model_dir, deploy=None):
    """The name of the first input (the output of the ``feed`` op of column
    0) of a ``paddle_legacy`` export, read from its ``model.pdmodel``; None
    for the other formats or when the program cannot be parsed."""
    deploy = deploy if deploy is not None else load_deploy(model_dir)
    if deploy_format(deploy) != 'paddle_legacy':
        return None
    try:
        from paddle.base.proto import framework_pb2
        program = framework_pb2.ProgramDesc()
        with open(os.path.join(model_dir, deploy['model']), 'rb') as f:
            program.ParseFromString(f.read())
        feeds = {}
        for op in program.blocks[0].ops:
            if op.type == 'feed':
                col = next((a.i for a in op.attrs if a.name == 'col'), 0)
                feeds[col] = op.outputs[0].arguments[0]
    except Exception:  # an unreadable or unexpected program: the caller decides
        return None
    return feeds[min(feeds)] if feeds else None


def _trt_shape_range(spec, input_shape, input_name):
    """``(name, {'min': [...], 'opt': [...], 'max': [...]})`` of a
    ``trt_dynamic_shape`` mapping, checked against the exported
    ``input_shape`` (``N C H W``, -1 = dynamic) and the program's input
    name (None when unknown: the mapping's ``name``, else
    :data:`EXPORT_INPUT_NAME`). One-line ValueError on anything else."""
    if not isinstance(spec, dict):
        raise ValueError("trt_dynamic_shape must be a dict {{'min': [N, C, H, W], "
                         "'opt': [...], 'max': [...]}}, got {!r}".format(spec))
    keys = set(spec)
    if not {'min', 'opt', 'max'} <= keys or keys - {'min', 'opt', 'max', 'name'}:
        raise ValueError('trt_dynamic_shape takes the keys min, opt, max (and '
                         'optionally name), got {}'.format(sorted(map(str, keys))))
    shapes = {}
    for key in ('min', 'opt', 'max'):
        values = spec[key]
        if not isinstance(values, (list, tuple)) or len(values) != 4 or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0
                for v in values):
            raise ValueError("trt_dynamic_shape['{}'] must be 4 positive integers "
                             "N C H W, got {!r}".format(key, values))
        shapes[key] = [int(v) for v in values]
    for i, axis in enumerate('NCHW'):
        low, opt, high = shapes['min'][i], shapes['opt'][i], shapes['max'][i]
        if not low <= opt <= high:
            raise ValueError('trt_dynamic_shape needs min <= opt <= max for each '
                             'size; {} is min {}, opt {}, max {}'.format(axis, low, opt, high))
        if input_shape[i] != -1 and (low, opt, high) != (input_shape[i],) * 3:
            raise ValueError('trt_dynamic_shape: {} is fixed at {} in the exported '
                             'input {} (deploy.yaml input_shape), got min {}, opt {}, '
                             'max {}'.format(axis, input_shape[i], input_shape, low, opt, high))
    name = spec.get('name')
    if name is None:
        name = input_name or EXPORT_INPUT_NAME
    elif not isinstance(name, str) or not name:
        raise ValueError("trt_dynamic_shape['name'] must be a non-empty string, "
                         "got {!r}".format(name))
    elif input_name is not None and name != input_name:
        raise ValueError("trt_dynamic_shape['name'] is {!r}, but the program's input "
                         "is {!r}".format(name, input_name))
    return name, shapes


def build_config(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None, *,
                 device_id=0, gpu_mem_mb=256, precision='fp32', use_trt=False,
                 trt_min_subgraph_size=3, trt_workspace_mb=1024,
                 trt_dynamic_shape=None, trt_use_static=False, trt_cache_dir=None):
    """The ``paddle.inference.Config`` of an exported model (either Paddle
    format), without a predictor (:func:`create_predictor` makes one).

    Every call below is of Paddle Inference's documented Python API
    (the Paddle Inference docs' ``Config`` pages on CPU and GPU prediction,
    with the signatures of the installed paddle 3.3.1's
    ``paddle.inference.Config``).

    Args:
        model_dir (str): The folder :func:`export` wrote.
        use_gpu (bool, optional): ``enable_use_gpu(gpu_mem_mb, device_id,
            precision_mode)``; otherwise ``disable_gpu()`` and the CPU
            settings below. A CPU-only paddle logs "Please use PaddlePaddle
            with GPU version." and keeps the CPU (Paddle's behaviour, left
            as it is). Default: False.
        use_onednn (bool, optional): CPU only. oneDNN (MKLDNN) CPU kernels
            (``enable_mkldnn()``; else ``disable_mkldnn()``, as Paddle 3
            turns it on by default). An old-IR program (``paddle_legacy``)
            gets every oneDNN pass. For a new-IR one (``paddle``) the pass
            that moves every supported op to oneDNN
            (``onednn_placement_pass``) is left out: Paddle 3.3.1 cannot run
            ``bilinear_interp`` as a new-IR oneDNN op
            ("ConvertPirAttribute2RuntimeAttribute not support
            ArrayAttribute<DoubleAttribute>": it has no converter for the
            type of its ``scale`` attribute, even when empty); and so is
            ``operator_reshape_onednn_fuse_pass``, which folds a reshape into
            the op before it and mistypes the result when the input has
            dynamic sizes (the point head's rows, "The type tensor<-1x256xf32>
            of outputs[0][0] must be equal to type tensor<-1x-1x1x256xf32>").
            The other fusion passes (convolution + batch norm + activation,
            ...) still apply. Default: False.
        cpu_threads (int, optional): CPU only.
            ``set_cpu_math_library_num_threads``. Default: Paddle's.
        device_id (int, optional): GPU id (>= 0). Default: 0.
        gpu_mem_mb (int, optional): ``memory_pool_init_size_mb`` of
            ``enable_use_gpu``: the initial GPU memory pool in MB (> 0).
            Default: 256.
        precision (str, optional): 'fp32' or 'fp16' (:data:`PRECISIONS`).
            Without TensorRT, fp16 is ``enable_use_gpu(..., precision_mode=
            PrecisionType.Half)``, which the docs give for GPU fp16 computation
            (Paddle's mixed-precision pass; float32 inputs and outputs, as
            ``enable_low_precision_io`` is left off). With TensorRT it is the
            ``precision_mode`` of ``enable_tensorrt_engine`` (the TensorRT
            subgraphs run fp16) and ``enable_use_gpu`` keeps Float32 for the
            ops outside them, as the docs' TensorRT FP16 example does. fp16
            needs ``use_gpu``; 'int8' is refused (Paddle-TensorRT int8 needs
            a calibration run, ``use_calib_mode``, or a quantised model).
            Default: 'fp32'.
        use_trt (bool, optional): Paddle-TensorRT subgraphs; needs
            ``use_gpu`` and a ``paddle_legacy`` export: the docs say
            ``enable_tensorrt_engine`` applies to ``.pdmodel`` programs only
            (a new-IR ``model.json`` goes through ``paddle.tensorrt.convert``
            instead). Calls ``enable_tensorrt_engine(workspace_size=
            trt_workspace_mb << 20, max_batch_size=<the largest N>,
            min_subgraph_size=trt_min_subgraph_size, precision_mode=...,
            use_static=trt_use_static, use_calib_mode=False)`` after
            ``enable_use_gpu`` (the docs: TensorRT takes effect only once the
            GPU is enabled). ``use_calib_mode`` (int8 calibration) is passed
            explicitly: the Paddle-TensorRT guide gives False as its default,
            but paddle 3.3.1's binding defaults to True. A paddle built
            without TensorRT raises (PreconditionNotMet), turned into a
            one-line RuntimeError here.
            Default: False.
        trt_min_subgraph_size (int, optional): Paddle-TensorRT runs a
            subgraph only when it has more nodes than this (>= 1). Default: 3.
        trt_workspace_mb (int, optional): TensorRT's workspace in MB (> 0),
            passed in bytes as ``workspace_size``. Default: 1024 (the docs'
            ``1 << 30``).
        trt_dynamic_shape (dict, optional): The range of the input's sizes,
            ``{'min': [N, C, H, W], 'opt': [...], 'max': [...]}`` with
            ``min <= opt <= max`` (TensorRT tunes its kernels for ``opt`` and
            accepts any shape in the range) and the sizes deploy.yaml's
            ``input_shape`` fixes kept; optionally ``'name'``, the input's
            name (by default read from ``model.pdmodel``: 'x' for
            :func:`export`'s programs). Passed as ``set_trt_dynamic_shape_info
            (min_input_shape={name: min}, max_input_shape={name: max},
            optim_input_shape={name: opt})`` (the documented order is min,
            max, opt; the keywords leave no doubt). Required with
            ``use_trt`` unless deploy.yaml's ``input_shape`` is fully static
            (an export's H and W are dynamic by default), in which case no
            dynamic shape is set and ``max_batch_size`` is its N.
            Default: None.
        trt_use_static (bool, optional): ``use_static``: serialise the
            TensorRT engines on the first run and load them on the next ones.
            Default: False.
        trt_cache_dir (str, optional): ``set_optim_cache_dir``: where those
            engines go. Default: Paddle's (``_opt_cache`` in the model folder).

    A ``paddle_legacy`` program also gets ``enable_memory_optim()`` (the
    buffers of intermediate results reused, as PaddleSeg's deploy script
    does): without it Paddle Inference keeps every intermediate result, a
    peak of 12 GB for ResNet101_vd at 512x1024 without oneDNN (BENCHMARKS.md).
    A ``paddle`` (new-IR) program cannot have it on Paddle 3.3.1 (see the
    module's doc).

    The TensorRT arguments other than the sizes need ``use_trt``. Bad values
    raise a one-line ValueError naming the argument.

    Returns:
        paddle.inference.Config
    """
    from paddle import inference
    deploy = load_deploy(model_dir)
    fmt = deploy_format(deploy)
    if fmt == 'onnx':
        raise ValueError('{} holds an ONNX model; use load_engine() or ONNX '
                         'Runtime'.format(model_dir))
    device_id = _int_arg('device_id', device_id, 0)
    gpu_mem_mb = _int_arg('gpu_mem_mb', gpu_mem_mb, 1)
    trt_min_subgraph_size = _int_arg('trt_min_subgraph_size', trt_min_subgraph_size, 1)
    trt_workspace_mb = _int_arg('trt_workspace_mb', trt_workspace_mb, 1)
    if precision == 'int8':
        raise ValueError("precision 'int8' is not supported (Paddle-TensorRT int8 "
                         "needs a calibration run or a quantised model): use 'fp32' "
                         "or 'fp16'")
    if precision not in PRECISIONS:
        raise ValueError('precision must be one of {}, got {!r}'.format(PRECISIONS, precision))
    if precision == 'fp16' and not use_gpu:
        raise ValueError("precision 'fp16' needs use_gpu=True (on the CPU the "
                         "exported model runs in fp32)")
    if use_trt and not use_gpu:
        raise ValueError('use_trt (TensorRT) needs use_gpu=True')
    if not use_trt:
        for name, value, default in (('trt_dynamic_shape', trt_dynamic_shape, None),
                                     ('trt_use_static', trt_use_static, False),
                                     ('trt_cache_dir', trt_cache_dir, None)):
            if value is not default and value != default:
                raise ValueError('{} is a TensorRT setting: it needs use_trt=True'
                                 .format(name))
    shape_range = None
    if use_trt:
        if fmt != 'paddle_legacy':
            raise ValueError("use_trt needs a paddle_legacy export (model.pdmodel): "
                             "Paddle Inference's enable_tensorrt_engine applies to "
                             ".pdmodel programs only, {} is format {} (Paddle "
                             "documents paddle.tensorrt.convert for those)"
                             .format(model_dir, fmt))
        input_shape = [int(v) for v in deploy.get('input_shape') or (-1, 3, -1, -1)]
        if trt_dynamic_shape is not None:
            shape_range = _trt_shape_range(trt_dynamic_shape, input_shape,
                                           program_input_name(model_dir, deploy))
        elif -1 in input_shape:
            raise ValueError("use_trt: the exported input {} has dynamic sizes (-1); "
                             "pass trt_dynamic_shape={{'min': [N, C, H, W], 'opt': "
                             "[...], 'max': [...]}} or export with a fixed "
                             "--input_shape".format(input_shape))
        max_batch_size = shape_range[1]['max'][0] if shape_range else input_shape[0]
    config = inference.Config(os.path.join(model_dir, deploy['model']),
                              os.path.join(model_dir, deploy['params']))
    half = inference.PrecisionType.Half
    fp32 = inference.PrecisionType.Float32
    if use_gpu:
        config.enable_use_gpu(
            memory_pool_init_size_mb=gpu_mem_mb, device_id=device_id,
            precision_mode=half if precision == 'fp16' and not use_trt else fp32)
        if use_trt:
            try:
                config.enable_tensorrt_engine(
                    workspace_size=trt_workspace_mb << 20, max_batch_size=max_batch_size,
                    min_subgraph_size=trt_min_subgraph_size,
                    precision_mode=half if precision == 'fp16' else fp32,
                    use_static=bool(trt_use_static), use_calib_mode=False)
            except RuntimeError as exc:  # e.g. a paddle built without TensorRT
                lines = str(exc).strip().splitlines()
                raise RuntimeError('use_trt: {} (paddle {})'.format(
                    lines[0] if lines else type(exc).__name__,
                    paddle.__version__)) from None
            if shape_range:
                name, shapes = shape_range
                config.set_trt_dynamic_shape_info(
                    min_input_shape={name: shapes['min']},
                    max_input_shape={name: shapes['max']},
                    optim_input_shape={name: shapes['opt']})
            if trt_cache_dir:
                config.set_optim_cache_dir(str(trt_cache_dir))
    else:
        config.disable_gpu()
        if cpu_threads:
            config.set_cpu_math_library_num_threads(int(cpu_threads))
        if use_onednn:
            config.enable_mkldnn()
            if fmt == 'paddle':
                config.delete_pass('onednn_placement_pass')
                config.delete_pass('operator_reshape_onednn_fuse_pass')
        else:
            config.disable_mkldnn()
    if fmt == 'paddle_legacy':
        config.enable_memory_optim()
    config.disable_glog_info()
    return config


def create_predictor(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None,
                     **options):
    """A ``paddle.inference`` predictor of an exported model (either Paddle
    format): ``paddle.inference.create_predictor(build_config(...))``.

    Args:
        model_dir (str): The folder :func:`export` wrote.
        use_gpu, use_onednn, cpu_threads: See :func:`build_config`.
        **options: The keyword-only arguments of :func:`build_config`:
            ``device_id``, ``gpu_mem_mb``, ``precision`` ('fp32'/'fp16'),
            ``use_trt``, ``trt_min_subgraph_size``, ``trt_workspace_mb``,
            ``trt_dynamic_shape`` (``{'min': [N, C, H, W], 'opt': [...],
            'max': [...]}``, required by TensorRT for a dynamic export),
            ``trt_use_static``, ``trt_cache_dir``.

    Returns:
        paddle.inference.Predictor
    """
    from paddle import inference
    return inference.create_predictor(
        build_config(model_dir, use_gpu, use_onednn, cpu_threads, **options))


def run_predictor(predictor, images):
    """Run ``predictor`` on ``images`` (``float32 [N, 3, H, W]`` numpy,
    normalised as ``deploy.yaml``'s transforms do); returns the output."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(images.shape))
    handle.copy_from_cpu(np.ascontiguousarray(images, dtype='float32'))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def create_onnx_session(model_dir, cpu_threads=None):
    """An ONNX Runtime CPU session of an ``--format onnx`` export."""
    ort = _import_or_explain('onnxruntime', 'running an ONNX model')
    deploy = load_deploy(model_dir)
    options = ort.SessionOptions()
    if cpu_threads:
        options.intra_op_num_threads = int(cpu_threads)
    options.log_severity_level = 3
    return ort.InferenceSession(os.path.join(model_dir, deploy['model']),
                                sess_options=options,
                                providers=['CPUExecutionProvider'])


def load_engine(model_dir, engine='auto', use_gpu=False, use_onednn=False,
                cpu_threads=None, **predictor_options):
    """A callable that runs an exported model.

    Args:
        model_dir (str): The folder :func:`export` wrote.
        engine (str, optional): 'inference' (Paddle Inference), 'onnx'
            (ONNX Runtime) or 'auto' (ONNX Runtime for an ONNX export,
            Paddle Inference otherwise). Default: 'auto'.
        use_gpu, use_onednn, cpu_threads: Of Paddle Inference (see
            :func:`build_config`); ``cpu_threads`` also of ONNX Runtime.
        **predictor_options: The keyword-only arguments of
            :func:`build_config` (GPU precision, TensorRT, ...), for the
            'inference' engine only (ValueError with 'onnx').

    Returns:
        callable: ``images`` (``float32 [N, 3, H, W]`` numpy, normalised as
        ``deploy.yaml``'s transforms say) -> numpy output of the exported
        program: the ``int32 [N, H, W]`` class map (output_op argmax), or
        ``float32 [N, C, H, W]`` probabilities or logits. The callable has
        ``engine``, ``output_op`` and ``deploy`` attributes.
    """
    deploy = load_deploy(model_dir)
    fmt = deploy_format(deploy)
    if engine == 'auto':
        engine = 'onnx' if fmt == 'onnx' else 'inference'
    if engine not in ('inference', 'onnx'):
        raise ValueError("engine must be 'auto', 'inference' or 'onnx', got "
                         "{!r}".format(engine))
    if (engine == 'onnx') != (fmt == 'onnx'):
        raise ValueError('{} holds a {} model, which engine {!r} cannot run'
                         .format(model_dir, fmt, engine))
    if engine == 'onnx':
        if predictor_options:
            raise ValueError('engine onnx (ONNX Runtime on the CPU) takes no Paddle '
                             'Inference options, got {}'.format(sorted(predictor_options)))
        session = create_onnx_session(model_dir, cpu_threads)
        input_name = session.get_inputs()[0].name
        output_name = session.get_outputs()[0].name

        def run(images):
            images = np.ascontiguousarray(images, dtype='float32')
            return session.run([output_name], {input_name: images})[0]
    else:
        predictor = create_predictor(model_dir, use_gpu, use_onednn, cpu_threads,
                                     **predictor_options)

        def run(images):
            return run_predictor(predictor, images)
    run.engine = engine
    run.output_op = deploy.get('output_op', 'argmax')
    run.deploy = deploy
    return run
