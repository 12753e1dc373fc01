"""ONNX Runtime: the session of an ``--format onnx`` export.

Owns :func:`create_onnx_session` (CPU provider, threads) and
:func:`onnx_runner`, the call of a session on an image batch.
"""

import os

import numpy as np

from paddleseg.deploy.deploy_file import import_or_explain, load_deploy


def create_onnx_session(model_dir, cpu_threads=None):
    """An ONNX Runtime CPU session of an ``--format onnx`` export."""
    ort = import_or_explain('onnxruntime', 'running an ONNX model')
    deploy = load_deploy(model_dir)
    options = ort.SessionOptions()
    if cpu_threads:
        options.intra_op_num_threads = int(cpu_threads)
    options.log_severity_level = 3
    return ort.InferenceSession(os.path.join(model_dir, deploy['model']),
                                sess_options=options,
                                providers=['CPUExecutionProvider'])


def onnx_runner(session):
    """``images`` (``float32 [N, 3, H, W]`` numpy) -> the session's first
    output (numpy)."""
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(images):
        images = np.ascontiguousarray(images, dtype='float32')
        return session.run([output_name], {input_name: images})[0]
    return run
