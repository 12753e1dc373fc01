"""GPU fp16 and TensorRT predictors of an exported model
(``paddleseg.deploy.create_predictor(use_gpu=True, precision=...,
use_trt=...)``), against the CPU predictor.

export.py writes the tiny model (the default ``paddle_legacy`` format,
which Paddle-TensorRT takes) with a dynamic input and with a fixed
1x3x64x128 one. Each GPU predictor's class map must agree with the CPU
predictor's on at least 99.9% of the pixels in fp32, 99.5% in fp16 (a
measurement: tests/gpu/conftest.py FP16_MIN_AGREEMENT). fp16 skips below compute
capability 7.0; TensorRT skips when this paddle is built without it
(``paddle.inference.get_trt_compile_version() == (0, 0, 0)``) or finds no
TensorRT library at run time. The CPU tests of the configs these
predictors are built from: tests/test_predictor_config.py.
"""

import numpy as np
import pytest
from paddle import inference

MIN_AGREEMENT = 0.999
# (N, H, W) each export of the `exported` fixture (tests/gpu/conftest.py) runs at
SHAPES = {'dynamic': [(1, 64, 128), (2, 96, 160), (1, 128, 256)],
          'fixed': [(1, 64, 128)]}
TRT_RANGE = {'min': [1, 3, 64, 128], 'opt': [1, 3, 96, 160], 'max': [2, 3, 128, 256]}


def _need_tensorrt():
    compiled = tuple(inference.get_trt_compile_version())
    if compiled == (0, 0, 0):
        pytest.skip('this paddle is built without TensorRT')
    if tuple(inference.get_trt_runtime_version()) == (0, 0, 0):
        pytest.skip('paddle is built with TensorRT {} but finds no TensorRT library '
                    'at run time'.format('.'.join(map(str, compiled))))


@pytest.mark.gpu
@pytest.mark.parametrize('name, precision, use_trt', [
    ('dynamic', 'fp16', False), ('dynamic', 'fp32', True), ('dynamic', 'fp16', True),
    ('fixed', 'fp16', True)])
def test_gpu_predictor_agrees_with_the_cpu_predictor(exported, tools, tmp_path,
                                                     name, precision, use_trt):
    from paddleseg.deploy import create_predictor, run_predictor
    if precision == 'fp16':
        tools.need_fp16()
    options = dict(precision=precision)
    if use_trt:
        _need_tensorrt()
        options.update(use_trt=True, trt_cache_dir=str(tmp_path / 'trt'))
        if name == 'dynamic':
            options['trt_dynamic_shape'] = TRT_RANGE
    gpu = create_predictor(exported[name], use_gpu=True, **options)
    cpu = create_predictor(exported[name], cpu_threads=1)
    for n, h, w in SHAPES[name]:
        x = np.random.default_rng(n + h + w).standard_normal((n, 3, h, w)).astype('float32')
        out = run_predictor(gpu, x)
        assert out.dtype == np.int32 and out.shape == (n, h, w), (out.dtype, out.shape)
        share = tools.agreement(out, run_predictor(cpu, x))
        least = MIN_AGREEMENT if precision == 'fp32' else tools.FP16_MIN_AGREEMENT
        assert share >= least, (
            '{} input {}x3x{}x{}, {}: the GPU predictor agrees with the CPU one on '
            '{:.4%} of the pixels'.format(name, n, h, w, options, share))
