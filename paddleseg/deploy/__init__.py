"""Deployment: export a model, and run the export.

``paddleseg.deploy`` sits above :mod:`paddleseg.core` (which never imports
it). Its modules, each owning one thing:

* :mod:`~paddleseg.deploy.options`: :class:`DeployOptions` (engine, device,
  precision, CPU threads, oneDNN, GPU memory, TensorRT), checked once;
  which engine runs which format.
* :mod:`~paddleseg.deploy.deploy_file`: ``deploy.yaml``, the formats
  (:data:`FORMATS`), the output ops (:data:`OUTPUT_OPS`), reading an export.
* :mod:`~paddleseg.deploy.exporter`: :func:`export`.
* :mod:`~paddleseg.deploy.adapters`: the export implementations swapped
  into the model for the time of an export (the point head, the output op).
* :mod:`~paddleseg.deploy.legacy_ops`: the hand-built old-IR ops of the
  ``paddle_legacy`` format.
* :mod:`~paddleseg.deploy.paddle_inference`: :func:`build_config`,
  :func:`create_predictor`, :func:`run_predictor`.
* :mod:`~paddleseg.deploy.tensorrt`: the TensorRT settings of an export and
  the passes before a TensorRT predictor (shape-range collection, int8
  calibration).
* :mod:`~paddleseg.deploy.onnx_runtime`: :func:`create_onnx_session`.
* :mod:`~paddleseg.deploy.openvino_runtime`: :func:`create_openvino_model`
  (OpenVINO Runtime on an ONNX export, fp32 or bf16).
* :mod:`~paddleseg.deploy.engine`: :func:`load_engine`, :class:`EngineModel`.

User errors raise :class:`~paddleseg.errors.DeployError` (a ConfigError and
a ValueError), one line.

.. code-block:: python

    from paddleseg.deploy import export, load_engine
    export(model, 'output/inference_model')           # paddle_legacy, argmax
    run = load_engine('output/inference_model', use_onednn=True, cpu_threads=4)
    class_map = run(images)  # float32 [N, 3, H, W] normalised -> int32 [N, H, W]
"""

from paddleseg.deploy.adapters import ExportedModel
from paddleseg.deploy.deploy_file import (DEFAULT_FORMAT, EXPORT_INPUT_NAME, FORMATS,
                                          ONNX_OPSET, OUTPUT_OPS, check_format,
                                          deploy_format, load_deploy, parse_input_shape,
                                          program_input_name)
from paddleseg.deploy.engine import EngineModel, load_engine, open_engine
from paddleseg.deploy.exporter import export
from paddleseg.deploy.onnx_runtime import create_onnx_session
from paddleseg.deploy.openvino_runtime import create_openvino_model
from paddleseg.deploy.options import ENGINES, PRECISIONS, DeployOptions
from paddleseg.deploy.paddle_inference import build_config, create_predictor, run_predictor
from paddleseg.errors import DeployError

__all__ = ['export', 'load_engine', 'open_engine', 'load_deploy', 'DeployOptions',
           'EngineModel', 'DeployError', 'build_config', 'create_predictor',
           'run_predictor', 'create_onnx_session', 'create_openvino_model',
           'FORMATS', 'DEFAULT_FORMAT',
           'OUTPUT_OPS', 'ENGINES', 'PRECISIONS', 'ONNX_OPSET', 'EXPORT_INPUT_NAME',
           'ExportedModel', 'check_format', 'deploy_format', 'parse_input_shape',
           'program_input_name']
