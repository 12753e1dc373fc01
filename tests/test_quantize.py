"""export.py --format onnx --quantize int8 (paddleseg.deploy.quantize).

A tiny ResNet18_vd PointRendFPN with fixed random weights is exported as
float ONNX and as its INT8 quantization, calibrated on the tiny val images:
Quantize/DequantizeLinear pairs feed the convolutions and nothing from the
uncertainty TopK on (subdivision, point head); ONNX Runtime runs it through
load_engine unchanged; its class maps agree with the float export's on most
pixels (random weights give near-ties a trained model does not have: the
threshold is measured, docs/deployment.md "INT8" has the trained figures);
deploy.yaml records precision and calibration; bad requests are refused
with one line and leave nothing behind.
"""

import os
import shutil
import sys

import numpy as np
import paddle
import pytest
import yaml

from tiny_data import make_tiny_cityscapes, write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import export as export_cli  # noqa: E402

from paddleseg.deploy import load_engine  # noqa: E402
from paddleseg.deploy import quantize as quant  # noqa: E402

import onnx  # noqa: E402  (requirements-deploy.txt, a test requirement)

# measured: 0.945-0.96 per image on random weights (seeds 0 and 11); the
# trained demo model: docs/deployment.md
RANDOM_WEIGHTS_AGREEMENT = 0.9


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    from paddleseg.cvlibs import Config, SegBuilder
    base = tmp_path_factory.mktemp('quantize')
    root = make_tiny_cityscapes(str(base / 'data'), n_train=2, n_val=3)
    cfg = write_tiny_config(str(base / 'tiny.yml'), root)
    paddle.seed(11)
    model = SegBuilder(Config(cfg)).model
    weights = str(base / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    t = {'base': base, 'cfg': cfg, 'weights': weights, 'root': root}
    t['fp32'] = _export(t, 'fp32', '--format', 'onnx')
    t['int8'] = _export(t, 'int8', '--format', 'onnx', '--quantize', 'int8',
                        '--calib_num', '2')
    return t


def _export(tiny, name, *extra):
    save_dir = str(tiny['base'] / name)
    export_cli.main(['--config', tiny['cfg'], '--model_path', tiny['weights'],
                     '--save_dir', save_dir, '--device', 'cpu'] + list(extra))
    return save_dir


def _refused(tiny, name, capsys, *extra):
    """export.py with ``extra``: exit status 2, one line; returns the line
    and the save_dir (which must hold nothing)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _export(tiny, name, *extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    save_dir = str(tiny['base'] / name)
    assert not os.path.exists(save_dir) or os.listdir(save_dir) == []
    return err[-1]


def _producers(graph):
    return {out: node for node in graph.node for out in node.output}


def test_convolutions_quantized_point_head_float(tiny):
    model = onnx.load(os.path.join(tiny['int8'], 'model.onnx'))
    graph = model.graph
    producer = _producers(graph)
    convs = [n for n in graph.node if n.op_type == 'Conv']
    assert convs
    for conv in convs:  # activation and weight both come dequantized
        assert producer[conv.input[0]].op_type == 'DequantizeLinear', conv.name
        assert producer[conv.input[1]].op_type == 'DequantizeLinear', conv.name
    keep_float = set(quant.subdivision_nodes(model))
    point_ops = {n.op_type for n in graph.node if n.name in keep_float}
    assert {'TopK', 'GridSample', 'ScatterElements'} <= point_ops
    assert point_ops & {'MatMul', 'Gemm'}  # the point head's layers (Gemm: fused with the bias)
    for node in graph.node:
        if node.name in keep_float:
            assert 'QuantizeLinear' not in node.op_type, node.name
            for name in node.input:
                src = producer.get(name)
                assert src is None or src.op_type != 'DequantizeLinear', node.name


def test_onnx_runtime_runs_it_and_agrees(tiny):
    from paddleseg.deploy.deploy_file import load_deploy
    from paddleseg.cvlibs import Config, SegBuilder
    fp32 = load_engine(tiny['fp32'], 'onnx')
    int8 = load_engine(tiny['int8'], 'onnx')
    paths, _ = quant.calibration_images(SegBuilder(Config(tiny['cfg'])), calib_num=3)
    builder = SegBuilder(Config(tiny['cfg']))
    shares = []
    for x in quant.calibration_batches(paths, builder.export_transforms):
        a, b = fp32(x), int8(x)
        assert b.shape == a.shape and b.dtype == a.dtype
        shares.append(float((a == b).mean()))
    assert min(shares) >= RANDOM_WEIGHTS_AGREEMENT, shares
    assert load_deploy(tiny['int8'])['model'] == 'model.onnx'


def test_deploy_yaml_records_precision_and_calibration(tiny):
    with open(os.path.join(tiny['int8'], 'deploy.yaml')) as f:
        deploy = yaml.safe_load(f)['Deploy']
    assert deploy['precision'] == 'int8'
    assert deploy['calibration'] == {'images': 2, 'method': 'MinMax', 'source': 'val'}
    assert deploy['quantization']['op_types'] == ['Conv']
    assert deploy['quantization']['float_from'] == ['TopK']
    assert deploy['format'] == 'onnx'
    with open(os.path.join(tiny['fp32'], 'deploy.yaml')) as f:
        fp32 = yaml.safe_load(f)['Deploy']
    assert fp32['precision'] == 'fp32' and 'calibration' not in fp32
    assert sorted(os.listdir(tiny['int8'])) == ['deploy.yaml', 'model.onnx']


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
def test_paddle_format_without_gpu_tensorrt_is_refused_first(tiny, capsys, monkeypatch, fmt):
    """A Paddle format calibrates TensorRT: on this build (no CUDA, no
    TensorRT) one line says so and points CPUs to the ONNX path, before any
    work (the model is not even built)."""
    from paddleseg.deploy import tensorrt
    missing = tensorrt.tensorrt_missing()
    if missing is None:
        pytest.skip('this paddle has CUDA, a GPU and TensorRT')
    import paddleseg.cli.build as cli_build
    monkeypatch.setattr(cli_build, 'build_for_inference',
                        lambda args: pytest.fail('the model was built'))
    line = _refused(tiny, 'no_trt_' + fmt, capsys, '--quantize', 'int8', '--format', fmt,
                    '--input_shape', '1', '3', '64', '128')
    assert line.endswith('--quantize int8 --format {} calibrates Paddle-TensorRT int8 on '
                         'a GPU, but {}: for CPUs use --format onnx --quantize int8'
                         .format(fmt, missing)), line
    assert 'CUDA' in missing and 'TensorRT' in missing


def test_refuses_empty_calibration_folder(tiny, capsys):
    empty = tiny['base'] / 'empty_calib'
    os.makedirs(empty, exist_ok=True)
    line = _refused(tiny, 'empty_calib_out', capsys, '--format', 'onnx', '--quantize',
                    'int8', '--calib_images', str(empty))
    assert str(empty) in line


def test_refuses_config_without_val_images(tiny, capsys, tmp_path):
    root = str(tmp_path / 'data')
    make_tiny_cityscapes(root, n_train=1, n_val=1)
    shutil.rmtree(os.path.join(root, 'leftImg8bit', 'val'))
    shutil.rmtree(os.path.join(root, 'gtFine', 'val'))
    cfg = write_tiny_config(str(tmp_path / 'noval.yml'), root)
    capsys.readouterr()
    save_dir = str(tmp_path / 'out')
    with pytest.raises(SystemExit) as exc:
        export_cli.main(['--config', cfg, '--model_path', tiny['weights'], '--save_dir',
                         save_dir, '--device', 'cpu', '--format', 'onnx',
                         '--quantize', 'int8'])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert 'val' in line and '--calib_images' in line
    assert not os.path.exists(save_dir)


def test_failed_quantization_leaves_nothing(tiny, monkeypatch):
    from paddleseg.deploy import exporter

    def broken(onnx_file, batches):
        raise RuntimeError('quantizer crashed')
    monkeypatch.setattr(exporter, 'quantize_onnx', broken)
    save_dir = str(tiny['base'] / 'broken')
    with pytest.raises(RuntimeError, match='quantizer crashed'):
        _export(tiny, 'broken', '--format', 'onnx', '--quantize', 'int8', '--calib_num', '1')
    assert os.listdir(save_dir) == []


def test_calibration_images_spread_and_source(tmp_path):
    folder = tmp_path / 'calib'
    os.makedirs(folder)
    import cv2
    for i in range(5):
        cv2.imwrite(str(folder / 'im{}.png'.format(i)), np.zeros((4, 4, 3), np.uint8))
    paths, source = quant.calibration_images(None, str(folder), calib_num=3)
    assert [os.path.basename(p) for p in paths] == ['im0.png', 'im2.png', 'im4.png']
    assert source == os.path.abspath(str(folder))
    paths, _ = quant.calibration_images(None, str(folder), calib_num=50)
    assert len(paths) == 5
    with pytest.raises(ValueError, match='--calib_num'):
        quant.calibration_images(None, str(folder), calib_num=0)


def test_subdivision_nodes_follow_the_topk_outputs():
    from onnx import helper
    nodes = [helper.make_node('Conv', ['x', 'w'], ['a'], name='conv'),
             helper.make_node('TopK', ['a', 'k'], ['v', 'i'], name='topk'),
             helper.make_node('Cast', ['i'], ['ic'], name='cast'),
             helper.make_node('Relu', ['a'], ['r'], name='relu'),
             helper.make_node('Add', ['r', 'ic'], ['y'], name='add')]
    graph = helper.make_graph(nodes, 'g', [], [])
    assert quant.subdivision_nodes(helper.make_model(graph)) == ['add', 'cast', 'topk']


def test_openvino_runs_it_at_the_input_size(tiny):
    """OpenVINO compiles the INT8 model reshaped to the input's size (with a
    dynamic input it does not: docs/deployment.md "INT8") and its class map
    agrees with ONNX Runtime's on the same model."""
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils.openvino_core import openvino_core
    builder = SegBuilder(Config(tiny['cfg']))
    paths, _ = quant.calibration_images(builder, calib_num=1)
    x = next(quant.calibration_batches(paths, builder.export_transforms))
    core = openvino_core()   # the process's one Core (see its docstring)
    model = core.read_model(os.path.join(tiny['int8'], 'model.onnx'))
    model.reshape(list(x.shape))
    out = core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})(x)[0]
    ref = load_engine(tiny['int8'], 'onnx')(x)
    assert out.shape == ref.shape
    assert float((out == ref).mean()) >= 0.98


def test_float_inputs_bypass_the_quantized_copy():
    """A float node reading a Q -> DQ copy reads the tensor before Q; a
    quantized node (not named) keeps its DQ input."""
    from onnx import helper
    nodes = [helper.make_node('Relu', ['x'], ['f'], name='relu'),
             helper.make_node('QuantizeLinear', ['f', 's', 'z'], ['fq'], name='q'),
             helper.make_node('DequantizeLinear', ['fq', 's', 'z'], ['fdq'], name='dq'),
             helper.make_node('Conv', ['fdq', 'w'], ['c'], name='conv'),
             helper.make_node('GridSample', ['fdq', 'g'], ['p'], name='grid')]
    model = helper.make_model(helper.make_graph(nodes, 'g', [], []))
    assert quant.float_inputs(model, ['grid']) == 1
    inputs = {n.name: list(n.input) for n in model.graph.node}
    assert inputs['grid'] == ['f', 'g'] and inputs['conv'] == ['fdq', 'w']
