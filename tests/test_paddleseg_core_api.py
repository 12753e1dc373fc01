"""PaddleSeg 2.8's ``paddleseg.core`` functions, used as a PaddleSeg 2.8
user script uses them: ``train`` with its keywords (and its positional
``model, train_dataset, val_dataset, optimizer``), ``evaluate`` and its
5-tuple, ``predict`` writing its two folders."""

import inspect
import json
import os

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

import paddleseg.core as core
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.errors import ConfigError
from paddleseg.transforms import Compose
from paddleseg.utils import get_image_list
from paddleseg.utils.env import seed_everything
from tiny_data import make_tiny_cityscapes, seeded_model, write_tiny_config


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('psapi')
    root = make_tiny_cityscapes(str(base / 'cs'), n_train=4, n_val=2)
    path = write_tiny_config(str(base / 'tiny.yml'), root, iters=2, batch_size=2)
    return {'base': base, 'root': root, 'path': path}


def test_the_functions_are_paddlesegs():
    assert list(inspect.signature(core.evaluate).parameters)[:14] == [
        'model', 'eval_dataset', 'aug_eval', 'scales', 'flip_horizontal',
        'flip_vertical', 'is_slide', 'stride', 'crop_size', 'precision', 'amp_level',
        'num_workers', 'print_detail', 'auc_roc']
    params = inspect.signature(core.predict).parameters
    assert list(params) == [
        'model', 'model_path', 'transforms', 'image_list', 'image_dir', 'save_dir',
        'aug_pred', 'scales', 'flip_horizontal', 'flip_vertical', 'is_slide', 'stride',
        'crop_size', 'custom_color']
    assert (params['save_dir'].default, params['flip_horizontal'].default) == ('output', True)
    assert callable(core.train) and core.train.__module__ == 'paddleseg.core.train'
    # ours stay reachable under their own names
    from paddleseg.core.predict import collect_images, predict_images
    from paddleseg.core.val import evaluate_details
    assert core.predict_images is predict_images and core.evaluate_details is evaluate_details
    assert callable(collect_images)


def test_a_paddleseg_28_script_trains_evaluates_and_predicts(tiny, tmp_path, capsys):
    # every generator the run draws from (the random crops and flips are
    # numpy's and python's), so the result does not depend on earlier tests
    seed_everything(0)
    cfg = Config(tiny['path'], opts=['test_config={is_slide: true, crop_size: [64, 64], '
                                     'stride: [64, 64]}'])
    builder = SegBuilder(cfg)
    model = builder.model
    save_dir = str(tmp_path / 'output')
    # as PaddleSeg 2.8's tools/train.py calls it
    result = core.train(
        model, builder.train_dataset, val_dataset=builder.val_dataset,
        optimizer=builder.optimizer, save_dir=save_dir, iters=cfg.iters,
        batch_size=cfg.batch_size, resume_model=None, save_interval=2, log_iters=1,
        num_workers=0, use_vdl=False, use_ema=False, losses=builder.loss,
        keep_checkpoint_max=1, test_config=cfg.test_config, precision='fp32',
        amp_level='O1', profiler_options=None, to_static_training=False)
    out = capsys.readouterr().out
    # val_dataset given: evaluated (as PaddleSeg does), best_model kept
    assert '[EVAL]' in out and result['iter'] == 2 and 0.0 <= result['miou'] <= 1.0
    assert sorted(os.listdir(save_dir)) == ['best_model', 'iter_2']
    assert {'model.pdparams', 'model.pdopt'} <= set(os.listdir(os.path.join(save_dir,
                                                                          'iter_2')))

    miou, acc, class_iou, class_precision, kappa = core.evaluate(
        model, builder.val_dataset, print_detail=False, **cfg.test_config)
    details = core.evaluate_details(model, builder.val_dataset, progress=False,
                                    print_detail=False, **cfg.test_config)
    assert miou == details['miou'] and acc == details['acc'] and kappa == details['kappa']
    np.testing.assert_array_equal(class_iou, details['class_iou'])
    np.testing.assert_array_equal(class_precision, details['class_precision'])
    assert class_iou.shape == (19,) and miou == pytest.approx(result['miou'])

    image_list, image_dir = get_image_list(os.path.join(tiny['root'], 'leftImg8bit', 'val'))
    fresh = SegBuilder(Config(tiny['path'])).model        # predict loads the weights
    pred_dir = str(tmp_path / 'pred')
    core.predict(fresh, os.path.join(save_dir, 'best_model', 'model.pdparams'),
                 Compose(builder.val_transforms), image_list, image_dir=image_dir,
                 save_dir=pred_dir)
    for folder, ext in (('pseudo_color_prediction', '.png'), ('added_prediction', '.jpg')):
        written = sorted(os.path.relpath(os.path.join(d, f), os.path.join(pred_dir, folder))
                         for d, _, files in os.walk(os.path.join(pred_dir, folder))
                         for f in files)
        assert written == sorted(os.path.splitext(os.path.relpath(p, image_dir))[0] + ext
                                 for p in image_list)
    for name, value in model.state_dict().items():   # the trained weights were loaded
        np.testing.assert_array_equal(fresh.state_dict()[name].numpy(), value.numpy())
    _check_pictures(model, builder.val_transforms, image_list, image_dir, pred_dir)

    # Two iterations may leave a one-class map (which class count depends on
    # the CPU and its thread count), against which a wrong picture can pass.
    # Random weights give several classes, so this comparison can fail.
    varied = seeded_model(tiny['path'], 1)
    weights = str(tmp_path / 'varied.pdparams')
    paddle.save(varied.state_dict(), weights)
    core.predict(SegBuilder(Config(tiny['path'])).model, weights,
                 Compose(builder.val_transforms), image_list, image_dir=image_dir,
                 save_dir=str(tmp_path / 'varied'))
    classes = _check_pictures(varied, builder.val_transforms, image_list, image_dir,
                              str(tmp_path / 'varied'))
    assert len(classes) >= 2, classes


def _check_pictures(model, transforms, image_list, image_dir, pred_dir):
    """Each colour map holds ``model``'s class map (pixel values: class
    ids, palette: Cityscapes' colours), and each overlay is 0.6 of the image
    plus 0.4 of the colour map (within JPEG's rounding). Returns the classes
    seen."""
    model.eval()
    classes = set()
    for path in image_list:
        stem = os.path.splitext(os.path.relpath(path, image_dir))[0]
        x = Compose(transforms)({'img': path})['img'][np.newaxis]
        with paddle.no_grad():
            want = paddle.argmax(model(paddle.to_tensor(x))[0], axis=1)[0].numpy()
        color = Image.open(os.path.join(pred_dir, 'pseudo_color_prediction', stem + '.png'))
        assert color.mode == 'P'
        got = np.array(color)
        assert got.shape == want.shape == (64, 128)
        np.testing.assert_array_equal(got, want)
        classes |= set(np.unique(got).tolist())
        palette = np.array(color.getpalette()[:3 * 19]).reshape(19, 3)
        assert palette[0].tolist() == [128, 64, 128] and palette[13].tolist() == [0, 0, 142]
        image = cv2.imread(path).astype(np.float64)                  # BGR
        added = cv2.imread(os.path.join(pred_dir, 'added_prediction', stem + '.jpg'))
        assert added.shape == image.shape

        def off(class_map, weight=0.6):   # mean distance to such a blend
            return np.abs(added - weight * image - (1 - weight) *
                          palette[class_map][:, :, ::-1]).mean()
        # JPEG's rounding of these noisy pictures is ~5 levels; the blend of
        # another class map, or with other weights, is much farther
        assert off(got) < 8, off(got)
        assert 1.5 * off(got) < min(off((got + 1) % 19), off(got, 0.4), off(got, 1.0))
    return classes


def test_train_takes_paddlesegs_positional_arguments(tiny, tmp_path):
    builder = SegBuilder(Config(tiny['path'], iters=2, batch_size=1))
    # model, train_dataset, val_dataset, optimizer, save_dir, iters, batch_size
    core.train(builder.model, builder.train_dataset, None, builder.optimizer,
               str(tmp_path), 2, 1, losses=builder.loss, log_iters=1)
    with open(tmp_path / 'iter_2' / 'meta.json') as f:
        meta = json.load(f)
    assert (meta['iter'], meta['batch_size']) == (2, 1)
    assert not (tmp_path / 'best_model').exists()     # no val_dataset, no evaluation


@pytest.mark.parametrize('kwargs, message', [
    ({'use_ema': True}, 'use_ema=True is not supported'),
    ({'profiler_options': 'batch_range=[1,2]'}, 'profiler_options=.* is not supported'),
    ({'to_static_training': True}, 'to_static_training=True is not supported'),
    ({'optimizer': None}, 'optimizer is required'),
    ({'losses': None}, 'losses is required'),
    ({'test_config': {'auc_roc': True}}, 'auc_roc: true is not supported'),
    ({'test_config': {'is_slid': True}}, 'is_slid: not an argument'),
    ({'test_config': {}, 'eval_kwargs': {}}, 'give test_config or eval_kwargs, not both'),
])
def test_train_refuses_what_it_does_not_support_before_training(tiny, tmp_path, kwargs,
                                                                message):
    builder = SegBuilder(Config(tiny['path']))
    args = dict(optimizer=builder.optimizer, losses=builder.loss, save_dir=str(tmp_path),
                iters=1, batch_size=1)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        core.train(builder.model, builder.train_dataset, **args)
    assert os.listdir(tmp_path) == []


def test_evaluate_refuses_auc_roc(tiny):
    builder = SegBuilder(Config(tiny['path']))
    with pytest.raises(ConfigError, match='auc_roc=True is not supported'):
        core.evaluate(builder.model, builder.val_dataset, auc_roc=True)
