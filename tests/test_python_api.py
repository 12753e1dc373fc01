"""PaddleSeg 2.8's Python API, used as a PaddleSeg user script would:
``Config``, ``SegBuilder``, ``manager.*.components_dict``,
``paddleseg.utils.get_image_list``."""

import os

import cv2
import numpy as np
import paddle
import pytest

from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.errors import ConfigError, DatasetError
from paddleseg.utils import get_image_list
from tiny_data import make_tiny_cityscapes, write_tiny_config


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('api')
    root = make_tiny_cityscapes(str(base / 'cs'), n_train=4, n_val=2)
    path = write_tiny_config(str(base / 'tiny.yml'), root, iters=50,
                             batch_size=8)
    return {'base': base, 'root': root, 'path': path}


def _stack(dataset, indices, key):
    return paddle.to_tensor(np.stack([dataset[i][key] for i in indices]))


def test_a_paddleseg_style_training_script(tiny):
    paddle.seed(0)
    cfg = Config(tiny['path'], iters=2, batch_size=2)
    assert (cfg.iters, cfg.batch_size) == (2, 2)
    assert cfg.dic['iters'] == 2 and cfg.dic['model']['type'] == 'PointRendFPN'
    assert cfg.test_config == {}
    assert cfg.model_cfg['backbone']['type'] == 'ResNet18_vd'

    builder = SegBuilder(cfg)
    model = builder.model
    assert builder.model is model                       # built once
    assert model.num_classes == 19                      # from the dataset
    optimizer, scheduler = builder.optimizer, builder.lr_scheduler
    assert builder.optimizer is optimizer and builder.lr_scheduler is scheduler
    assert optimizer._learning_rate is scheduler
    assert ({id(p) for p in optimizer._parameter_list}
            == {id(p) for p in model.parameters()})
    assert scheduler.decay_steps == 1                   # iters 2 - warmup 1
    losses = builder.loss
    assert [type(loss).__name__ for loss in losses['types']] == [
        'CrossEntropyLoss', 'PointCrossEntropyLoss']
    assert losses['coef'] == [1.0, 1.0]
    train, val = builder.train_dataset, builder.val_dataset
    assert (len(train), len(val)) == (4, 2)
    assert builder.train_dataset_class is manager.DATASETS['Cityscapes']
    assert [type(t).__name__ for t in builder.val_transforms] == ['Normalize']

    # one step, as a user's loop would do it
    model.train()
    images = _stack(train, [0, 1], 'img')
    labels = _stack(train, [0, 1], 'label').astype('int64')
    outputs = model(images)
    assert len(outputs) == len(losses['types'])
    loss = sum(coef * fn(out, labels) for out, fn, coef in
               zip(outputs, losses['types'], losses['coef']))
    before = [(p, p.numpy().copy()) for p in model.parameters()
              if not p.stop_gradient]
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    scheduler.step()
    changed = [p for p, value in before if not np.array_equal(value, p.numpy())]
    assert len(changed) > len(before) // 2
    assert np.isfinite(float(loss))
    assert optimizer.get_lr() == pytest.approx(scheduler())

    model.eval()
    with paddle.no_grad():
        (logits,) = model(_stack(val, [0], 'img'))
    assert logits.shape == [1, 19, 64, 128]


def test_test_config_reaches_evaluate(tiny):
    from paddleseg.core.val import evaluate_details
    cfg = Config(tiny['path'], opts=[
        'test_config={is_slide: true, crop_size: [64, 64], stride: [64, 64]}'])
    assert cfg.test_config == {'is_slide': True, 'crop_size': [64, 64],
                               'stride': [64, 64]}
    cfg.test_config['is_slide'] = False                 # a copy
    assert cfg.dic['test_config']['is_slide'] is True
    builder = SegBuilder(cfg)
    result = evaluate_details(builder.model, builder.val_dataset, progress=False,
                              print_detail=False, **cfg.test_config)
    assert result['images'] == 2 and 0.0 <= result['miou'] <= 1.0


def test_config_errors_are_one_line_and_name_the_file(tiny):
    with pytest.raises(ConfigError) as info:
        Config(tiny['path'], opts=['test_config={is_slid: true}'])
    assert str(info.value) == (
        "{}: test_config.is_slid: paddleseg.core.val.evaluate has no argument "
        "'is_slid'; did you mean 'is_slide'? (from --opts)".format(
            tiny['path']))
    with pytest.raises(ConfigError, match=r"--opts: model\.backbon: unknown "
                       r"key 'backbon' in model; did you mean 'backbone'\?"):
        Config(tiny['path'], opts=['model.backbon.output_stride=16'])
    with pytest.raises(ConfigError, match='batch_size: must be a positive '
                       r'integer, got 0 \(from --batch_size\)'):
        Config(tiny['path'], batch_size=0)
    missing = os.path.join(str(tiny['base']), 'nope.yml')
    with pytest.raises(ConfigError, match='nope.yml: config file not found'):
        Config(missing)


def test_a_model_only_config_builds_the_model_but_not_the_training(tiny):
    path = str(tiny['base'] / 'eval.yml')
    with open(path, 'w') as f:
        f.write('model:\n  type: PointRendFPN\n  num_classes: 3\n'
                '  backbone: {type: ResNet18_vd}\n'
                '  backbone_indices: [0, 1, 2, 3]\n'
                '  fpn_inplanes: [64, 128, 256, 512]\n')
    cfg = Config(path)
    assert cfg.iters is None and cfg.batch_size is None
    builder = SegBuilder(cfg)
    assert builder.model.num_classes == 3
    for name, key in (('optimizer', 'optimizer'), ('loss', 'loss'),
                      ('lr_scheduler', 'lr_scheduler'),
                      ('train_dataset', 'train_dataset')):
        with pytest.raises(ConfigError, match='^{}: {}: is required for '
                           'training$'.format(path, key)):
            getattr(builder, name)
    with pytest.raises(ConfigError, match='^{}: val_dataset: is '
                       'required$'.format(path)):
        builder.val_transforms
    with pytest.raises(ConfigError, match=r'eval.yml: train_dataset: is '
                       r'required for training$'):
        Config(path, for_training=True)


def test_components_dict_is_a_name_to_class_dict():
    models = manager.MODELS.components_dict
    assert isinstance(models, dict)
    from paddleseg.models import PointRend
    assert models['PointRendFPN'] is PointRend and models['PointRend'] is PointRend
    assert 'ResNet101_vd' in manager.BACKBONES.components_dict
    assert 'PolynomialDecay' in manager.LR_SCHEDULERS.components_dict
    models['_Injected'] = object                        # a copy
    assert '_Injected' not in manager.MODELS
    assert manager.ComponentManager is manager.Registry


def test_get_image_list(tmp_path):
    folder = tmp_path / 'imgs'
    (folder / 'sub').mkdir(parents=True)
    image = np.zeros((4, 4, 3), np.uint8)
    for name in ('b.png', 'a.jpg', os.path.join('sub', 'c.png')):
        cv2.imwrite(str(folder / name), image)
    (folder / 'notes.txt').write_text('not an image')
    images, image_dir = get_image_list(str(folder))
    assert images == sorted(str(folder / n) for n in
                            ('a.jpg', 'b.png', os.path.join('sub', 'c.png')))
    assert image_dir == str(folder)
    assert get_image_list(str(folder / 'a.jpg')) == ([str(folder / 'a.jpg')],
                                                     None)
    listing = tmp_path / 'list.txt'
    listing.write_text('{}\n\n{}\n'.format(folder / 'b.png', folder / 'a.jpg'))
    assert get_image_list(str(listing)) == (
        [str(folder / 'b.png'), str(folder / 'a.jpg')], None)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match='no images found'):
        get_image_list(str(tmp_path / 'empty'))


@pytest.mark.parametrize('script', ['train.py', 'val.py'])
def test_a_misspelled_test_config_key_stops_the_entry_scripts_first(
        tmp_path, capsys, script):
    import train as train_cli
    import val as val_cli
    path = write_tiny_config(str(tmp_path / 'slid.yml'), str(tmp_path / 'none'),
                             extra='test_config: {is_slid: true}\n')
    out = tmp_path / 'out'
    if script == 'train.py':
        main, argv = train_cli.main, ['--save_dir', str(out), '--do_eval']
    else:
        main, argv = val_cli.main, ['--model_path', str(tmp_path / 'w.pdparams')]
    with pytest.raises(SystemExit) as info:
        main(['--config', path, '--device', 'cpu'] + argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "{}: error: {}: test_config.is_slid: paddleseg.core.val.evaluate has "
        "no argument 'is_slid'; did you mean 'is_slide'?".format(script, path)]
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope='module')
def tiny_weights(tiny):
    from tiny_data import seeded_model
    path = str(tiny['base'] / 'seeded.pdparams')
    paddle.save(seeded_model(tiny['path'], 3).state_dict(), path)
    return path


def test_val_py_applies_the_test_config_of_the_yaml_and_flags_override_it(
        tiny, tiny_weights, capsys):
    """val.py evaluates with the config's test_config (here sliding windows
    of 32x32), as evaluate_details does with those arguments; a flag given
    (--crop_size, --stride) overrides the config's value."""
    import val as val_cli
    from paddleseg.core.val import evaluate_details
    plain = tiny['path']
    slide = write_tiny_config(
        str(tiny['base'] / 'slide.yml'), tiny['root'],
        extra='test_config: {is_slide: true, crop_size: [32, 32], '
              'stride: [32, 32]}\n')

    def val_py(path, *flags):
        return val_cli.run(val_cli.parse_args([
            '--config', path, '--model_path', tiny_weights, '--device', 'cpu']
            + list(flags)))['confusion']

    def direct(**kwargs):
        builder = SegBuilder(Config(plain))
        model = builder.model
        model.set_state_dict(paddle.load(tiny_weights))  # val.py's weights
        return evaluate_details(model, builder.val_dataset, progress=False,
                                print_detail=False, **kwargs)['confusion']

    whole, windows = val_py(plain), val_py(slide)
    assert np.array_equal(whole, direct())
    assert np.array_equal(windows, direct(is_slide=True, crop_size=[32, 32],
                                          stride=[32, 32]))
    assert not np.array_equal(whole, windows)      # the test_config mattered
    overridden = val_py(slide, '--crop_size', '64', '64', '--stride', '64', '64')
    assert np.array_equal(overridden, direct(is_slide=True, crop_size=[64, 64],
                                             stride=[64, 64]))
    assert not np.array_equal(overridden, windows)
    # --aug_eval given, --scales not: the config's scales stand
    scaled = write_tiny_config(str(tiny['base'] / 'scaled.yml'), tiny['root'],
                               extra='test_config: {scales: [0.5, 1.0]}\n')
    multi = val_py(scaled, '--aug_eval')
    assert np.array_equal(multi, direct(aug_eval=True, scales=[0.5, 1.0]))
    assert not np.array_equal(multi, whole)
    capsys.readouterr()
