"""export.py: static inference model + deploy.yaml, fixed and dynamic input.

A tiny ResNet18_vd PointRendFPN with fixed random weights is exported; the
loaded program (paddle.inference and paddle.jit.load) must give the argmax
of the dygraph eval-mode model, subdivision included.
"""

import os
import sys

import numpy as np
import paddle
import pytest
import yaml

from tiny_data import write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import export as export_cli  # noqa: E402

from paddleseg.core.export import create_predictor, run_predictor  # noqa: E402


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    from paddleseg.cvlibs import config_builder as builder
    from paddleseg.cvlibs.config import load_and_check
    base = tmp_path_factory.mktemp('export')
    os.makedirs(base / 'data')
    cfg = write_tiny_config(str(base / 'tiny.yml'), str(base / 'data'))
    paddle.seed(11)
    model = builder.build_model(load_and_check(cfg, for_training=False), cfg)
    model.eval()
    weights = str(base / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    return {'base': base, 'cfg': cfg, 'weights': weights, 'model': model}


def _export(tiny, name, *extra):
    save_dir = str(tiny['base'] / name)
    export_cli.main(['--config', tiny['cfg'], '--model_path', tiny['weights'],
                     '--save_dir', save_dir, '--device', 'cpu'] + list(extra))
    return save_dir


def _dygraph(model, x, output_op='argmax'):
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0]
    if output_op == 'argmax':
        return paddle.argmax(logits, axis=1).numpy().astype(np.int32)
    if output_op == 'softmax':
        return paddle.nn.functional.softmax(logits, axis=1).numpy()
    return logits.numpy()


def _predictor(save_dir, use_onednn=False):
    return create_predictor(save_dir, use_onednn=use_onednn, cpu_threads=1)


def _image(h, w, n=1, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype('float32')


def test_fixed_shape_export_matches_dygraph(tiny):
    save_dir = _export(tiny, 'fixed', '--input_shape', '1', '3', '64', '128')
    files = sorted(os.listdir(save_dir))
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
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
    loaded = paddle.jit.load(os.path.join(save_dir, 'model'))
    np.testing.assert_array_equal(loaded(paddle.to_tensor(x)).numpy(), expected)


def test_dynamic_shape_export_matches_dygraph_at_other_sizes(tiny):
    save_dir = _export(tiny, 'dynamic')  # default -1 3 -1 -1
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['input_shape'] == [-1, 3, -1, -1]
    predictor = _predictor(save_dir)
    # 128x256: the subdivision keeps 8196 of 32768 cells; 64x96: all cells
    for shape in ((1, 64, 128), (2, 96, 160), (1, 128, 256), (1, 64, 96)):
        x = _image(*shape[1:], n=shape[0], seed=sum(shape))
        out = run_predictor(predictor, x)
        assert out.shape == (shape[0],) + shape[1:]
        np.testing.assert_array_equal(out, _dygraph(tiny['model'], x), err_msg=str(shape))


@pytest.mark.parametrize('output_op', ['softmax', 'none'])
def test_float_outputs(tiny, output_op):
    save_dir = _export(tiny, output_op, '--output_op', output_op,
                       '--input_shape', '1', '3', '-1', '-1')
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['output_op'] == output_op and deploy['output_dtype'] == 'float32'
    x = _image(64, 96, seed=3)
    out = paddle.jit.load(os.path.join(save_dir, 'model'))(paddle.to_tensor(x)).numpy()
    assert out.shape == (1, 19, 64, 96)
    np.testing.assert_allclose(out, _dygraph(tiny['model'], x, output_op),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name, args', [
    ('dynamic', []), ('fixed', ['--input_shape', '1', '3', '64', '128'])])
def test_onednn_predictor_matches_dygraph(tiny, name, args):
    """oneDNN (MKLDNN) CPU kernels, as create_predictor sets them up."""
    save_dir = str(tiny['base'] / name)
    if not os.path.isdir(save_dir):
        save_dir = _export(tiny, name, *args)
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
