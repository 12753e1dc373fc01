"""Export a model for deployment: :func:`export`.

Owns saving the program (``paddle.jit.save`` in the IR its format needs)
and the ONNX conversion. The saved program is the eval-mode model
(PointRend's adaptive subdivision included) with the export adapters
swapped in (:mod:`paddleseg.deploy.adapters`) and the output op, with
``deploy.yaml`` next to it (:mod:`paddleseg.deploy.deploy_file`); with
``quantize='int8'``, the INT8 quantization of the ONNX model
(:mod:`paddleseg.deploy.quantize`) or the Paddle-TensorRT int8 calibration
of a ``paddle_legacy`` program
(:func:`paddleseg.deploy.tensorrt.calibrate_export`: its tables and shape
ranges beside the model), built in a temporary folder and moved into
``save_dir`` only when it succeeded.
"""

import contextlib
import os
import shutil
import tempfile

import paddle

from paddleseg.deploy import tensorrt
from paddleseg.deploy.adapters import ExportedModel, export_adapters
from paddleseg.deploy.quantize import check_quantize, quantize_onnx
from paddleseg.deploy.deploy_file import (DEFAULT_FORMAT, EXPORT_INPUT_NAME, ONNX_OPSET,
                                          check_format, import_or_explain,
                                          parse_input_shape, write_deploy)
from paddleseg.errors import DeployError
from paddleseg.utils import logger


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
    p2o = import_or_explain('paddle2onnx', 'export --format onnx')
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


def _save_onnx(net, prefix, shape):
    """The new-IR program of ``net`` converted to ``prefix.onnx`` (the
    program itself goes to a temporary folder); returns the ONNX file."""
    tmp = tempfile.mkdtemp(prefix='export_onnx_')
    try:
        tmp_prefix = os.path.join(tmp, 'model')
        model_file = _save_program(net, tmp_prefix, shape, old_ir=False)
        return _to_onnx(model_file, tmp_prefix + '.pdiparams', prefix + '.onnx')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export(model, save_dir, input_shape=(-1, 3, -1, -1), output_op='argmax',
           transforms=None, format=DEFAULT_FORMAT, quantize=None, calib_batches=None,
           calib_source=None):
    """Save ``model`` and ``deploy.yaml`` into ``save_dir``.

    Args:
        model (nn.Layer): Weights loaded; put in eval mode here (and
            otherwise left as it was: the export adapters are swapped in for
            the time of the export only).
        save_dir (str): Output folder (created).
        input_shape (list[int], optional): ``N C H W``; -1 = dynamic.
            Default: (-1, 3, -1, -1).
        output_op (str, optional): See
            :class:`~paddleseg.deploy.adapters.ExportedModel`. Default: 'argmax'.
        transforms (list[dict], optional): The transform specs written to
            ``deploy.yaml``. Default: None (empty list).
        format (str, optional): One of :data:`~paddleseg.deploy.FORMATS`
            (see :mod:`paddleseg.deploy.deploy_file`). Default: 'paddle_legacy'.
        quantize (str, optional): 'int8': with format 'onnx' the
            post-training quantization of :mod:`paddleseg.deploy.quantize`;
            with 'paddle_legacy' (a fixed ``input_shape``, a GPU with
            TensorRT) the Paddle-TensorRT calibration
            (:func:`~paddleseg.deploy.tensorrt.calibrate_export`) into the
            export's ``_opt_cache``, with ``shape_range_info.pbtxt``.
            Default: None (float).
        calib_batches (iterable, optional): With ``quantize``: the
            ``float32 [1, 3, H, W]`` calibration inputs, normalised as
            ``transforms`` say (:func:`~paddleseg.deploy.quantize.calibration_batches`).
        calib_source (str, optional): Where they come from, for
            ``deploy.yaml`` ('val' or a folder).

    Returns:
        dict: ``{'model': path, 'params': path or None, 'deploy': path}``,
        with a calibrated ``paddle_legacy`` export also ``'trt_cache'`` and
        ``'shape_file'``.
    """
    shape = parse_input_shape(input_shape)
    check_format(format)
    check_quantize(quantize, format, shape)
    if quantize and calib_batches is None:
        raise DeployError('quantize {!r} needs calib_batches'.format(quantize))
    if quantize and format != 'onnx':  # the first image checked before the work
        calib_batches = tensorrt.fixed_shape_batches(calib_batches, shape)
    model.eval()
    net = ExportedModel(model, output_op)
    net.eval()
    os.makedirs(save_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix='.export_', dir=save_dir) if quantize else save_dir
    try:
        files = _export_into(net, model, work, shape, output_op, transforms, format,
                             quantize, calib_batches, calib_source)
        if quantize:
            files = {key: None if path is None else _move(path, save_dir)
                     for key, path in files.items()}
    finally:
        if work != save_dir:
            shutil.rmtree(work, ignore_errors=True)
    logger.info('Exported the inference model to {} ({}, format {}, input {}, output {}{})'
                .format(save_dir, os.path.basename(files['model']), format,
                        [-1 if v is None else v for v in shape], output_op,
                        ', ' + quantize if quantize else ''))
    return files


def _move(path, folder):
    """``path`` moved into ``folder`` (replacing a file or folder of its
    name: an older export's TensorRT cache belongs to other weights)."""
    target = os.path.join(folder, os.path.basename(path))
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    os.replace(path, target)
    return target


def _export_into(net, model, save_dir, shape, output_op, transforms, fmt, quantize,
                 calib_batches, calib_source):
    """:func:`export` into the folder ``save_dir`` (existing)."""
    prefix = os.path.join(save_dir, 'model')
    params_file = None if fmt == 'onnx' else prefix + '.pdiparams'
    with export_adapters(model):
        if fmt == 'onnx':
            model_file = _save_onnx(net, prefix, shape)
        else:
            model_file = _save_program(net, prefix, shape, old_ir=fmt == 'paddle_legacy')
    precision, files = {}, {}
    if quantize and fmt == 'onnx':
        calibration, quantization = quantize_onnx(model_file, calib_batches)
        calibration['source'] = calib_source
        precision = {'precision': quantize, 'calibration': calibration,
                     'quantization': quantization}
    elif quantize:  # the calibration runs the export: its float deploy.yaml first
        write_deploy(save_dir, model_file, params_file, transforms, shape, output_op, fmt)
        calibration = tensorrt.calibrate_export(save_dir, calib_batches, _gpu_id())
        calibration['source'] = calib_source
        precision = {'precision': quantize, 'calibration': calibration}
        files = {'trt_cache': os.path.join(save_dir, calibration['cache_dir']),
                 'shape_file': os.path.join(save_dir, calibration['shape_file'])}
    deploy_file, _ = write_deploy(save_dir, model_file, params_file, transforms,
                                  shape, output_op, fmt, **precision)
    files.update(model=model_file, params=params_file, deploy=deploy_file)
    return files


def _gpu_id():
    """The GPU paddle is set to (``--device``), else 0."""
    from paddleseg.utils.dist import parse_device
    kind, index = parse_device(paddle.get_device())
    return (index or 0) if kind == 'gpu' else 0
