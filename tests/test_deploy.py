"""Exported models in the consumers outside this repository.

* PaddleSeg v2.8.0's ``deploy/python/infer.py`` on Paddle 3.3.1 (CPU, with
  and without ``--enable_mkldnn``): :func:`paddleseg_infer` makes the same
  calls in the same order (not its code); its palette PNGs must agree with
  predict.py's on >= 99.9% of the pixels.
* A plain ``paddle.inference.Config(model, params)`` with its defaults
  (on CPU: IR optimisation and oneDNN on).
* ONNX Runtime on ``export.py --format onnx`` (paddle2onnx and onnxruntime
  are test requirements, requirements-deploy.txt), at several sizes of one
  dynamic-size export.
* :func:`paddleseg.deploy.load_engine`.

The model and its exports are the shared ``tiny_exports`` (tests/conftest.py),
whose subdivision keeps fewer cells than its grid has at every size used here.
"""

import os
import sys

import cv2
import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from deploy_helpers import (SUBDIVISION_POINTS, deploy_transforms as _transforms,
                            paddleseg_infer, subdivision_cells)
from tiny_data import make_tiny_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import export as export_cli  # noqa: E402
import predict as predict_cli  # noqa: E402

from paddleseg.deploy import load_engine, run_predictor  # noqa: E402

AGREEMENT = 0.999


@pytest.fixture(scope='module')
def tiny(tiny_exports, tmp_path_factory):
    """The shared tiny model and its exports, 4 images of 3 sizes, and
    predict.py's class maps of them."""
    base = tmp_path_factory.mktemp('deploy')
    data = make_tiny_cityscapes(str(base / 'data'), n_train=0, n_val=2)
    cfg, weights, model = tiny_exports.cfg, tiny_exports.weights, tiny_exports.model
    images = sorted(os.path.join(dp, f) for dp, _, fs in
                    os.walk(os.path.join(data, 'leftImg8bit')) for f in fs)
    img_dir = base / 'images'
    os.makedirs(img_dir)
    paths = []
    for i, (path, size) in enumerate(zip(images * 2, [None, None, (112, 80), (70, 100)])):
        im = cv2.imread(path)
        if size:
            im = cv2.resize(im, size, interpolation=cv2.INTER_LINEAR)
        paths.append(str(img_dir / 'im{}.png'.format(i)))
        cv2.imwrite(paths[-1], im)
    pred_dir = str(base / 'predict')
    predict_cli.main(['--config', cfg, '--model_path', weights, '--image_path',
                      str(img_dir), '--save_dir', pred_dir, '--device', 'cpu'])
    maps = {os.path.basename(p): _png(os.path.join(
        pred_dir, 'pseudo_color_prediction', os.path.basename(p))) for p in paths}
    for path in paths:  # 64x128, 80x112, 100x70: cut at both steps
        assert SUBDIVISION_POINTS < subdivision_cells(*cv2.imread(path).shape[:2])
    return {'base': base, 'cfg': cfg, 'weights': weights, 'model': model,
            'images': paths, 'predict': maps, 'exports': tiny_exports}


def _png(path):
    """The pixel values (class ids) of a palette PNG."""
    im = Image.open(path)
    assert im.mode == 'P'
    return np.array(im)


def _agreement(tiny, pngs):
    """Share of pixels where each PNG equals predict.py's class map."""
    shares = []
    for png in pngs:
        expected = tiny['predict'][os.path.basename(png)]
        got = _png(png)
        assert got.shape == expected.shape, png
        shares.append((got == expected).mean())
    return shares


@pytest.mark.parametrize('enable_mkldnn', [False, True])
def test_default_export_runs_in_paddleseg_infer(tiny, enable_mkldnn):
    save_dir = tiny['exports']()
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['model'] == 'model.pdmodel' and deploy['format'] == 'paddle_legacy'
    pngs = paddleseg_infer(os.path.join(save_dir, 'deploy.yaml'), tiny['images'],
                           str(tiny['base'] / 'infer_{}'.format(enable_mkldnn)),
                           enable_mkldnn=enable_mkldnn)
    assert len(pngs) == 4
    shares = _agreement(tiny, pngs)
    assert min(shares) >= AGREEMENT, shares
    if not enable_mkldnn:  # the same kernels as dygraph: exact
        assert min(shares) == 1.0, shares


def test_logits_export_with_infer_argmax(tiny):
    """``--output_op none`` read by infer.py ``--with_argmax``, batch of 2
    same-size images."""
    save_dir = tiny['exports']('paddle_legacy', 'none')
    pngs = paddleseg_infer(os.path.join(save_dir, 'deploy.yaml'), tiny['images'][:2],
                           str(tiny['base'] / 'infer_logits'), with_argmax=True,
                           batch_size=2)
    assert min(_agreement(tiny, pngs)) >= AGREEMENT


def test_default_export_runs_under_a_default_config(tiny):
    """Config(model, params) and nothing else: no consumer needs our passes."""
    from paddle.inference import Config, create_predictor
    save_dir = tiny['exports']()
    config = Config(os.path.join(save_dir, 'model.pdmodel'),
                    os.path.join(save_dir, 'model.pdiparams'))
    predictor = create_predictor(config)
    transforms = _transforms(yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy'])
    for path in tiny['images']:
        x = transforms({'img': path})['img'][np.newaxis]
        out = run_predictor(predictor, x)[0]
        share = (out == tiny['predict'][os.path.basename(path)]).mean()
        assert share >= AGREEMENT, (path, share)


def test_onnx_export_runs_in_onnx_runtime_at_any_size(tiny):
    import onnx
    save_dir = tiny['exports']('onnx')
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['model'] == 'model.onnx' and deploy['format'] == 'onnx'
    assert 'params' not in deploy and deploy['transforms'] == [{'type': 'Normalize'}]
    assert sorted(os.listdir(save_dir)) == ['deploy.yaml', 'model.onnx']
    graph = onnx.load(os.path.join(save_dir, 'model.onnx')).graph
    ops = {node.op_type for node in graph.node}
    # the subdivision is in the graph: most uncertain cells, point features,
    # refined logits written back
    assert {'TopK', 'GridSample', 'ScatterElements', 'ArgMax'} <= ops, ops
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 3
    assert all(not d.dim_value for i, d in enumerate(dims) if i != 1)  # N, H, W dynamic

    run = load_engine(save_dir)
    assert run.engine == 'onnx'
    transforms = _transforms(deploy)
    for path in tiny['images']:  # 64x128, 80x112, 100x70
        x = transforms({'img': path})['img'][np.newaxis]
        out = run(x)
        assert out.dtype == np.int32 and out.shape == x.shape[:1] + x.shape[2:]
        share = (out[0] == tiny['predict'][os.path.basename(path)]).mean()
        assert share >= AGREEMENT, (path, share)
    # a batch, at another size
    x = np.random.default_rng(1).standard_normal((2, 3, 128, 256)).astype('float32')
    with paddle.no_grad():
        expected = paddle.argmax(tiny['model'](paddle.to_tensor(x))[0], axis=1).numpy()
    assert (run(x) == expected).mean() >= AGREEMENT


def test_load_engine_runs_both_paddle_formats_and_checks_the_engine(tiny):
    legacy = load_engine(tiny['exports'](), cpu_threads=1)
    pir = load_engine(tiny['exports']('paddle'), use_onednn=True)
    assert legacy.engine == pir.engine == 'inference'
    assert legacy.output_op == 'argmax'
    x = np.random.default_rng(2).standard_normal((1, 3, 72, 96)).astype('float32')
    with paddle.no_grad():
        expected = paddle.argmax(tiny['model'](paddle.to_tensor(x))[0], axis=1).numpy()
    np.testing.assert_array_equal(legacy(x), expected)
    assert (pir(x) == expected).mean() >= AGREEMENT
    with pytest.raises(ValueError, match='engine'):
        load_engine(tiny['exports'](), engine='onnx')
    with pytest.raises(ValueError, match='engine'):
        load_engine(tiny['exports'](), engine='tensorrt')


def test_onnx_without_paddle2onnx_is_a_one_line_error(tiny, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'paddle2onnx', None)  # import fails
    save_dir = str(tiny['base'] / 'no_p2o')
    with pytest.raises(SystemExit) as exc:
        export_cli.main(['--config', tiny['cfg'], '--model_path', tiny['weights'],
                         '--save_dir', save_dir, '--device', 'cpu', '--format', 'onnx'])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'paddle2onnx' in err[0]
    assert 'requirements-deploy.txt' in err[0]
    assert not os.path.exists(save_dir)  # failed before any work
