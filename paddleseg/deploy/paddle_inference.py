"""Paddle Inference: the ``Config`` and predictor of an export.

Owns :func:`build_config` (CPU threads and oneDNN, GPU device, memory pool
and precision, TensorRT subgraphs with their shape ranges, checked against
the export: its format, its input shape and its input's name; the TensorRT
settings of an export and the passes run first are
:mod:`paddleseg.deploy.tensorrt`'s),
:func:`create_predictor` and :func:`run_predictor`. The options themselves
are checked by :class:`~paddleseg.deploy.options.DeployOptions`.
"""

import os

import numpy as np
import paddle

from paddleseg.deploy.deploy_file import deploy_format, load_deploy, program_input_name
from paddleseg.deploy.options import DeployOptions
from paddleseg.deploy.tensorrt import (calibration_tables, check_shape_file,
                                       collect_shape_ranges, precision_type, trt_precision,
                                       trt_settings)
from paddleseg.errors import DeployError
from paddleseg.utils import logger


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
        precision (str, optional): One of :data:`~paddleseg.deploy.PRECISIONS`,
            as :data:`~paddleseg.deploy.options.GPU_PRECISIONS` allows.
            Without TensorRT it is ``enable_use_gpu``'s ``precision_mode``:
            fp16 ``PrecisionType.Half`` and bf16 ``PrecisionType.Bfloat16``,
            which the docs give for GPU mixed-precision inference (float32
            inputs and outputs, as ``enable_low_precision_io`` is left off).
            With TensorRT it is the ``precision_mode`` of
            ``enable_tensorrt_engine`` (Half or Int8: the TensorRT subgraphs
            run in it) and ``enable_use_gpu`` keeps Float32 for the ops
            outside them, as the docs' TensorRT FP16 example does; int8 sets
            ``use_calib_mode=True``: the engines are built from the
            calibration tables of
            :func:`~paddleseg.deploy.tensorrt.calibrate_int8`. With
            ``use_trt``, 'fp32' on an export calibrated by ``export.py
            --format paddle_legacy --quantize int8`` (deploy.yaml
            ``precision: int8``) is int8
            (:func:`~paddleseg.deploy.tensorrt.trt_precision`). Anything but
            fp32 needs ``use_gpu``. Default: 'fp32'.
        use_trt (bool, optional): Paddle-TensorRT subgraphs; needs
            ``use_gpu`` and a ``paddle_legacy`` export: the docs say
            ``enable_tensorrt_engine`` applies to ``.pdmodel`` programs only
            (a new-IR ``model.json`` goes through ``paddle.tensorrt.convert``
            instead). Calls ``enable_tensorrt_engine(workspace_size=
            trt_workspace_mb << 20, max_batch_size=<the largest N>,
            min_subgraph_size=trt_min_subgraph_size, precision_mode=...,
            use_static=trt_use_static, use_calib_mode=<int8>)`` after
            ``enable_use_gpu`` (the docs: TensorRT takes effect only once the
            GPU is enabled), then the shape ranges (``trt_dynamic_shape``,
            ``trt_shape_file``) and ``set_optim_cache_dir``.
            ``use_calib_mode`` is passed explicitly: the Paddle-TensorRT
            guide gives False as its default, but paddle 3.3.1's binding
            defaults to True. A paddle built without TensorRT raises
            (PreconditionNotMet), turned into a one-line RuntimeError here.
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
            max, opt; the keywords leave no doubt). A fixed-size export
            (deploy.yaml's ``input_shape`` without -1) gets ``min = opt =
            max`` = its shape when this is not given: Paddle-TensorRT's
            static mode (no dynamic shape) cannot run the point head
            (:mod:`paddleseg.deploy.tensorrt`). A dynamic export needs it, or
            ``trt_shape_file``. Default: None.
        trt_use_static (bool, optional): ``use_static``: serialise the
            TensorRT engines on the first run and load them on the next ones.
            Default: False.
        trt_cache_dir (str, optional): ``set_optim_cache_dir``: where those
            engines and the int8 calibration tables go. Default: ``_opt_cache``
            in the model folder (Paddle's default, passed explicitly).
        trt_auto_tune (bool, optional): The shape ranges of every tensor
            from a tuning run (:func:`create_predictor` runs
            :func:`~paddleseg.deploy.tensorrt.collect_shape_ranges` first, on
            the min, opt and max shapes of ``trt_dynamic_shape`` or the fixed
            shape), used through ``enable_tuned_tensorrt_dynamic_shape(
            shape_range_info_path, allow_build_at_runtime=True)`` (a shape
            outside the ranges rebuilds the engine at run time instead of
            failing) instead of ``set_trt_dynamic_shape_info``: the answer to
            "some trt inputs dynamic shape info not set" (see
            :mod:`paddleseg.deploy.tensorrt`). Default: False.
        trt_shape_file (str, optional): The shape-range file (``trt_auto_tune``
            writes it; without it, an existing one is used the same way; it
            must hold the input's range). Default: ``shape_range_info.pbtxt``
            in ``trt_cache_dir``, else in the model folder.

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
    opts = _export_options(deploy, use_gpu, use_onednn, cpu_threads, options)
    trt = trt_settings(model_dir, deploy, fmt, opts) if opts.use_trt else None
    if trt is not None and trt.shape_file:
        check_shape_file(trt.shape_file, program_input_name(model_dir, deploy))
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


def _set_gpu(config, opts, trt):
    """``enable_use_gpu`` and, with ``trt`` (:class:`~paddleseg.deploy.tensorrt.TrtSettings`),
    TensorRT; the precisions as :data:`~paddleseg.deploy.options.GPU_PRECISIONS`."""
    config.enable_use_gpu(
        memory_pool_init_size_mb=opts.gpu_mem_mb, device_id=opts.device_id,
        precision_mode=precision_type('fp32' if opts.use_trt else opts.precision))
    if not opts.use_trt:
        return
    try:
        config.enable_tensorrt_engine(
            workspace_size=opts.trt_workspace_mb << 20, max_batch_size=trt.max_batch_size,
            min_subgraph_size=opts.trt_min_subgraph_size,
            precision_mode=precision_type(opts.precision),
            use_static=opts.trt_use_static, use_calib_mode=opts.precision == 'int8')
    except RuntimeError as exc:  # e.g. a paddle built without TensorRT
        lines = str(exc).strip().splitlines()
        raise RuntimeError('use_trt: {} (paddle {})'.format(
            lines[0] if lines else type(exc).__name__, paddle.__version__)) from None
    if trt.shape_file:
        config.enable_tuned_tensorrt_dynamic_shape(shape_range_info_path=trt.shape_file,
                                                   allow_build_at_runtime=True)
    else:
        name, shapes = trt.shape_range
        config.set_trt_dynamic_shape_info(
            min_input_shape={name: shapes['min']},
            max_input_shape={name: shapes['max']},
            optim_input_shape={name: shapes['opt']})
    os.makedirs(trt.cache_dir, exist_ok=True)  # Paddle makes one level only
    config.set_optim_cache_dir(trt.cache_dir)


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
    format): ``paddle.inference.create_predictor(build_config(...))``, after
    the TensorRT passes its options ask for.

    With ``use_trt`` and ``trt_auto_tune``, the shape ranges are collected
    first (:func:`~paddleseg.deploy.tensorrt.collect_shape_ranges`: the
    export run on the tuning shapes, the file written beside it). int8
    TensorRT (asked for, or the default of an export calibrated by
    ``export.py --quantize int8``, whose shape ranges it also uses) needs
    the calibration tables of
    :func:`~paddleseg.deploy.tensorrt.calibrate_int8` in the cache folder:
    without them Paddle would run its calibration mode (no TensorRT engine),
    so this raises instead. Paddle's "some trt inputs dynamic shape info not
    set" (a TensorRT subgraph input without a range) becomes one DeployError
    line that names ``trt_auto_tune``.

    Args:
        model_dir (str): The folder :func:`~paddleseg.deploy.export` wrote.
        use_gpu, use_onednn, cpu_threads: See :func:`build_config`.
        **options: The keyword-only arguments of :func:`build_config`:
            ``device_id``, ``gpu_mem_mb``, ``precision``, ``use_trt``,
            ``trt_min_subgraph_size``, ``trt_workspace_mb``,
            ``trt_dynamic_shape`` (``{'min': [N, C, H, W], 'opt': [...],
            'max': [...]}``), ``trt_use_static``, ``trt_cache_dir``,
            ``trt_auto_tune``, ``trt_shape_file``.

    Returns:
        paddle.inference.Predictor
    """
    from paddle import inference
    deploy = load_deploy(model_dir)
    opts = _export_options(deploy, use_gpu, use_onednn, cpu_threads, options)
    if deploy.get('precision') == 'int8' and deploy_format(deploy) == 'paddle_legacy':
        logger.info('{}: calibrated for TensorRT int8; {}'.format(
            model_dir, 'TensorRT runs {}'.format(opts.precision) if opts.use_trt else
            'without use_trt (--use_trt) the float program runs'))
    if opts.use_trt:
        if opts.trt_auto_tune:
            collect_shape_ranges(model_dir, deploy, opts)
        trt = trt_settings(model_dir, deploy, deploy_format(deploy), opts)
        if opts.precision == 'int8' and not calibration_tables(trt.cache_dir):
            raise DeployError('int8 TensorRT: no calibration table in {}: export with '
                              'export.py --format paddle_legacy --quantize int8, or run '
                              'paddleseg.deploy.tensorrt.calibrate_int8 on representative '
                              'images first'.format(trt.cache_dir))
    config = build_config(model_dir, use_gpu, use_onednn, cpu_threads, **options)
    try:
        return inference.create_predictor(config)
    except (ValueError, RuntimeError) as exc:
        if 'dynamic shape info not set' not in str(exc):
            raise
        raise DeployError('TensorRT: some TensorRT subgraph inputs have no shape range '
                          '(ops left out of TensorRT, e.g. the point head\'s, split the '
                          'program): pass trt_auto_tune=True (--auto_tune) to collect '
                          'them') from None


def _export_options(deploy, use_gpu, use_onednn, cpu_threads, options):
    """The :class:`DeployOptions` of the arguments for this export: with
    TensorRT, the precision of :func:`~paddleseg.deploy.tensorrt.trt_precision`
    (int8 for an export calibrated by ``export.py --quantize int8``), also
    set in ``options`` (a dict, changed in place)."""
    opts = DeployOptions.from_predictor_args('inference', use_gpu, use_onednn,
                                             cpu_threads, **options)
    precision = trt_precision(deploy, opts.precision) if opts.use_trt else opts.precision
    if precision != opts.precision:
        options['precision'] = precision
        opts = DeployOptions.from_predictor_args('inference', use_gpu, use_onednn,
                                                 cpu_threads, **options)
    return opts


def run_predictor(predictor, images):
    """Run ``predictor`` on ``images`` (``float32 [N, 3, H, W]`` numpy,
    normalised as ``deploy.yaml``'s transforms do); returns the output."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(images.shape))
    handle.copy_from_cpu(np.ascontiguousarray(images, dtype='float32'))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
