"""export.py: static inference model + deploy.yaml, fixed and dynamic input.

The tiny model of ``tiny_exports`` (tests/conftest.py: ResNet18_vd
PointRendFPN, fixed random weights, its subdivision cut at fewer cells than
the grid has) is exported in both Paddle formats (paddle_legacy, the
default: model.pdmodel; paddle: model.json); the loaded program
(paddle.inference and paddle.jit.load) must give the argmax of the dygraph
eval-mode model, subdivision included. ONNX and the consumers outside this
repository: tests/test_deploy.py.
"""

import contextlib
import os
import sys

import numpy as np
import paddle
import pytest
import yaml

from deploy_helpers import SUBDIVISION_POINTS, subdivision_cells

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import export as export_cli  # noqa: E402

from paddleseg.deploy import create_predictor, run_predictor  # noqa: E402

MODEL_FILES = {'paddle_legacy': 'model.pdmodel', 'paddle': 'model.json'}


@pytest.fixture(scope='module')
def tiny(tiny_exports, tmp_path_factory):
    """The shared model and exports; this module's own exports go to ``base``."""
    return {'base': tmp_path_factory.mktemp('export'), 'cfg': tiny_exports.cfg,
            'weights': tiny_exports.weights, 'model': tiny_exports.model,
            'exports': tiny_exports}


def _pir_flag():
    return paddle.framework.get_flags('FLAGS_enable_pir_api')['FLAGS_enable_pir_api']


def _export(tiny, name, *extra):
    """export.py into ``base/name``; the old-IR export switches the IR for
    its own time only (checked after every export of this module)."""
    save_dir = str(tiny['base'] / name)
    if os.path.isdir(save_dir):
        return save_dir
    before = _pir_flag()
    export_cli.main(['--config', tiny['cfg'], '--model_path', tiny['weights'],
                     '--save_dir', save_dir, '--device', 'cpu'] + list(extra))
    assert _pir_flag() == before and paddle.in_dynamic_mode()
    return save_dir


def _dygraph(model, x, output_op='argmax'):
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0]
    if output_op == 'argmax':
        return paddle.argmax(logits, axis=1).numpy().astype(np.int32)
    if output_op == 'softmax':
        return paddle.nn.functional.softmax(logits, axis=1).numpy()
    return logits.numpy()


def _jit_load(save_dir):
    """paddle.jit.load of either format: an old-IR program loads (and runs)
    with the new IR off, as export.py wrote it."""
    from paddle.pir_utils import DygraphOldIrGuard
    fmt = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']['format']
    guard = DygraphOldIrGuard() if fmt == 'paddle_legacy' else contextlib.nullcontext()

    def run(x):
        with guard:
            return paddle.jit.load(os.path.join(save_dir, 'model'))(
                paddle.to_tensor(x)).numpy()
    return run


def _predictor(save_dir, use_onednn=False):
    return create_predictor(save_dir, use_onednn=use_onednn, cpu_threads=1)


def _image(h, w, n=1, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype('float32')


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
def test_fixed_shape_export_matches_dygraph(tiny, fmt):
    save_dir = _export(tiny, 'fixed_' + fmt, '--input_shape', '1', '3', '64', '128',
                       '--format', fmt)
    files = sorted(os.listdir(save_dir))
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['model'] == MODEL_FILES[fmt] and deploy['format'] == fmt
    assert deploy['model'] in files and deploy['params'] == 'model.pdiparams'
    assert deploy['params'] in files
    assert deploy['input_shape'] == [1, 3, 64, 128]
    assert deploy['output_op'] == 'argmax' and deploy['output_dtype'] == 'int32'
    assert deploy['transforms'] == [{'type': 'Normalize'}]  # val transforms

    x = _image(64, 128)
    expected = _dygraph(tiny['model'], x)
    out = run_predictor(_predictor(save_dir), x)
    assert out.dtype == np.int32 and out.shape == (1, 64, 128)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(_jit_load(save_dir)(x), expected)


def test_default_format_is_paddle_legacy(tiny):
    save_dir = tiny['exports']()  # export.py with no --format, --output_op, --input_shape
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['format'] == 'paddle_legacy' and deploy['model'] == 'model.pdmodel'
    assert deploy['input_shape'] == [-1, 3, -1, -1]
    assert 'model.json' not in os.listdir(save_dir)


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
def test_dynamic_shape_export_matches_dygraph_at_other_sizes(tiny, fmt):
    """At every size the subdivision keeps fewer cells than its grid has
    (a wrong TopK or scatter in the program would move the class map)."""
    predictor = _predictor(tiny['exports'](fmt))
    for shape in ((1, 64, 128), (2, 96, 160), (1, 128, 256), (1, 64, 96),
                  (1, 100, 70)):
        assert SUBDIVISION_POINTS < subdivision_cells(*shape[1:])
        x = _image(*shape[1:], n=shape[0], seed=sum(shape))
        out = run_predictor(predictor, x)
        assert out.shape == (shape[0],) + shape[1:]
        np.testing.assert_array_equal(out, _dygraph(tiny['model'], x), err_msg=str(shape))


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
@pytest.mark.parametrize('output_op', ['softmax', 'none'])
def test_float_outputs(tiny, output_op, fmt):
    save_dir = tiny['exports'](fmt, output_op)
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['output_op'] == output_op and deploy['output_dtype'] == 'float32'
    x = _image(64, 96, seed=3)
    expected = _dygraph(tiny['model'], x, output_op)
    out = _jit_load(save_dir)(x)
    assert out.shape == (1, 19, 64, 96)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    out = run_predictor(_predictor(save_dir), x)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
@pytest.mark.parametrize('name, args', [
    ('dynamic', []), ('fixed', ['--input_shape', '1', '3', '64', '128'])])
def test_onednn_predictor_matches_dygraph(tiny, name, args, fmt):
    """oneDNN (MKLDNN) CPU kernels, as create_predictor sets them up."""
    save_dir = (tiny['exports'](fmt) if name == 'dynamic'
                else _export(tiny, '{}_{}'.format(name, fmt), '--format', fmt, *args))
    x = _image(64, 128, seed=5)
    out = run_predictor(_predictor(save_dir, use_onednn=True), x)
    expected = _dygraph(tiny['model'], x)
    assert out.shape == expected.shape
    # oneDNN kernels may sum in another order: allow a few flipped near-ties
    assert (out == expected).mean() > 0.999


def test_bad_input_shape_is_a_one_line_error(tiny, capsys):
    with pytest.raises(SystemExit) as exc:
        _export(tiny, 'bad', '--input_shape', '1', '-1', '64', '64')
    assert exc.value.code == 2
    assert 'input_shape' in capsys.readouterr().err


def test_export_swaps_in_the_export_point_head_and_puts_the_model_back(tiny, tmp_path):
    """The old-IR program samples points with grid_sampler and runs the
    point MLP as matrix products (the export point head); the model keeps
    its own head and gives the same logits after the export."""
    from paddle.base.proto import framework_pb2
    from paddleseg.deploy import export
    from paddleseg.models.heads import PointHead
    model = tiny['model']
    head = model.pointhead
    x = _image(64, 96, seed=9)
    before = _dygraph(model, x, 'none')
    export(model, str(tmp_path / 'swap'), input_shape=[1, 3, 64, 96])
    assert model.pointhead is head and type(head) is PointHead
    np.testing.assert_array_equal(_dygraph(model, x, 'none'), before)
    program = framework_pb2.ProgramDesc()
    with open(str(tmp_path / 'swap' / 'model.pdmodel'), 'rb') as f:
        program.ParseFromString(f.read())
    ops = [op.type for op in program.blocks[0].ops]
    steps = head.subdivision_steps
    # per step: each fine map and the coarse logits
    assert ops.count('grid_sampler') == (len(head.in_index) + 1) * steps
    assert ops.count('matmul_v2') == (len(head.fcs) + 1) * steps
    assert ops.count('arg_max') == 1
