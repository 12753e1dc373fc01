"""INT8 post-training quantization of an ONNX export, and what
``export.py --quantize`` applies to.

Owns :func:`quantize_onnx` (ONNX Runtime's static quantization of a
``model.onnx`` in place, calibrated on images), :func:`calibration_images`
(which images calibrate: the config's ``val_dataset`` or a folder),
:func:`calibration_batches` (those images through the export's transforms),
:func:`subdivision_nodes` (the nodes that stay float), :func:`float_inputs`
(their inputs read float) and :func:`check_quantize` (what ``--quantize``
applies to: an ONNX export, quantized here, or a ``paddle_legacy`` one on a
GPU with TensorRT, calibrated by Paddle-TensorRT on the same images,
:func:`paddleseg.deploy.tensorrt.calibrate_export`).

What is quantized, and why (measured on the demo's trained model with
benchmarks/low_precision.py, docs/deployment.md "INT8"):

* ``Conv`` only (:data:`QUANT_OP_TYPES`): the backbone, the FPN and the
  coarse head, where the time goes; weights per output channel (``int8``),
  activations per tensor (``uint8``), MinMax calibration, QDQ format (so
  ONNX Runtime and OpenVINO both fuse the pairs into integer kernels).
* Float: everything from PointRend's uncertainty ``TopK`` on
  (:func:`subdivision_nodes`): the point selection, the index arithmetic of
  the subdivision (integer and shape arithmetic), ``GridSample``, the point
  head's layers (``MatMul``, ``Gemm`` once fused with their bias) and the
  ``ScatterElements`` back into the map. Quantizing the point head too left
  99.11% of the demo's val pixels equal to fp32 instead of 99.44% (mIoU
  -0.08 instead of -0.05 points): it moves the fine class borders the head
  is there to fix. The point head also samples the float features, not
  the quantized copy the convolutions read (:func:`float_inputs`): 99.44%
  against 99.40% of the pixels, for about 10% of the time
  (``float_features=False`` of :func:`quantize_onnx` is the faster choice).

Calibration runs the float model on ``float32 [1, 3, H, W]`` images of any
size (MinMax keeps a running min/max per tensor, so the sizes need not be
equal); the graph keeps its dynamic input shape.
"""

import os
import shutil
import tempfile

import numpy as np

from paddleseg.deploy import tensorrt
from paddleseg.deploy.deploy_file import EXPORT_INPUT_NAME, import_or_explain
from paddleseg.errors import DeployError, SegError

QUANTIZE_CHOICES = ('int8',)
"""The values of ``export.py --quantize``."""
DEFAULT_CALIB_NUM = 32
QUANT_OP_TYPES = ('Conv',)
CALIBRATION_METHOD = 'MinMax'
FLOAT_FROM_OPS = ('TopK',)
"""Op types from which on (they and every node depending on their outputs)
the graph stays float: the subdivision and the point head."""


def calibration_images(builder, calib_images=None, calib_num=DEFAULT_CALIB_NUM):
    """The image paths that calibrate, and where they come from.

    Args:
        builder (SegBuilder): The config's (``val_dataset`` when
            ``calib_images`` is None).
        calib_images (str, optional): A folder (or image, or ``.txt`` list)
            of images instead. Default: None.
        calib_num (int, optional): How many (evenly spread over the sorted
            list; all when it has fewer). Default: :data:`DEFAULT_CALIB_NUM`.

    Returns:
        tuple(list[str], str): the paths and the source (``'val'`` or the
        folder) for ``deploy.yaml``.

    Raises:
        DeployError: ``calib_num`` below 1, no image found (one line naming
            the folder or the key).
    """
    if int(calib_num) < 1:
        raise DeployError('--calib_num must be at least 1, got {}'.format(calib_num))
    if calib_images is not None:
        from paddleseg.utils.images import collect_images
        try:
            paths, _ = collect_images(calib_images)
        except SegError as exc:
            raise DeployError('--calib_images {}'.format(exc)) from None
        source = os.path.abspath(calib_images)
    else:
        try:
            dataset = builder.val_dataset
        except SegError as exc:  # no val_dataset, a missing root, no image
            raise DeployError('--quantize int8 calibrates on val_dataset: {} (give '
                              '--calib_images DIR)'.format(exc)) from None
        paths = [item[0] for item in dataset.file_list]
        source = 'val'
    if not paths:
        raise DeployError('--quantize int8: no calibration image in {}'.format(
            'val_dataset' if calib_images is None else calib_images))
    picks = np.unique(np.linspace(0, len(paths) - 1, min(int(calib_num), len(paths)))
                      .round().astype(int))
    return [paths[i] for i in picks], source


def calibration_batches(paths, transforms):
    """``paths`` through ``transforms`` (a list of built transforms, the
    export's), each as a ``float32 [1, 3, H, W]`` array; lazily."""
    from paddleseg.transforms import Compose
    compose = Compose(list(transforms))
    for path in paths:
        yield np.ascontiguousarray(compose({'img': path})['img'][np.newaxis],
                                   dtype='float32')


def subdivision_nodes(model, float_from=FLOAT_FROM_OPS):
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) that depend
    on the output of a node of type ``float_from`` (default
    :data:`FLOAT_FROM_OPS`), those nodes included: the subdivision and the
    point head, kept float."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    todo = [n for n in model.graph.node if n.op_type in float_from]
    seen = set()
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for out in node.output:
            todo.extend(consumers.get(out, []))
    return sorted(seen)


def float_inputs(model, names):
    """Rewire the nodes ``names`` of ``model`` (in place) that read a
    quantized-dequantized activation to read the float tensor instead: the
    quantizer hands its ``DequantizeLinear`` output to every consumer of a
    tensor a convolution quantizes, the point head's ``GridSample`` of the
    fine features included. Returns how many inputs were rewired."""
    producer = {out: node for node in model.graph.node for out in node.output}
    names = set(names)
    rewired = 0
    for node in model.graph.node:
        if node.name not in names:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and \
                dq.op_type == 'DequantizeLinear' else None
            if q is not None and q.op_type == 'QuantizeLinear':
                node.input[i] = q.input[0]
                rewired += 1
    return rewired


def check_quantize(quantize, fmt, input_shape=None):
    """Raise DeployError unless ``quantize`` (None or one of
    :data:`QUANTIZE_CHOICES`) can apply to the export format ``fmt`` here:
    ``onnx`` (this module's quantization; ImportError without ONNX
    Runtime's quantizer), or ``paddle_legacy`` with a fixed ``input_shape``
    (``[N, C, H, W]``, checked when given) on a paddle with CUDA, a GPU and
    TensorRT (Paddle-TensorRT's calibration,
    :func:`paddleseg.deploy.tensorrt.calibrate_export`)."""
    if quantize is None:
        return
    if quantize not in QUANTIZE_CHOICES:
        raise DeployError('--quantize must be one of {}, got {!r}'.format(
            QUANTIZE_CHOICES, quantize))
    if fmt == 'onnx':
        import_or_explain('onnxruntime.quantization', 'export --quantize int8')
        return
    missing = tensorrt.tensorrt_missing()
    if missing:
        raise DeployError('--quantize {} --format {} calibrates Paddle-TensorRT int8 on a '
                          'GPU, but {}: for CPUs use --format onnx --quantize {}'.format(
                              quantize, fmt, missing, quantize))
    if fmt != 'paddle_legacy':
        raise DeployError("--quantize {} --format {}: Paddle Inference's TensorRT runs "
                          "paddle_legacy programs only (model.pdmodel): use --format "
                          "paddle_legacy".format(quantize, fmt))
    if input_shape is not None and any(v in (None, -1) for v in input_shape):
        raise DeployError('--quantize {} --format {}: TensorRT calibrates at one input '
                          'shape: give a fixed --input_shape N 3 H W (the size of the '
                          'calibration images after the export transforms), got {}'.format(
                              quantize, fmt, [-1 if v is None else v for v in input_shape]))


def _optimized(onnx, onnx_file, out):
    """``onnx_file`` after ONNX Runtime's basic graph optimizations, with
    shapes inferred, saved at ``out`` (what ``quant_pre_process`` does
    without symbolic shapes, with ONNX Runtime's warnings about the
    constants it drops left out). paddle2onnx writes the weights as
    ``Constant`` nodes: folded into initializers here, which the quantizer
    needs for per-channel weights, and each batch norm into its
    convolution."""
    ort = import_or_explain('onnxruntime', 'export --quantize int8')
    options = ort.SessionOptions()
    options.optimized_model_filepath = out
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    onnx.shape_inference.infer_shapes_path(out, out)
    return out


def _reader(quant, batches, input_name):
    """ONNX Runtime's CalibrationDataReader over numpy ``batches``; its
    ``count`` says how many it gave."""
    class Reader(quant.CalibrationDataReader):
        count = 0

        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self.count += 1
            return {input_name: batch}
    return Reader()


def quantize_onnx(onnx_file, batches, input_name=EXPORT_INPUT_NAME, op_types=QUANT_OP_TYPES,
                  float_from=FLOAT_FROM_OPS, float_features=True):
    """Replace ``onnx_file`` (a float export) by its INT8 quantization.

    Args:
        onnx_file (str): The float ``model.onnx``; overwritten only when the
            quantization succeeded.
        batches (iterable): ``float32 [1, 3, H, W]`` calibration inputs.
        input_name (str, optional): The model's input. Default: 'x'.
        op_types, float_from (tuple[str], optional): What is quantized, and
            from which ops on nothing is (:func:`subdivision_nodes`).
            Default: :data:`QUANT_OP_TYPES`, :data:`FLOAT_FROM_OPS`.
        float_features (bool, optional): The float nodes read float
            tensors (:func:`float_inputs`). Default: True.

    The defaults are export.py's; other values are for measuring
    (benchmarks/low_precision.py --variants).

    Returns:
        tuple(dict, dict): for ``deploy.yaml``: the calibration
        (``images`` read, ``method``) and the quantization (``format``,
        ``per_channel``, ``op_types``, ``float_from``, ``float_nodes``).

    Raises:
        DeployError: no calibration input.
    """
    onnx = import_or_explain('onnx', 'export --quantize int8')
    quant = import_or_explain('onnxruntime.quantization', 'export --quantize int8')
    tmp = tempfile.mkdtemp(prefix='quantize_')
    try:
        pre = _optimized(onnx, onnx_file, os.path.join(tmp, 'pre.onnx'))
        keep_float = subdivision_nodes(onnx.load(pre), float_from)
        reader = _reader(quant, batches, input_name)
        out = os.path.join(tmp, 'int8.onnx')
        quant.quantize_static(
            pre, out, reader, quant_format=quant.QuantFormat.QDQ, per_channel=True,
            op_types_to_quantize=list(op_types), nodes_to_exclude=keep_float,
            activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
            calibrate_method=getattr(quant.CalibrationMethod, CALIBRATION_METHOD))
        if reader.count == 0:
            raise DeployError('--quantize int8: no calibration input was read')
        model = onnx.load(out)
        if float_features:  # the point head samples float features
            float_inputs(model, keep_float)
        onnx.save(model, onnx_file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    calibration = {'images': reader.count, 'method': CALIBRATION_METHOD}
    quantization = {'format': 'QDQ', 'per_channel': True, 'op_types': list(op_types),
                    'weights': 'int8', 'activations': 'uint8',
                    'float_from': list(float_from), 'float_nodes': len(keep_float)}
    return calibration, quantization
