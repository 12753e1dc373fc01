"""What an export folder holds, and reading it back.

Owns ``deploy.yaml`` (writing it: :func:`write_deploy`; reading it:
:func:`load_deploy`, :func:`read_export`), the export formats
(:data:`FORMATS`, :func:`check_format`, :func:`deploy_format`), the output
ops (:data:`OUTPUT_OPS`), the input shape (:func:`parse_input_shape`) and
the program's input name (:data:`EXPORT_INPUT_NAME`,
:func:`program_input_name`); and the one message for a missing optional
package of ``requirements-deploy.txt`` (:func:`import_or_explain`).

``deploy.yaml``, next to the program:

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
      precision: fp32            # int8: export.py --quantize int8, then also
      # calibration: {images: 32, method: MinMax, source: val}   (or the folder)
      # quantization: {format: QDQ, per_channel: true, op_types: [Conv], ...}
      # (format paddle_legacy: no quantization; the calibration of Paddle-TensorRT,
      #  {images: 32, method: EntropyCalibration2, engine: paddle_tensorrt,
      #   tables: 3, cache_dir: _opt_cache, shape_file: shape_range_info.pbtxt,
      #   source: val}: the program stays float, TensorRT runs it int8)

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

import importlib
import os

import yaml

from paddleseg.errors import DeployError

OUTPUT_OPS = ('argmax', 'softmax', 'none')
FORMATS = ('paddle_legacy', 'paddle', 'onnx')
DEFAULT_FORMAT = 'paddle_legacy'
ONNX_OPSET = 17  # GridSample needs 16
DEPLOY_EXTRAS = 'pip install -r requirements-deploy.txt'

EXPORT_INPUT_NAME = 'x'
"""The name :func:`~paddleseg.deploy.export` gives the program's input."""


def import_or_explain(module, what):
    """``import module``, or a one-line ImportError saying that ``what``
    needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError('{} needs {} (optional): {}'.format(
            what, module, DEPLOY_EXTRAS)) from None


def parse_input_shape(values):
    """``[N, C, H, W]`` with -1 for a dynamic size -> the InputSpec shape
    (None for dynamic). Raises DeployError (a ValueError) on anything else."""
    values = [int(v) for v in values]
    if len(values) != 4:
        raise DeployError('input_shape needs 4 numbers N C H W, got {}'.format(values))
    if values[1] <= 0:
        raise DeployError('input_shape: the channels C must be given, got {}'.format(
            values))
    if any(v == 0 or v < -1 for v in values):
        raise DeployError('input_shape: each size is positive or -1 (dynamic), '
                          'got {}'.format(values))
    return [None if v == -1 else v for v in values]


def check_format(fmt):
    """Raise DeployError (a ValueError) for an unknown format, ImportError
    (one line, with the install command) when ``onnx`` lacks paddle2onnx."""
    if fmt not in FORMATS:
        raise DeployError('format must be one of {}, got {!r}'.format(FORMATS, fmt))
    if fmt == 'onnx':
        import_or_explain('paddle2onnx', 'export --format onnx')


def write_deploy(save_dir, model_file, params_file, transforms, shape, output_op, fmt,
                 precision='fp32', calibration=None, quantization=None):
    """Write ``save_dir/deploy.yaml`` (see the module's doc); returns
    ``(path, the Deploy mapping)``. ``shape`` is the InputSpec shape (None
    for a dynamic size); ``calibration`` and ``quantization`` (mappings)
    are those of a quantized model
    (:func:`~paddleseg.deploy.quantize.quantize_onnx`), or ``calibration``
    alone that of a ``paddle_legacy`` export calibrated for TensorRT int8
    (:func:`~paddleseg.deploy.tensorrt.calibrate_export`)."""
    deploy = {'model': os.path.basename(model_file)}
    if params_file:
        deploy['params'] = os.path.basename(params_file)
    deploy.update({
        'transforms': list(transforms or []),
        'input_shape': [-1 if v is None else v for v in shape],
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
        'format': fmt,
        'precision': precision,
    })
    if calibration:
        deploy['calibration'] = dict(calibration)
    if quantization:
        deploy['quantization'] = dict(quantization)
    deploy_file = os.path.join(save_dir, 'deploy.yaml')
    with open(deploy_file, 'w') as f:
        yaml.safe_dump({'Deploy': deploy}, f, sort_keys=False)
    return deploy_file, deploy


def load_deploy(model_dir):
    """The ``Deploy`` mapping of ``model_dir/deploy.yaml``."""
    with open(os.path.join(model_dir, 'deploy.yaml')) as f:
        return yaml.safe_load(f)['Deploy']


def read_export(model_dir, engine):
    """:func:`load_deploy` for ``--model_path``: one DeployError line (naming
    ``--engine``) when ``model_dir`` is not an export (a weights file, say)
    or its ``deploy.yaml`` is unreadable or has no ``model``."""
    deploy_file = os.path.join(str(model_dir), 'deploy.yaml')
    if not os.path.isfile(deploy_file):
        raise DeployError(
            '--model_path {}: --engine {} runs an exported model: give the '
            'folder export.py wrote (it holds deploy.yaml), not a weights '
            'file'.format(model_dir, engine))
    try:
        deploy = load_deploy(model_dir)
    except Exception as exc:
        raise DeployError('{}: not a readable deploy.yaml ({}: {})'.format(
            deploy_file, type(exc).__name__, exc)) from None
    if not isinstance(deploy, dict) or 'model' not in deploy:
        raise DeployError('{}: Deploy.model: missing'.format(deploy_file))
    return deploy


def deploy_format(deploy):
    """The format of a ``Deploy`` mapping (older ones have no ``format``)."""
    if deploy.get('format'):
        return deploy['format']
    model = deploy['model']
    if model.endswith('.onnx'):
        return 'onnx'
    return 'paddle' if model.endswith('.json') else 'paddle_legacy'


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
