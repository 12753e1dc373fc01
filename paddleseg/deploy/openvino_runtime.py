"""OpenVINO Runtime: the compiled model of an ``--format onnx`` export.

Owns the CPU plugin's settings (:func:`compile_config`: precision, threads,
no core pinning), :func:`create_openvino_model` and
:func:`openvino_runner`, the call on an image batch.

OpenVINO reads the ``model.onnx`` unchanged, fixed or dynamic input size
alike. An int8 (QDQ) export with a dynamic height and width does not
compile as it is (OpenVINO 2026.4: "Accessing out-of-range dimension", and
in a full test run once a crash of the process), so the runner compiles an
int8 export (deploy.yaml's ``precision``) for each input size it meets
without trying, and any other dynamic model that fails likewise (dynamic
batch alone compiles). Its Paddle frontend is no way round the
ONNX step: it has no converter for ``put_along_axis``, the op that writes
PointRend's refined points back.

Precision: OpenVINO's CPU plugin computes in bf16 by default on a CPU with
AMX-BF16 or AVX512-BF16, so fp32 is asked for explicitly; 'bf16' is asked
only when :mod:`paddleseg.deploy.options` found the CPU able to
(:func:`paddleseg.utils.cpu.bf16_isa`).
"""

import collections
import os

import numpy as np

from paddleseg.deploy.deploy_file import import_or_explain, load_deploy
from paddleseg.utils import logger

PRECISION_HINTS = {'fp32': 'f32', 'bf16': 'bf16'}
"""Our precision names -> OpenVINO's ``INFERENCE_PRECISION_HINT``."""

MAX_SIZES = 8
"""How many input sizes the per-size runner keeps compiled."""


def compile_config(cpu_threads=None, precision='fp32'):
    """The CPU plugin's properties for ``cpu_threads`` (None or 0: all the
    cores it sees) and ``precision`` ('fp32' or 'bf16').

    One stream with the latency hint (one batch at a time, as the loops
    call it), and no pinning of threads to cores: on Linux OpenVINO would
    pin every process to the same first cores, so the processes that
    ``paddle.distributed.launch`` starts side by side would share them.
    """
    config = {'INFERENCE_PRECISION_HINT': PRECISION_HINTS[precision],
              'PERFORMANCE_HINT': 'LATENCY',
              'NUM_STREAMS': 1,
              'ENABLE_CPU_PINNING': False}
    if cpu_threads:
        config['INFERENCE_NUM_THREADS'] = int(cpu_threads)
    return config


def create_openvino_model(model_dir, cpu_threads=None, precision='fp32', shape=None):
    """The OpenVINO CPU compiled model of an ``--format onnx`` export (see
    :func:`compile_config`); with ``shape`` (``[N, 3, H, W]``), compiled for
    that input size alone."""
    ov = import_or_explain('openvino', 'running an ONNX model with OpenVINO')
    core = ov.Core()
    model = core.read_model(os.path.join(model_dir, load_deploy(model_dir)['model']))
    if shape is not None:
        model.reshape([int(v) for v in shape])
    return core.compile_model(model, 'CPU', compile_config(cpu_threads, precision))


def _request_runner(compiled):
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(images):
        return request.infer({0: images}, share_outputs=False)[output]
    return run


def openvino_runner(model_dir, cpu_threads=None, precision='fp32'):
    """``images`` (``float32 [N, 3, H, W]`` numpy) -> the first output of the
    export run by OpenVINO (numpy, a copy: the next call does not overwrite
    it). Compiled once; or, for a model with a dynamic size that OpenVINO
    cannot compile, once per input size met (one info line says so)."""
    deploy = load_deploy(model_dir)
    dynamic = -1 in deploy.get('input_shape', [-1])[2:]
    try:
        if dynamic and deploy.get('precision') == 'int8':
            # not even tried: OpenVINO's failed compile of it has crashed the process
            raise RuntimeError('an int8 (QDQ) model with a dynamic height and width')
        compiled = create_openvino_model(model_dir, cpu_threads, precision)
    except RuntimeError as exc:
        if not dynamic:
            raise  # a fixed size: nothing to narrow
        reason = ([line for line in str(exc).splitlines() if line.strip()] or [''])[-1]
        logger.info('OpenVINO cannot compile {} with a dynamic input size ({}); '
                    'compiling it for each input size'.format(model_dir, reason.strip()))
        by_size = collections.OrderedDict()

        def run_at(images):
            if images.shape not in by_size:
                if len(by_size) >= MAX_SIZES:
                    by_size.popitem(last=False)
                by_size[images.shape] = _request_runner(create_openvino_model(
                    model_dir, cpu_threads, precision, shape=images.shape))
            return by_size[images.shape](images)
        run_one = run_at
    else:
        run_one = _request_runner(compiled)

    def run(images):
        return run_one(np.ascontiguousarray(images, dtype='float32'))
    return run
