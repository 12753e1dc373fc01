"""ResNet_vd: strides, channels, and PaddleSeg's state-dict layout."""

import json
import os

import paddle
import pytest

from paddleseg.cvlibs import manager
from paddleseg.models.backbones import ResNet_vd

SHAPES = os.path.join(os.path.dirname(__file__), 'golden',
                      'paddleseg_state_dict_shapes.json')


@pytest.mark.parametrize('output_stride,sizes', [
    (8, [16, 8, 8, 8]), (16, [16, 8, 4, 4]), (32, [16, 8, 4, 2])])
def test_output_stride_by_dilation(output_stride, sizes):
    net = ResNet_vd(layers=18, output_stride=output_stride)
    net.eval()
    with paddle.no_grad():
        feats = net(paddle.rand([1, 3, 64, 64]))
    assert [f.shape[2] for f in feats] == sizes
    assert [f.shape[1] for f in feats] == net.feat_channels == [64, 128, 256, 512]


def test_bottleneck_channels_and_bad_arguments():
    assert ResNet_vd(layers=50).feat_channels == [256, 512, 1024, 2048]
    with pytest.raises(ValueError, match='output_stride'):
        ResNet_vd(layers=18, output_stride=4)
    with pytest.raises(ValueError, match='layers'):
        ResNet_vd(layers=19)


@pytest.mark.parametrize('name', ['ResNet18_vd', 'ResNet34_vd', 'ResNet50_vd',
                                  'ResNet101_vd', 'ResNet152_vd'])
def test_state_dict_matches_paddleseg(name):
    """Same keys and shapes as PaddleSeg 2.8.0's (recorded by
    tests/golden/make_pointrend_golden.py), so its ImageNet weights load."""
    with open(SHAPES) as f:
        reference = json.load(f)[name]
    net = manager.BACKBONES.get(name)(output_stride=8)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert sorted(set(ours) - set(reference)) == []
    assert sorted(set(reference) - set(ours)) == []
    assert ours == reference
