"""Every config in configs/ loads, checks, builds and runs one forward."""

import glob
import os

import paddle
import pytest

from paddleseg.cli.build import without_pretrained
from paddleseg.cvlibs import Config, SegBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, 'configs', 'pointrendfpn',
                    'pointrend_resnet101_os8_cityscapes_512×1024_80k.yml')
# the seed config's ASCII spelling (512x1024) is built once, as MAIN:
# test_the_seed_recipe checks that it reads the same
ALIAS = MAIN.replace('×', 'x')
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.yml'),
                                      recursive=True)
                 if os.sep + '_base_' + os.sep not in p and p != ALIAS)


def test_the_seed_config_exists_and_is_found():
    assert MAIN in CONFIGS and os.path.isfile(ALIAS)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_builds_and_forwards(path):
    cfg = Config(path, for_training=True)
    without_pretrained(cfg.dic)
    builder = SegBuilder(cfg)
    model = builder.model
    assert builder.loss and builder.optimizer
    x = paddle.rand([1, 3, 64, 128])
    model.eval()
    with paddle.no_grad():
        (logits,) = model(x)
    assert logits.shape == [1, model.num_classes, 64, 128]
    model.train()
    with paddle.no_grad():
        coarse, (point_logits, points) = model(paddle.rand([2, 3, 64, 64]))
    assert coarse.shape == [2, model.num_classes, 64, 64]
    assert point_logits.shape[:2] == [2, model.num_classes]
    assert points.shape == [2, point_logits.shape[2], 2]


def load_and_check(path):
    return Config(path, for_training=True).dic


def test_the_seed_recipe():
    cfg = load_and_check(MAIN)
    assert cfg['iters'] == 80000 and cfg['batch_size'] == 4
    model = cfg['model']
    assert model['type'] == 'PointRendFPN' and model['num_classes'] == 19
    assert model['backbone']['type'] == 'ResNet101_vd'
    assert model['backbone']['output_stride'] == 8
    assert cfg['optimizer'] == {'type': 'sgd', 'momentum': 0.9,
                                'weight_decay': 5.0e-4}
    sched = cfg['lr_scheduler']
    assert (sched['learning_rate'], sched['power'], sched['warmup_iters']) == \
        (0.01, 0.9, 1000)
    assert [t['type'] for t in cfg['loss']['types']] == \
        ['CrossEntropyLoss', 'PointCrossEntropyLoss']
    crop = [t for t in cfg['train_dataset']['transforms']
            if t['type'] == 'RandomPaddingCrop'][0]
    assert crop['crop_size'] == [1024, 512]
    assert cfg['train_dataset']['type'] == 'Cityscapes'
    alias = load_and_check(ALIAS)
    assert alias == cfg
