"""Paddle-TensorRT: what a TensorRT predictor of an export needs first.

Owns the TensorRT settings of an export (:func:`trt_settings`: the batch
size, the input's shape range, the shape-range file), the two passes run
before a TensorRT predictor is built (:func:`collect_shape_ranges`, the
``trt_auto_tune`` pass, and :func:`calibrate_int8`, the int8 calibration
pass), reading a shape-range file (:func:`read_shape_ranges`) and the
precision names of Paddle Inference (:func:`precision_type`); and the int8
calibration of ``export.py --format paddle_legacy --quantize int8``
(:func:`calibrate_export`, its batches :func:`fixed_shape_batches`, what
this paddle lacks for it :func:`tensorrt_missing`) with what a later
TensorRT predictor takes from it (:func:`trt_precision`,
:func:`calibrated_shape_file`).
:mod:`paddleseg.deploy.paddle_inference` makes the ``Config`` calls.

Why the shape ranges of every tensor, not only of the input ``x``: in its
dynamic-shape mode Paddle-TensorRT needs a ``min``/``opt``/``max`` shape for
every input of every TensorRT subgraph ("some trt inputs dynamic shape info
not set" otherwise). The point head's ops that TensorRT does not take (top_k
with a tensor ``k``, put_along_axis, int64 index arithmetic, interpolations
sized at run time) cut the program into several subgraphs whose inputs are
intermediate tensors; only a run of the export can tell their shapes.
Paddle Inference's documented answer is a first run with
``Config.collect_shape_range_info(file)`` on representative inputs, then
``Config.enable_tuned_tensorrt_dynamic_shape(file, allow_build_at_runtime)``
(PaddleSeg's deploy script: ``--enable_auto_tune``). Keeping those ops out
of TensorRT (``exp_disable_tensorrt_ops``) cannot replace it: each op kept
out starts another subgraph with an intermediate input, whose range is
still unknown.

A fixed-size export gets ``min = opt = max`` for ``x`` in every case: without
a dynamic shape Paddle-TensorRT falls back to its static implicit-batch mode,
which the point head's ``[N*P, C]`` rows break and TensorRT 10 no longer has.
"""

import collections
import glob
import os
import re

import numpy as np

from paddleseg.deploy.deploy_file import (EXPORT_INPUT_NAME, deploy_format, load_deploy,
                                          program_input_name)
from paddleseg.deploy.options import DeployOptions
from paddleseg.errors import DeployError
from paddleseg.utils.dist import device_count

SHAPE_FILE = 'shape_range_info.pbtxt'
"""The shape-range file's name in ``trt_cache_dir`` (else the export's folder)."""

CALIB_PREFIX = 'trt_calib_'
"""Paddle-TensorRT's name prefix of an int8 calibration table in the cache dir."""

ENGINE_PREFIX = 'trt_serialized_'
"""Paddle-TensorRT's name prefix of a serialised engine (``trt_use_static``)."""

DEFAULT_CACHE = '_opt_cache'
"""Paddle's cache folder in the export's folder when ``trt_cache_dir`` is not set."""

CALIBRATION_METHOD = 'EntropyCalibration2'
"""TensorRT's calibrator behind Paddle-TensorRT's calibration mode
(``IInt8EntropyCalibrator2``), for ``deploy.yaml``."""

TrtSettings = collections.namedtuple(
    'TrtSettings', 'max_batch_size shape_range shape_file cache_dir')
TrtSettings.__doc__ = """The TensorRT settings of an export (:func:`trt_settings`).

``max_batch_size`` (int): the largest N; ``shape_range``: ``(input name,
{'min', 'opt', 'max'})`` for ``set_trt_dynamic_shape_info``, or None when
the ranges come from ``shape_file`` (the tuned mode); ``shape_file`` (str or
None); ``cache_dir`` (str): where the engines and calibration tables go."""


def precision_type(precision):
    """``paddle.inference.PrecisionType`` of 'fp32', 'fp16', 'bf16' or 'int8'."""
    from paddle import inference
    names = {'fp32': 'Float32', 'fp16': 'Half', 'bf16': 'Bfloat16', 'int8': 'Int8'}
    return getattr(inference.PrecisionType, names[precision])


def shape_file_of(model_dir, opts):
    """Where the shape ranges of ``opts`` (:class:`DeployOptions`) are:
    ``trt_shape_file``, else :data:`SHAPE_FILE` in ``trt_cache_dir`` or the
    export's folder."""
    if opts.trt_shape_file:
        return str(opts.trt_shape_file)
    return os.path.join(str(opts.trt_cache_dir or model_dir), SHAPE_FILE)


def cache_dir_of(model_dir, opts):
    """The TensorRT cache folder: ``trt_cache_dir`` or Paddle's default."""
    return str(opts.trt_cache_dir or os.path.join(str(model_dir), DEFAULT_CACHE))


def trt_settings(model_dir, deploy, fmt, opts):
    """The :class:`TrtSettings` of an export; one-line DeployError when it
    cannot have TensorRT (format, sizes, shape-range file)."""
    if fmt != 'paddle_legacy':
        raise DeployError("use_trt needs a paddle_legacy export (model.pdmodel): "
                          "Paddle Inference's enable_tensorrt_engine applies to "
                          ".pdmodel programs only, {} is format {} (Paddle "
                          "documents paddle.tensorrt.convert for those)"
                          .format(model_dir, fmt))
    input_shape = [int(v) for v in deploy.get('input_shape') or (-1, 3, -1, -1)]
    input_name = program_input_name(model_dir, deploy)
    tuned = opts.trt_auto_tune or opts.trt_shape_file is not None
    shape_file = shape_file_of(model_dir, opts) if tuned else None
    if not tuned and opts.trt_dynamic_shape is None:  # the ranges the calibration used
        shape_file = calibrated_shape_file(model_dir, deploy)
        tuned = shape_file is not None
    if opts.trt_dynamic_shape is not None:
        shape_range = trt_shape_range(opts.trt_dynamic_shape, input_shape, input_name)
    elif -1 not in input_shape:  # fixed: min = opt = max (see the module's doc)
        shape_range = (input_name or EXPORT_INPUT_NAME,
                       {key: list(input_shape) for key in ('min', 'opt', 'max')})
    elif not tuned:
        raise DeployError("use_trt: the exported input {} has dynamic sizes (-1); "
                          "pass trt_dynamic_shape={{'min': [N, C, H, W], 'opt': "
                          "[...], 'max': [...]}} with trt_auto_tune=True (--auto_tune), "
                          "or export with a fixed --input_shape".format(input_shape))
    elif opts.trt_auto_tune:
        raise DeployError("trt_auto_tune: the exported input {} has dynamic sizes (-1); "
                          "the tuning run needs trt_dynamic_shape={{'min': [N, C, H, W], "
                          "'opt': [...], 'max': [...]}} (--trt_dynamic_shape)"
                          .format(input_shape))
    else:
        shape_range = None
    if shape_range is None:  # the ranges of an existing file: its input's N
        max_batch_size = check_shape_file(shape_file, input_name)['max'][0]
    else:
        max_batch_size = shape_range[1]['max'][0]
    return TrtSettings(max_batch_size, shape_range, shape_file,
                       cache_dir_of(model_dir, opts))


def trt_shape_range(spec, input_shape, input_name):
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


def tuning_shapes(settings):
    """The input shapes the tuning run feeds: min and max of the input's
    range once, opt twice (Paddle takes, per size, the most frequent value
    seen as the tuned ``opt``: measured on paddle 3.3.1, one run each of
    min, opt and max gave max as opt)."""
    shapes = settings.shape_range[1]
    low, opt, high = shapes['min'], shapes['opt'], shapes['max']
    return [low, opt, opt, high] if low != high else [opt]


def tuning_batches(shapes, seed=0):
    """Standard-normal ``float32`` batches of ``shapes`` (the shapes of the
    intermediate tensors depend on the input's shape only)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype('float32') for shape in shapes]


def _run_and_release(config, batches):
    """Run a predictor of ``config`` on each batch, then release it (Paddle
    writes the shape ranges and calibration tables when the predictor goes)."""
    import gc

    from paddle import inference
    predictor = inference.create_predictor(config)
    name = predictor.get_input_names()[0]
    for batch in batches:
        handle = predictor.get_input_handle(name)
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype='float32'))
        predictor.run()
    del predictor, handle
    gc.collect()


def collect_shape_ranges(model_dir, deploy, opts, batches=None):
    """The ``trt_auto_tune`` pass: run the export on ``batches`` (default:
    :func:`tuning_batches` of :func:`tuning_shapes`) with Paddle Inference on
    the GPU of ``opts`` (fp32, no TensorRT) and
    ``Config.collect_shape_range_info``, which writes the shape range of
    every tensor; the file then replaces :func:`shape_file_of` in one step.

    Returns:
        dict: :func:`read_shape_ranges` of the file written.
    """
    from paddle import inference
    settings = trt_settings(model_dir, deploy, 'paddle_legacy', opts)
    if batches is None:
        batches = tuning_batches(tuning_shapes(settings))
    shape_file = shape_file_of(model_dir, opts)
    os.makedirs(os.path.dirname(os.path.abspath(shape_file)), exist_ok=True)
    # Paddle writes this process's own file; it replaces the shared one at
    # once (several ranks of one evaluation may tune the same export)
    written = '{}.{}.tmp'.format(shape_file, os.getpid())
    config = inference.Config(os.path.join(model_dir, deploy['model']),
                              os.path.join(model_dir, deploy['params']))
    config.enable_use_gpu(memory_pool_init_size_mb=opts.gpu_mem_mb,
                          device_id=opts.device_id,
                          precision_mode=precision_type('fp32'))
    config.disable_glog_info()
    config.collect_shape_range_info(written)
    _run_and_release(config, batches)
    os.replace(_existing(written), shape_file)
    return read_shape_ranges(_existing(shape_file))


def calibrate_int8(model_dir, batches, **options):
    """The int8 calibration pass of Paddle-TensorRT: build the int8 config
    (:func:`~paddleseg.deploy.build_config` with ``precision='int8'``,
    ``use_calib_mode=True``), run the export on ``batches`` (representative
    normalised images, ``float32 [N, 3, H, W]``: the calibration learns
    their value ranges, so random data will not do), and let Paddle write a
    calibration table per TensorRT subgraph (:data:`CALIB_PREFIX` files in
    the cache folder) when the predictor goes. A later
    :func:`~paddleseg.deploy.create_predictor` with the same options builds
    int8 engines from them. With ``trt_auto_tune`` the shape ranges are
    collected first, as :func:`~paddleseg.deploy.create_predictor` does.

    Returns:
        list: The calibration tables' paths.
    """
    from paddleseg.deploy import paddle_inference
    options.update(precision='int8', use_trt=True, use_gpu=True)
    opts = DeployOptions.from_predictor_args('inference', **options)
    if opts.trt_auto_tune:
        collect_shape_ranges(model_dir, load_deploy(model_dir), opts)
    config = paddle_inference.build_config(model_dir, **options)
    _run_and_release(config, (np.asarray(b, dtype='float32') for b in batches))
    cache = options.get('trt_cache_dir') or os.path.join(str(model_dir), DEFAULT_CACHE)
    return calibration_tables(cache)


def calibration_tables(cache_dir):
    """The int8 calibration tables in ``cache_dir``."""
    return sorted(glob.glob(os.path.join(str(cache_dir), CALIB_PREFIX + '*')))


def tensorrt_missing():
    """What this paddle lacks to build TensorRT engines here (one phrase:
    CUDA, a GPU, TensorRT at build or at run time), or None."""
    import paddle
    from paddle import inference
    name = 'paddle {}'.format(paddle.__version__)
    if not paddle.is_compiled_with_cuda():
        return '{} is a CPU-only build (no CUDA, no TensorRT)'.format(name)
    if tuple(inference.get_trt_compile_version()) == (0, 0, 0):
        return '{} is built without TensorRT'.format(name)
    if tuple(inference.get_trt_runtime_version()) == (0, 0, 0):
        return '{} is built with TensorRT but finds no TensorRT library at run time'.format(
            name)
    if device_count('gpu') == 0:
        return '{} sees no GPU'.format(name)
    return None


def fixed_shape_batches(batches, input_shape):
    """The ``float32 [1, 3, H, W]`` ``batches`` as inputs of the fixed
    ``input_shape`` (``[N, C, H, W]``, no -1): N images stacked a batch (a
    last incomplete batch left out), each checked against ``C, H, W``.
    TensorRT calibrates at one shape (at ``opt`` of a dynamic range), so
    the calibration images must have the size the export runs at. The
    first image is checked at once (before an export's work), the others
    as they come.

    Raises:
        DeployError: an image of another size (one line, naming
            ``--input_shape``), or fewer images than N.
    """
    n, want = int(input_shape[0]), [int(v) for v in input_shape[1:]]
    batches = iter(batches)

    def checked(image):
        image = np.asarray(image, dtype='float32')
        if list(image.shape[1:]) != want or image.shape[0] != 1:
            raise DeployError(
                '--quantize int8: a calibration image is {} after the export transforms, '
                'but TensorRT calibrates at the fixed input {} (--input_shape): export '
                'with the size the images have, or resize them in export.transforms'
                .format('x'.join(map(str, image.shape)), 'x'.join(map(str, input_shape))))
        return image
    first = next(batches, None)
    if first is None:
        raise DeployError('--quantize int8: no calibration image')
    first = checked(first)

    def stacked():
        group, made = [first], 0
        for image in batches:
            if len(group) == n:
                yield np.concatenate(group)
                group, made = [], made + 1
            group.append(checked(image))
        if len(group) == n:
            yield np.concatenate(group)
        elif not made:
            raise DeployError('--quantize int8: {} calibration image(s), fewer than the '
                              'batch size N={} of --input_shape'.format(len(group), n))
    return stacked()


def calibrate_export(model_dir, batches, device_id=0):
    """The int8 calibration of a ``paddle_legacy`` export (``export.py
    --quantize int8``): :func:`calibrate_int8` with ``trt_auto_tune`` (the
    point head splits the program: every subgraph input needs its range),
    in the export's default cache folder (:data:`DEFAULT_CACHE`) and with
    its shape-range file (:data:`SHAPE_FILE`) beside the model, on GPU
    ``device_id``.

    Args:
        model_dir (str): The export (its ``deploy.yaml`` written; fixed
            input shape).
        batches (iterable): ``float32 [N, 3, H, W]`` at the export's fixed
            shape (:func:`fixed_shape_batches`).

    Returns:
        dict: the calibration for ``deploy.yaml``: ``images`` (how many),
        ``method``, ``engine``, ``tables`` (how many), ``cache_dir`` and
        ``shape_file`` (relative to the export).

    Raises:
        DeployError: Paddle wrote no calibration table (no TensorRT subgraph).
    """
    count = [0]

    def counted():
        for batch in batches:
            count[0] += int(np.shape(batch)[0])
            yield batch
    tables = calibrate_int8(model_dir, counted(), trt_auto_tune=True, device_id=device_id)
    if not tables:
        raise DeployError('--quantize int8: Paddle-TensorRT wrote no calibration table in '
                          '{} (no TensorRT subgraph in the program?)'.format(
                              os.path.join(str(model_dir), DEFAULT_CACHE)))
    return {'images': count[0], 'method': CALIBRATION_METHOD, 'engine': 'paddle_tensorrt',
            'tables': len(tables), 'cache_dir': DEFAULT_CACHE, 'shape_file': SHAPE_FILE}


def calibrated_shape_file(model_dir, deploy):
    """The shape-range file the int8 calibration of the export ran with
    (``deploy.yaml``'s ``calibration.shape_file``, :func:`calibrate_export`),
    when it is there; else None. A TensorRT predictor given no shape range
    of its own uses it."""
    calibration = deploy.get('calibration') or {}
    name = calibration.get('shape_file') if isinstance(calibration, dict) else None
    path = os.path.join(str(model_dir), str(name)) if name else None
    return path if path and os.path.isfile(path) else None


def trt_precision(deploy, precision):
    """The TensorRT precision of an export asked for ``precision``: int8
    when fp32 (the default) is asked of a ``paddle_legacy`` export that
    ``deploy.yaml`` says is int8 (calibrated by :func:`calibrate_export`),
    else ``precision``."""
    if precision == 'fp32' and deploy.get('precision') == 'int8' and \
            deploy_format(deploy) == 'paddle_legacy':
        return 'int8'
    return precision


def serialized_engines(cache_dir):
    """The TensorRT engines serialised in ``cache_dir`` (``trt_use_static``):
    a file per TensorRT subgraph built."""
    return sorted(glob.glob(os.path.join(str(cache_dir), ENGINE_PREFIX + '*')))


_RANGE_FIELD = re.compile(r'^\s*(name|min_shape|max_shape|opt_shape)\s*:\s*(\S+)\s*$')


def read_shape_ranges(path):
    """``{tensor name: {'min': [...], 'opt': [...], 'max': [...]}}`` of a
    shape-range file (the text protobuf ``collect_shape_range_info``
    writes; its ``min_value``/``max_value``/``opt_value`` of shape tensors
    are not read)."""
    ranges, current = {}, None
    keys = {'min_shape': 'min', 'max_shape': 'max', 'opt_shape': 'opt'}
    with open(path) as f:
        for line in f:
            match = _RANGE_FIELD.match(line)
            if not match:
                continue
            field, value = match.groups()
            if field == 'name':
                current = ranges.setdefault(value.strip('"'),
                                            {'min': [], 'opt': [], 'max': []})
            elif current is not None:
                current[keys[field]].append(int(value))
    return ranges


def check_shape_file(shape_file, input_name=None):
    """The input's range in a shape-range file; one DeployError line when
    the file is missing or has no range of the input (``input_name``, else
    :data:`EXPORT_INPUT_NAME`)."""
    name = input_name or EXPORT_INPUT_NAME
    ranges = read_shape_ranges(_existing(shape_file))
    if name not in ranges:
        raise DeployError('trt_shape_file {}: no shape range of the input {!r}'.format(
            shape_file, name))
    return ranges[name]


def _existing(shape_file):
    if not os.path.isfile(shape_file):
        raise DeployError('trt_shape_file {}: no such file (trt_auto_tune=True, '
                          '--auto_tune, collects it)'.format(shape_file))
    return shape_file
