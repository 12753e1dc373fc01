"""paddleseg.deploy's options and export adapters, without exporting.

* :class:`~paddleseg.deploy.DeployOptions`: defaults, normalisation, the
  one-line :class:`~paddleseg.errors.DeployError` (a ConfigError and a
  ValueError) of each bad value, the fp16-on-a-CPU fallback of the CLI, and
  the arguments it gives ``build_config``.
* :func:`~paddleseg.deploy.options.engine_for_format`: which engine runs
  which format.
* :func:`~paddleseg.deploy.adapters.export_adapters`: the export point head
  swapped in and put back (also after an error); it gives the dygraph
  head's point logits.
* ``paddleseg/models`` has no static/dynamic-graph branch.
"""

import dataclasses
import os
import re

import numpy as np
import paddle
import pytest

from paddleseg.deploy import DeployError, DeployOptions
from paddleseg.deploy.adapters import ExportPointHead, export_adapters
from paddleseg.deploy.options import engine_for_format
from paddleseg.errors import ConfigError
from paddleseg.models.heads import PointHead

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_and_normalisation():
    options = DeployOptions()
    assert (options.engine, options.device, options.precision) == ('auto', 'cpu', 'fp32')
    assert options.use_gpu is False and options.device_id == 0
    assert options.predictor_options() == {}
    gpu = DeployOptions(engine='inference', device='GPU', precision='fp16')
    assert gpu.device == 'gpu:0' and gpu.use_gpu and gpu.device_id == 0
    assert DeployOptions(device='gpu:2').device_id == 2
    assert DeployOptions(device='cpu:0').device == 'cpu'
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.engine = 'onnx'


def test_predictor_options_are_build_configs_arguments():
    spec = {'min': [1, 3, 16, 16], 'opt': [1, 3, 32, 32], 'max': [2, 3, 64, 64]}
    options = DeployOptions.from_predictor_args(
        'inference', use_gpu=True, cpu_threads=2, device_id=1, precision='fp16',
        use_trt=True, trt_dynamic_shape=spec, gpu_mem_mb=512)
    assert options.device == 'gpu:1' and options.cpu_threads == 2
    assert options.predictor_options() == dict(
        device_id=1, precision='fp16', use_trt=True, trt_dynamic_shape=spec,
        gpu_mem_mb=512)
    with pytest.raises(TypeError):
        DeployOptions.from_predictor_args(use_tensorrt=True)


BAD = [
    (dict(engine='tensorrt'), "engine must be 'auto', 'inference', 'onnx' or 'openvino'"),
    (dict(engine='dygraph'), "engine must be"),
    (dict(device='xpu:0', engine='inference'), '--engine inference runs on cpu or gpu, not xpu'),
    (dict(device='gpu:x'), 'device must be cpu or gpu'),
    (dict(device='gpu:-1'), r'device must be cpu or gpu\[:index\]'),
    (dict(engine='onnx', device='gpu'), '--engine onnx runs on the CPU'),
    (dict(cpu_threads=-1), 'cpu_threads'),
    (dict(cpu_threads=1.5), 'cpu_threads'),
    (dict(gpu_mem_mb=0, device='gpu'), 'gpu_mem_mb'),
    (dict(precision='int8', device='gpu'), 'int8'),
    (dict(precision='int4', device='gpu'), 'precision must be one of'),
    (dict(precision='bf16', device='gpu', use_trt=True), "'bf16' has no TensorRT mode"),
    (dict(precision='fp8'), 'precision must be one of'),
    (dict(precision='bf16', engine='onnx'), '--precision bf16 on the CPU runs with --engine openvino'),
    (dict(precision='int8'), 'an int8 model is an export of its own'),
    (dict(precision='fp16'), "precision 'fp16' needs use_gpu"),
    (dict(use_trt=True), 'use_trt.*use_gpu'),
    (dict(trt_use_static=True, device='gpu'), 'trt_use_static.*use_trt'),
    (dict(use_trt=True, device='gpu', trt_dynamic_shape={'min': [1, 3, 8, 8]}),
     'trt_dynamic_shape takes the keys'),
]


@pytest.mark.parametrize('fields, match', BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_options_are_one_line_deploy_errors(fields, match):
    with pytest.raises(DeployError, match=match) as exc:
        DeployOptions(**fields)
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, ValueError)
    assert '\n' not in str(exc.value)


def test_fp16_on_the_cpu_falls_back_to_fp32_for_the_cli(capsys):
    options = DeployOptions.with_fallbacks(engine='inference', device='cpu',
                                           precision='fp16')
    assert options.precision == 'fp32'
    assert 'fp16 needs a GPU; --engine inference runs fp32 on the CPU' in \
        capsys.readouterr().out
    gpu = DeployOptions.with_fallbacks(engine='inference', device='gpu:0',
                                       precision='fp16')
    assert gpu.precision == 'fp16'


@pytest.mark.parametrize('engine, fmt, expected', [
    ('auto', 'paddle_legacy', 'inference'), ('auto', 'paddle', 'inference'),
    ('auto', 'onnx', 'onnx'), ('inference', 'paddle', 'inference'),
    ('onnx', 'onnx', 'onnx'), ('onnx', 'paddle_legacy', None),
    ('inference', 'onnx', None), ('tensorrt', 'paddle_legacy', None)])
def test_engine_for_format(engine, fmt, expected):
    if expected:
        assert engine_for_format(engine, fmt, 'out') == expected
        return
    with pytest.raises(DeployError, match='engine') as exc:
        engine_for_format(engine, fmt, 'out')
    if engine != 'tensorrt':
        assert '--format' in str(exc.value)


class _Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.heads = paddle.nn.LayerList([PointHead(num_classes=3, in_channels=[4],
                                                    out_channels=8, dropout_ratio=0)])
        self.pointhead = PointHead(num_classes=3, in_channels=[4], out_channels=8)


def test_export_adapters_swap_the_point_heads_in_and_back():
    paddle.seed(4)
    net = _Net()
    net.eval()
    heads = [net.heads[0], net.pointhead]
    fine = paddle.randn([2, 4, 6, 7])
    coarse = paddle.randn([2, 3, 6, 7])
    points = paddle.rand([2, 10, 2])
    with paddle.no_grad():
        want = [h.point_logits([fine], coarse, points).numpy() for h in heads]
    with export_adapters(net):
        swapped = [net.heads[0], net.pointhead]
        assert all(type(h) is ExportPointHead for h in swapped)
        assert [id(p) for p in net.parameters()] == [
            id(p) for h in heads for p in h.parameters()]
        with paddle.no_grad():
            got = [h.point_logits([fine], coarse, points).numpy() for h in swapped]
    for g, w in zip(got, want):
        assert g.shape == w.shape == (2, 3, 10)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert net.heads[0] is heads[0] and net.pointhead is heads[1]
    with pytest.raises(RuntimeError, match='boom'):
        with export_adapters(net):
            raise RuntimeError('boom')
    assert net.heads[0] is heads[0] and net.pointhead is heads[1]


def test_models_have_no_static_or_dynamic_graph_branch():
    pattern = re.compile(r'in_dynamic_mode|in_pir_mode|in_dynamic_or_pir_mode|'
                         r'LayerHelper|in_static_mode')
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, 'paddleseg', 'models')):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    found += ['{}:{}'.format(os.path.relpath(path, ROOT), i)
                              for i, line in enumerate(f, 1) if pattern.search(line)]
    assert found == []
