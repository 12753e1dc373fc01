"""val.py and predict.py with ``--engine inference|onnx``: the exported model
run in-process gives dygraph's metrics and class maps.

The tiny set's labels are the dygraph model's own class maps with 7% of the
pixels changed to another of its classes, so mIoU is far from 0 and 1 and a wrong class map moves it.
The model and its exports are the shared ``tiny_exports`` (tests/conftest.py),
whose subdivision keeps fewer cells than its grid has on these images.
"""

import json
import os
import sys

import cv2
import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from deploy_helpers import SUBDIVISION_POINTS, subdivision_cells
from tiny_data import make_tiny_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import predict as predict_cli  # noqa: E402
import val as val_cli  # noqa: E402

from paddleseg.deploy import EngineModel  # noqa: E402
from paddleseg.errors import ConfigError  # noqa: E402

AGREEMENT = 0.999
MIOU_TOL = 1e-3


@pytest.fixture(scope='module')
def tiny(tiny_exports, tmp_path_factory):
    """Tiny data whose labels are the shared model's noisy predictions, its
    config on that data, its weights and its exports."""
    from paddleseg.core.infer import predict_class_map
    from paddleseg.transforms import Compose, Normalize
    base = tmp_path_factory.mktemp('engines')
    data = make_tiny_cityscapes(str(base / 'data'), n_train=0, n_val=3)
    assert SUBDIVISION_POINTS < subdivision_cells(64, 128)  # the images' size
    cfg = str(base / 'tiny.yml')
    with open(cfg, 'w') as f:
        yaml.safe_dump({'_base_': tiny_exports.cfg, 'val_dataset': {'dataset_root': data}}, f)
    model = tiny_exports.model
    preds = {}
    for dp, _, fs in os.walk(os.path.join(data, 'leftImg8bit')):
        for f in fs:
            img = Compose([Normalize()])({'img': os.path.join(dp, f)})['img']
            with paddle.no_grad():
                preds[os.path.join(dp, f)] = predict_class_map(
                    model, paddle.to_tensor(img[None]))[0].numpy()
    classes = sorted(set(np.unique(np.stack(list(preds.values()))).tolist()))
    rng = np.random.default_rng(0)
    for path, pred in preds.items():  # 7% of the pixels get another predicted class
        noisy = np.where(rng.random(pred.shape) < 0.07,
                         rng.choice(classes, pred.shape), pred).astype(np.uint8)
        label = path.replace('leftImg8bit', 'gtFine').replace(
            '_gtFine.png', '_gtFine_labelTrainIds.png')
        assert os.path.isfile(label), label
        cv2.imwrite(label, noisy)
    assert len(classes) >= 3, classes  # a class map worth comparing
    return {'base': base, 'data': data, 'cfg': cfg, 'weights': tiny_exports.weights,
            'exports': tiny_exports}


def _export(tiny, fmt='paddle_legacy', output_op='argmax'):
    return tiny['exports'](fmt, output_op)


def _val(tiny, name, model_path, *extra, cfg=None):
    out = str(tiny['base'] / (name + '.json'))
    val_cli.main(['--config', cfg or tiny['cfg'], '--model_path', model_path,
                  '--device', 'cpu', '--save_json', out] + list(extra))
    with open(out) as f:
        return json.load(f)


def _dygraph(tiny, *extra, cfg=None):
    key = ('dygraph', cfg) + extra
    if key not in tiny:
        tiny[key] = _val(tiny, 'dygraph_{}'.format(len(tiny)), tiny['weights'],
                         *extra, cfg=cfg)
    return tiny[key]


def _assert_same_metrics(got, want):
    got_cm, want_cm = np.array(got['confusion']), np.array(want['confusion'])
    assert got_cm.sum() == want_cm.sum() > 0
    # pixels counted in another cell, over all pixels
    moved = np.abs(got_cm - want_cm).sum() / 2 / want_cm.sum()
    assert moved <= 1 - AGREEMENT, moved
    assert abs(got['miou'] - want['miou']) <= MIOU_TOL, (got['miou'], want['miou'])
    assert got['images'] == want['images'] == 3


def test_labels_make_a_meaningful_miou(tiny):
    miou = _dygraph(tiny)['miou']
    assert 0.3 < miou < 0.95, miou


@pytest.mark.parametrize('engine, fmt, onednn', [
    ('inference', 'paddle_legacy', 'true'),
    ('inference', 'paddle_legacy', 'false'),
    ('inference', 'paddle', 'true'),
    ('onnx', 'onnx', 'true'),
])
def test_val_engine_gives_dygraph_metrics(tiny, engine, fmt, onednn):
    got = _val(tiny, '{}_{}_{}'.format(engine, fmt, onednn), _export(tiny, fmt),
               '--engine', engine, '--enable_mkldnn', onednn)
    _assert_same_metrics(got, _dygraph(tiny))


# Share of pixels an argmax export's class map may differ from dygraph's
# when an eval resize is undone. Measured on these 3 images (Resize to
# 96x48 and back): nearest on the class map against bilinear on the logits
# differs on 0.18-0.24% of each image's pixels (0.20% over the three); the
# class map misaligned by one pixel (rolled by 1 along either axis, either
# way) differs on 0.23-0.92% of an image's (0.29-0.82% over the three).
RESIZE_AGREEMENT = 1 - 0.0025


def test_an_eval_resize_is_undone_on_the_class_map(tiny):
    """An eval transform that resizes: the argmax export's class map is
    resized back (nearest) to the image's size; only class borders may
    differ from dygraph's bilinear logits, by less than a one-pixel shift
    moves (:data:`RESIZE_AGREEMENT`)."""
    cfg = str(tiny['base'] / 'resize.yml')
    with open(cfg, 'w') as f:
        yaml.safe_dump({'_base_': os.path.basename(tiny['cfg']), 'val_dataset': {
            'transforms': [{'type': 'Resize', 'target_size': [96, 48]},
                           {'type': 'Normalize'}]}}, f)
    want = _dygraph(tiny, cfg=cfg)
    got = _val(tiny, 'resize_inference', _export(tiny), '--engine', 'inference',
               cfg=cfg)
    got_cm, want_cm = np.array(got['confusion']), np.array(want['confusion'])
    assert got_cm.sum() == want_cm.sum() == 3 * 64 * 128  # every label pixel counted
    assert abs(got['miou'] - want['miou']) < 0.005
    maps = {name: _predict(tiny, name, path, *extra, cfg=cfg) for name, path, extra in (
        ('resize_dygraph', tiny['weights'], ()),
        ('resize_engine', _export(tiny), ('--engine', 'inference')))}
    want, got = maps['resize_dygraph'], maps['resize_engine']
    assert sorted(got) == sorted(want) and len(want) == 3
    assert all(m.shape == (64, 128) for m in got.values())
    same = np.mean([(got[name] == want[name]).mean() for name in want])
    assert RESIZE_AGREEMENT <= same < 1, same


@pytest.mark.parametrize('output_op', ['none', 'softmax'])
def test_aug_eval_and_sliding_windows_need_scores_and_match_dygraph(tiny, output_op):
    model_dir = _export(tiny, output_op=output_op)
    aug = ('--aug_eval', '--scales', '0.75', '1.0', '--flip_horizontal')
    got = _val(tiny, 'aug_' + output_op, model_dir, '--engine', 'inference', *aug)
    _assert_same_metrics(got, _dygraph(tiny, *aug))
    slide = ('--is_slide', '--crop_size', '64', '48', '--stride', '48', '32')
    got = _val(tiny, 'slide_' + output_op, model_dir, '--engine', 'inference', *slide)
    _assert_same_metrics(got, _dygraph(tiny, *slide))


def _one_line_error(capsys, main, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if ': error: ' in line]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize('flags', [('--aug_eval',), ('--is_slide', '--crop_size', '64',
                                                     '48', '--stride', '32', '32')])
def test_a_class_map_export_refuses_what_needs_scores(tiny, capsys, flags):
    model_dir = _export(tiny)
    line = _one_line_error(capsys, val_cli.main, [
        '--config', tiny['cfg'], '--model_path', model_dir, '--engine', 'inference',
        '--device', 'cpu'] + list(flags))
    assert 'deploy.yaml' in line and '--output_op none' in line, line


def test_wrong_model_path_or_format_is_one_line(tiny, capsys):
    base = ['--config', tiny['cfg'], '--device', 'cpu']
    line = _one_line_error(capsys, val_cli.main, base + [
        '--model_path', tiny['weights'], '--engine', 'inference'])
    assert tiny['weights'] in line and 'deploy.yaml' in line, line
    line = _one_line_error(capsys, predict_cli.main, base + [
        '--model_path', _export(tiny), '--engine', 'onnx', '--image_path', tiny['data']])
    assert 'paddle_legacy' in line and '--format onnx' in line, line


def test_onnx_engine_without_onnxruntime_is_one_line(tiny, capsys, monkeypatch):
    os.makedirs(tiny['base'] / 'fake_onnx', exist_ok=True)
    with open(tiny['base'] / 'fake_onnx' / 'deploy.yaml', 'w') as f:
        yaml.safe_dump({'Deploy': {'model': 'model.onnx', 'format': 'onnx',
                                   'transforms': [], 'output_op': 'argmax'}}, f)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import raises
    line = _one_line_error(capsys, val_cli.main, [
        '--config', tiny['cfg'], '--device', 'cpu', '--engine', 'onnx',
        '--model_path', str(tiny['base'] / 'fake_onnx')])
    assert 'onnxruntime' in line and 'requirements-deploy.txt' in line, line


def _class_maps(folder):
    root = os.path.join(folder, 'pseudo_color_prediction')
    return {os.path.relpath(os.path.join(dp, f), root): np.array(Image.open(
        os.path.join(dp, f))) for dp, _, fs in os.walk(root) for f in fs}


def _predict(tiny, name, model_path, *extra, cfg=None):
    """predict.py on the tiny images into ``base/name`` (once); returns
    their class maps."""
    out = str(tiny['base'] / name)
    if not os.path.isdir(out):
        predict_cli.main(['--config', cfg or tiny['cfg'], '--model_path', model_path,
                          '--image_path', os.path.join(tiny['data'], 'leftImg8bit'),
                          '--save_dir', out, '--device', 'cpu'] + list(extra))
    return _class_maps(out)


@pytest.mark.parametrize('engine, fmt', [
    ('inference', 'paddle_legacy'), ('onnx', 'onnx')])
def test_predict_engine_writes_dygraph_class_maps(tiny, engine, fmt):
    want = _predict(tiny, 'predict_dygraph', tiny['weights'])
    got = _predict(tiny, 'predict_{}_{}'.format(engine, fmt), _export(tiny, fmt),
                   '--engine', engine)
    assert sorted(got) == sorted(want) and len(want) == 3
    for name in want:
        assert (got[name] == want[name]).mean() >= AGREEMENT, name
    assert sorted(os.listdir(tiny['base'] / 'predict_{}_{}'.format(engine, fmt) /
                             'added_prediction')) == \
        sorted(os.listdir(tiny['base'] / 'predict_dygraph' / 'added_prediction'))


def test_engine_model_outputs(tiny):
    """The class map comes as int64; softmax probabilities come back as
    their log, whose softmax is the probabilities again."""
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 128)).astype('float32')
    argmax = EngineModel(_export(tiny), 'inference')
    logits = EngineModel(_export(tiny, output_op='none'), 'inference')
    probs = EngineModel(_export(tiny, output_op='softmax'), 'inference')
    assert argmax.returns_class_map and not logits.returns_class_map
    cls = argmax(x)[0]
    assert cls.dtype == paddle.int64 and cls.shape == [1, 64, 128]
    z = logits(paddle.to_tensor(x))[0]
    assert z.shape == [1, 19, 64, 128]
    assert (paddle.argmax(z, axis=1) == cls).numpy().mean() >= AGREEMENT
    p = paddle.nn.functional.softmax(probs(x)[0], axis=1).numpy()
    np.testing.assert_allclose(p, paddle.nn.functional.softmax(z, axis=1).numpy(),
                               atol=1e-5)
    with pytest.raises(ConfigError, match='--engine onnx runs on the CPU'):
        EngineModel(_export(tiny), 'onnx', device='gpu:0')
    with pytest.raises(ConfigError, match='holds a paddle_legacy export'):
        EngineModel(_export(tiny), 'onnx')
