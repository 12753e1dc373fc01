"""Paddle Inference: the ``Config`` and predictor of an export.

Owns :func:`build_config` (CPU threads and oneDNN, GPU device, memory pool
and fp16, TensorRT subgraphs with their dynamic shape range, checked
against the export: its format, its input shape and its input's name),
:func:`create_predictor` and :func:`run_predictor`. The options themselves
are checked by :class:`~paddleseg.deploy.options.DeployOptions`.
"""

import os

import numpy as np
import paddle

from paddleseg.deploy.deploy_file import (EXPORT_INPUT_NAME, deploy_format, load_deploy,
                                          program_input_name)
from paddleseg.deploy.options import DeployOptions
from paddleseg.errors import DeployError


def build_config(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None,
                 **options):
    """The ``paddle.inference.Config`` of an exported model (either Paddle
    format), without a predictor (:func:`create_predictor` makes one).

    Every call below is of Paddle Inference's documented Python API
    (the Paddle Inference docs' ``Config`` pages on CPU and GPU prediction,
    with the signatures of the installed paddle 3.3.1's
    ``paddle.inference.Config``).

    Args:
        model_dir (str): The folder :func:`~paddleseg.deploy.export` wrote.
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
        precision (str, optional): 'fp32' or 'fp16' (:data:`~paddleseg.deploy.PRECISIONS`).
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
    peak of 12 GB for ResNet101_vd at 512x1024 without oneDNN (benchmarks/BENCHMARKS.md).
    A ``paddle`` (new-IR) program cannot have it on Paddle 3.3.1 (see the
    module's doc).

    The arguments are checked as :class:`~paddleseg.deploy.DeployOptions`
    (``use_gpu`` and ``device_id`` make its ``device``); the TensorRT
    arguments other than the sizes need ``use_trt``. Bad values raise a
    one-line :class:`~paddleseg.errors.DeployError` (a ValueError) naming
    the argument.

    Returns:
        paddle.inference.Config
    """
    from paddle import inference
    deploy = load_deploy(model_dir)
    fmt = deploy_format(deploy)
    if fmt == 'onnx':
        raise DeployError('{} holds an ONNX model; use load_engine() or ONNX '
                          'Runtime'.format(model_dir))
    opts = DeployOptions.from_predictor_args('inference', use_gpu, use_onednn,
                                             cpu_threads, **options)
    trt = _trt_settings(model_dir, deploy, fmt, opts) if opts.use_trt else None
    config = inference.Config(os.path.join(model_dir, deploy['model']),
                              os.path.join(model_dir, deploy['params']))
    if opts.use_gpu:
        _set_gpu(config, opts, trt)
    else:
        _set_cpu(config, opts, fmt)
    if fmt == 'paddle_legacy':
        config.enable_memory_optim()
    config.disable_glog_info()
    return config


def _trt_settings(model_dir, deploy, fmt, opts):
    """``(max_batch_size, (input name, {'min', 'opt', 'max'}) or None)`` of
    TensorRT for this export; one-line DeployError when it cannot have it."""
    if fmt != 'paddle_legacy':
        raise DeployError("use_trt needs a paddle_legacy export (model.pdmodel): "
                          "Paddle Inference's enable_tensorrt_engine applies to "
                          ".pdmodel programs only, {} is format {} (Paddle "
                          "documents paddle.tensorrt.convert for those)"
                          .format(model_dir, fmt))
    input_shape = [int(v) for v in deploy.get('input_shape') or (-1, 3, -1, -1)]
    if opts.trt_dynamic_shape is not None:
        shape_range = _trt_shape_range(opts.trt_dynamic_shape, input_shape,
                                       program_input_name(model_dir, deploy))
        return shape_range[1]['max'][0], shape_range
    if -1 in input_shape:
        raise DeployError("use_trt: the exported input {} has dynamic sizes (-1); "
                          "pass trt_dynamic_shape={{'min': [N, C, H, W], 'opt': "
                          "[...], 'max': [...]}} or export with a fixed "
                          "--input_shape".format(input_shape))
    return input_shape[0], None


def _trt_shape_range(spec, input_shape, input_name):
    """``(name, {'min': [...], 'opt': [...], 'max': [...]})`` of a checked
    ``trt_dynamic_shape`` mapping (:class:`DeployOptions`), against the
    exported ``input_shape`` (``N C H W``, -1 = dynamic: the fixed sizes
    kept) and the program's input name (None when unknown: the mapping's
    ``name``, else :data:`EXPORT_INPUT_NAME`)."""
    shapes = {key: spec[key] for key in ('min', 'opt', 'max')}
    for i, axis in enumerate('NCHW'):
        low, opt, high = shapes['min'][i], shapes['opt'][i], shapes['max'][i]
        if input_shape[i] != -1 and (low, opt, high) != (input_shape[i],) * 3:
            raise DeployError('trt_dynamic_shape: {} is fixed at {} in the exported '
                              'input {} (deploy.yaml input_shape), got min {}, opt {}, '
                              'max {}'.format(axis, input_shape[i], input_shape,
                                              low, opt, high))
    name = spec.get('name')
    if name is None:
        name = input_name or EXPORT_INPUT_NAME
    elif input_name is not None and name != input_name:
        raise DeployError("trt_dynamic_shape['name'] is {!r}, but the program's input "
                          "is {!r}".format(name, input_name))
    return name, shapes


def _set_gpu(config, opts, trt):
    """``enable_use_gpu`` and, with ``trt`` (:func:`_trt_settings`), TensorRT."""
    from paddle import inference
    half = inference.PrecisionType.Half
    fp32 = inference.PrecisionType.Float32
    fp16 = opts.precision == 'fp16'
    config.enable_use_gpu(
        memory_pool_init_size_mb=opts.gpu_mem_mb, device_id=opts.device_id,
        precision_mode=half if fp16 and not opts.use_trt else fp32)
    if not opts.use_trt:
        return
    max_batch_size, shape_range = trt
    try:
        config.enable_tensorrt_engine(
            workspace_size=opts.trt_workspace_mb << 20, max_batch_size=max_batch_size,
            min_subgraph_size=opts.trt_min_subgraph_size,
            precision_mode=half if fp16 else fp32,
            use_static=opts.trt_use_static, use_calib_mode=False)
    except RuntimeError as exc:  # e.g. a paddle built without TensorRT
        lines = str(exc).strip().splitlines()
        raise RuntimeError('use_trt: {} (paddle {})'.format(
            lines[0] if lines else type(exc).__name__, paddle.__version__)) from None
    if shape_range:
        name, shapes = shape_range
        config.set_trt_dynamic_shape_info(
            min_input_shape={name: shapes['min']},
            max_input_shape={name: shapes['max']},
            optim_input_shape={name: shapes['opt']})
    if opts.trt_cache_dir:
        config.set_optim_cache_dir(str(opts.trt_cache_dir))


def _set_cpu(config, opts, fmt):
    """``disable_gpu``, the CPU threads and oneDNN (see :func:`build_config`)."""
    config.disable_gpu()
    if opts.cpu_threads:
        config.set_cpu_math_library_num_threads(opts.cpu_threads)
    if opts.use_onednn:
        config.enable_mkldnn()
        if fmt == 'paddle':
            config.delete_pass('onednn_placement_pass')
            config.delete_pass('operator_reshape_onednn_fuse_pass')
    else:
        config.disable_mkldnn()


def create_predictor(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None,
                     **options):
    """A ``paddle.inference`` predictor of an exported model (either Paddle
    format): ``paddle.inference.create_predictor(build_config(...))``.

    Args:
        model_dir (str): The folder :func:`~paddleseg.deploy.export` wrote.
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
