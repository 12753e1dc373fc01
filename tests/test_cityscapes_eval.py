"""Cityscapes label-id results and parity with the official evaluation.

A tiny Cityscapes-layout set holds consistent ``*_gtFine_labelIds.png`` and
``*_gtFine_labelTrainIds.png``; our mIoU (train ids, 255 ignored) must equal
cityscapesscripts' ``averageScoreClasses`` computed on label ids.
"""

import fnmatch
import math
import os
import sys

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

pytest.importorskip('cityscapesscripts', reason='cityscapesscripts (requirements.txt) is not '
                    'installed; these tests compare with its official evaluation')
from cityscapesscripts.helpers.labels import id2label, labels, trainId2label  # noqa: E402

from tiny_data import write_tiny_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'utils'))
import eval_cityscapes as eval_tool  # noqa: E402
import predict as predict_cli  # noqa: E402
import val as val_cli  # noqa: E402

from paddleseg.datasets import Cityscapes  # noqa: E402
from paddleseg.errors import DatasetError  # noqa: E402
from paddleseg.utils import cityscapes as cs  # noqa: E402
from paddleseg.utils.metrics import (confusion_matrix,  # noqa: E402
                                     metrics_from_confusion)

H, W = 64, 128
IGNORED_IDS = [label.id for label in labels
               if label.id >= 0 and label.ignoreInEval]  # 0-6, 9, 10, ...


def train_ids_of(label_ids):
    """Label ids -> train ids (255 for every ignored label), from the table."""
    lut = np.full(256, 255, np.uint8)
    for label in labels:
        if label.id >= 0 and 0 <= label.trainId < 19:
            lut[label.id] = label.trainId
    return lut[label_ids]


def make_gt(root, n=3, seed=0):
    """``gtFine/val/<city>/`` with both label kinds, and the images.

    Road, sidewalk, building, sky, car and (first image only) person; a
    frame of ignored labels (several ignored ids) and some scattered ones.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        city = ('lindau', 'munster')[i % 2]
        core = '{}_{:06d}_{:06d}'.format(city, i, 19)
        ids = np.full((H, W), 7, np.uint8)                   # road
        ids[:H // 4] = 23                                    # sky
        ids[H // 4:H // 2, W // 2:] = 11                     # building
        ids[H // 2 + int(rng.integers(0, 8)):, :W // 3] = 8  # sidewalk
        x0 = int(rng.integers(W // 3, W - W // 4))
        ids[H // 3:H // 3 + H // 4, x0:x0 + W // 5] = 26     # car
        if i == 0:
            ids[H // 4:H // 2, 5:9] = 24                     # person
        ids[-4:] = 1                                         # ego vehicle
        ids[:, :2] = 0                                       # unlabeled
        scatter = rng.random((H, W)) < 0.03
        ids[scatter] = rng.choice(IGNORED_IDS, scatter.sum())
        folder = os.path.join(root, 'gtFine', 'val', city)
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, core + '_gtFine_labelIds.png'), ids)
        cv2.imwrite(os.path.join(folder, core + '_gtFine_labelTrainIds.png'),
                    train_ids_of(ids))
        img = np.asarray(Cityscapes.palette())[train_ids_of(ids)][:, :, ::-1]
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        folder = os.path.join(root, 'leftImg8bit', 'val', city)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, core + '_leftImg8bit.png')
        cv2.imwrite(path, img)
        out.append((path, train_ids_of(ids)))
    return out


@pytest.fixture(scope='module')
def gt(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cityscapes'))
    return root, make_gt(root)


def ours(preds, gts):
    cm = sum(confusion_matrix(p, g, 19, 255) for p, g in zip(preds, gts))
    return metrics_from_confusion(cm)


def assert_same(result, official):
    """Same mIoU, and the same IoU (or NaN) for each of the 19 classes."""
    assert official['averageScoreClasses'] == pytest.approx(result['miou'], abs=1e-4)
    for train_id, iou in enumerate(result['class_iou']):
        theirs = official['classScores'][trainId2label[train_id].name]
        if math.isnan(iou):
            assert math.isnan(theirs), trainId2label[train_id].name
        else:
            assert theirs == pytest.approx(iou, abs=1e-9), trainId2label[train_id].name


def test_label_id_table_is_the_official_one():
    lut = cs.label_id_lut()
    for train_id in range(19):
        assert id2label[int(lut[train_id])].trainId == train_id
        assert lut[train_id] == trainId2label[train_id].id
    assert lut[:19].tolist() == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24,
                                 25, 26, 27, 28, 31, 32, 33]
    np.testing.assert_array_equal(train_ids_of(cs.to_label_ids(np.arange(19))),
                                  np.arange(19))
    # the basis of the parity: the official evaluation scores exactly the
    # labels that have a train id; all others are ignored like our 255
    assert {l.id for l in labels if l.id >= 0 and not l.ignoreInEval} == \
        {l.id for l in labels if l.id >= 0 and 0 <= l.trainId < 19}
    with pytest.raises(ValueError, match='train ids'):
        cs.to_label_ids(np.array([0, 19]))


def test_result_names_match_the_official_pattern(tmp_path):
    path = cs.result_path(str(tmp_path), '/data/leftImg8bit/val/lindau/'
                          'lindau_000001_000019_leftImg8bit.png')
    assert path == str(tmp_path / 'lindau' / 'lindau_000001_000019_pred_labelIds.png')
    assert fnmatch.fnmatch(os.path.basename(path), 'lindau_000001_000019*.png')
    assert cs.result_path('r', '/x/y/photo.jpg') == os.path.join(
        'r', 'y', 'photo_pred_labelIds.png')


def test_official_miou_equals_ours_on_constructed_predictions(gt, tmp_path, monkeypatch):
    """Predictions with every case: errors, a class absent from the ground
    truth but predicted (IoU 0), classes absent from both (NaN, left out of
    the mean), a labelled class never predicted (IoU 0), and anything at
    ignored pixels."""
    root, items = gt
    rng = np.random.default_rng(1)
    preds = []
    results = str(tmp_path / 'results')
    for k, (image, label) in enumerate(items):
        pred = np.where(label == 255, rng.integers(0, 19, label.shape), label)
        noise = rng.random(label.shape) < 0.1
        pred[noise] = rng.choice([0, 1, 2, 8, 10, 13], noise.sum())
        pred[40:44, 60:70] = 15                # bus: predicted, never labelled
        pred[label == 11] = 0                  # person: labelled, never predicted
        preds.append(pred)
        cs.save_label_ids(pred, image, results)
    result = ours(preds, [label for _, label in items])
    assert result['class_iou'][15] == 0 and result['class_iou'][11] == 0
    assert np.isnan(result['class_iou'][16])  # train: absent from both
    assert 0.3 < result['miou'] < 0.9

    official = cs.evaluate_official(root, results)
    assert_same(result, official)
    print('ours {:.6f} official {:.6f}'.format(result['miou'],
                                               official['averageScoreClasses']))

    # the script's own discovery (CITYSCAPES_RESULTS) finds the same files
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
    monkeypatch.setenv('CITYSCAPES_RESULTS', results)
    args = ev.CArgs()
    args.predictionPath = args.predictionWalk = None
    gt_file = os.path.join(root, 'gtFine', 'val', 'lindau',
                           'lindau_000000_000019_gtFine_labelIds.png')
    assert ev.getPrediction(args, gt_file) == cs.result_path(results, items[0][0])


def test_official_tool_prints_the_same_miou(gt, tmp_path, capsys):
    root, items = gt
    results = str(tmp_path / 'results')
    for image, label in items:
        cs.save_label_ids(np.where(label == 255, 0, label), image, results)
    report = tmp_path / 'official.json'
    official = eval_tool.main(['--dataset_root', root, '--results', results,
                               '--json', str(report)])
    assert official['averageScoreClasses'] == 1.0 and report.exists()
    assert 'official mIoU (averageScoreClasses): 1.0000' in capsys.readouterr().out
    assert not os.path.exists(os.path.join(root, 'evaluationResults'))


def test_missing_prediction_is_an_error(gt, tmp_path):
    root, items = gt
    results = str(tmp_path / 'results')
    image, label = items[0]
    cs.save_label_ids(label * 0, image, results)
    with pytest.raises(DatasetError, match='official Cityscapes evaluation'):
        cs.evaluate_official(root, results)


class ColourOracle(paddle.nn.Layer):
    """Class of the nearest palette colour, per pixel (a 1x1 convolution):
    right on clean pixels, wrong on some noisy ones. Needs no training."""

    def __init__(self, num_classes=19):
        super().__init__()
        self.num_classes = num_classes
        self.conv = paddle.nn.Conv2D(3, num_classes, 1)

    def set_palette(self):
        rgb = np.asarray(Cityscapes.PALETTE, np.float32) / 127.5 - 1  # Normalize
        self.conv.weight.set_value((2 * rgb)[:, :, None, None])
        self.conv.bias.set_value(-(rgb ** 2).sum(1))

    def forward(self, x):
        return [self.conv(x)]


def write_model(folder, model):
    weights = os.path.join(folder, 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    return weights


@pytest.fixture(scope='module')
def oracle_model(gt, tmp_path_factory):
    from paddleseg.cvlibs import manager
    if 'ColourOracle' not in manager.MODELS:
        manager.MODELS.add_component(ColourOracle, name='ColourOracle')
    root, _ = gt
    base = tmp_path_factory.mktemp('oracle')
    cfg = base / 'oracle.yml'
    cfg.write_text('_base_: {}\nval_dataset:\n  dataset_root: {}\nmodel:\n'
                   '  type: ColourOracle\n'.format(
                       os.path.join(ROOT, 'configs', '_base_', 'cityscapes.yml'), root))
    model = ColourOracle()
    model.set_palette()
    return str(cfg), write_model(str(base), model)


@pytest.fixture(scope='module')
def tiny_model(gt, tmp_path_factory):
    """A ResNet18_vd PointRendFPN with fixed random weights (no training)."""
    from paddleseg.cvlibs import Config, SegBuilder
    root, _ = gt
    base = tmp_path_factory.mktemp('model')
    cfg_path = write_tiny_config(str(base / 'tiny.yml'), root)
    paddle.seed(7)
    model = SegBuilder(Config(cfg_path)).model
    return cfg_path, write_model(str(base), model)


@pytest.mark.parametrize('which', ['oracle_model', 'tiny_model'])
def test_val_py_miou_equals_the_official_one(gt, which, request, tmp_path):
    """val.py --save_cityscapes, then the official evaluation: a model
    that is mostly right (nearest colour) and a PointRend with random weights."""
    root, items = gt
    cfg, weights = request.getfixturevalue(which)
    results = str(tmp_path / 'cs_val')
    result = val_cli.run(val_cli.parse_args([
        '--config', cfg, '--model_path', weights, '--device', 'cpu',
        '--save_cityscapes', results]))
    written = sorted(os.path.relpath(os.path.join(d, f), results)
                     for d, _, files in os.walk(results) for f in files)
    assert written == ['lindau/lindau_000000_000019_pred_labelIds.png',
                       'lindau/lindau_000002_000019_pred_labelIds.png',
                       'munster/munster_000001_000019_pred_labelIds.png']
    for name in written:
        png = Image.open(os.path.join(results, name))
        assert png.mode == 'L' and png.size == (W, H)
        assert set(np.unique(np.asarray(png))) <= set(cs.label_id_lut()[:19].tolist())
    if which == 'oracle_model':
        assert 0.5 < result['miou'] < 1
    official = cs.evaluate_official(root, results)
    assert_same(result, official)
    print(which, 'val.py {:.6f} official {:.6f}'.format(result['miou'],
                                                 official['averageScoreClasses']))

    # predict.py --save_cityscapes writes the same label-id maps
    pred_dir = str(tmp_path / 'cs_pred')
    predict_cli.run(predict_cli.parse_args([
        '--config', cfg, '--model_path', weights, '--device', 'cpu',
        '--image_path', os.path.join(root, 'leftImg8bit', 'val'),
        '--save_dir', str(tmp_path / 'pred'), '--save_cityscapes', pred_dir]))
    for name in written:
        np.testing.assert_array_equal(
            np.asarray(Image.open(os.path.join(pred_dir, name))),
            np.asarray(Image.open(os.path.join(results, name))), err_msg=name)
