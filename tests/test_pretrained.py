"""`pretrained:` from a URL (served on 127.0.0.1) and from a local file."""

import tarfile

import numpy as np
import paddle
import pytest

from paddleseg.cvlibs import builder
from paddleseg.errors import CheckpointError
from paddleseg.models.backbones import ResNet18_vd


def _filled_resnet18(tmp_path):
    net = ResNet18_vd(output_stride=8)
    rng = np.random.default_rng(0)
    state = {k: paddle.to_tensor(rng.normal(size=v.shape).astype('float32'))
             for k, v in net.state_dict().items()}
    path = tmp_path / 'model.pdparams'
    paddle.save(state, str(path))
    return path, {k: v.numpy() for k, v in state.items()}


def _assert_loaded(net, expected):
    got = {k: v.numpy() for k, v in net.state_dict().items()}
    assert got.keys() == expected.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_backbone_pretrained_from_url_through_the_config(server, tmp_path,
                                                         monkeypatch):
    weights, expected = _filled_resnet18(tmp_path)
    with tarfile.open(server.root / 'resnet18_vd_ssld.tar.gz', 'w:gz') as tar:
        tar.add(str(weights), arcname='resnet18_vd_ssld/model.pdparams')
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path / 'cache'))
    url = server.url + '/resnet18_vd_ssld.tar.gz'
    cfg = {'model': {'type': 'PointRendFPN', 'num_classes': 19,
                     'backbone': {'type': 'ResNet18_vd', 'pretrained': url},
                     'backbone_indices': [0, 1, 2, 3],
                     'fpn_inplanes': [64, 128, 256, 512]}}
    model = builder.build_model(cfg)
    _assert_loaded(model.backbone, expected)
    # a second build uses the cache: no new request
    builder.build_model(cfg)
    assert server.requests == ['/resnet18_vd_ssld.tar.gz']


def test_backbone_pretrained_from_local_file_reports_mismatches(tmp_path, capfd):
    weights, expected = _filled_resnet18(tmp_path)
    state = paddle.load(str(weights))
    state['fc.weight'] = paddle.zeros([2, 2])          # an ImageNet head
    del state['bb_3_1.conv1._batch_norm._variance']    # a missing key
    paddle.save(state, str(weights))
    net = ResNet18_vd(pretrained=str(weights))
    out = capfd.readouterr().out
    assert 'Loaded 114/115 tensors into ResNet_vd' in out
    assert '1 missing: bb_3_1.conv1._batch_norm._variance' in out
    assert '1 unexpected: fc.weight' in out
    del expected['bb_3_1.conv1._batch_norm._variance']
    got = net.state_dict()
    for k in expected:
        np.testing.assert_array_equal(got[k].numpy(), expected[k], err_msg=k)


def test_pretrained_url_that_fails_is_a_clear_error(server, tmp_path, monkeypatch):
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(CheckpointError, match='HTTP 404'):
        ResNet18_vd(pretrained=server.url + '/missing.tar.gz')
