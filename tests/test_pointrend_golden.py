"""Our PointRend gives PaddleSeg 2.8.0's logits from the same weights.

The fixtures come from tests/golden/make_pointrend_golden.py run against PyPI
paddleseg 2.8.0; both sides fill the weights with golden_weights.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddleseg import mkl_dispatch
from paddleseg.models import PointRend
from paddleseg.models.backbones import ResNet18_vd, ResNet101_vd

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
sys.path.insert(0, GOLDEN)
import golden_weights  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope='module')
def golden():
    return dict(np.load(os.path.join(GOLDEN, 'pointrend_r18_golden.npz')))


@pytest.fixture(scope='module')
def model(golden):
    net = PointRend(num_classes=19, backbone=ResNet18_vd(output_stride=8),
                    backbone_indices=[0, 1, 2, 3],
                    fpn_inplanes=[64, 128, 256, 512])
    return golden_weights.fill_state_dict(net, int(golden['seed']))


def test_eval_subdivision_logits_match(model, golden):
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(golden['eval_x']))
    assert len(out) == 1 and out[0].shape == [1, 19, 128, 256]
    assert np.abs(out[0].numpy() - golden['eval_logits']).max() <= TOL


def test_training_coarse_logits_match(model, golden):
    model.train()
    with paddle.no_grad():
        coarse, _ = model(paddle.to_tensor(golden['train_x']))
    assert coarse.shape == [2, 19, 64, 128]
    assert np.abs(coarse.numpy() - golden['train_coarse_logits']).max() <= TOL
    model.eval()


def test_training_point_logits_match_at_the_reference_points(model, golden):
    """The point head gives PaddleSeg's logits at PaddleSeg's training points
    (BatchNorm in training mode, as in the reference run)."""
    model.train()
    with paddle.no_grad():
        x = paddle.to_tensor(golden['train_x'])
        pyramid = model.neck(model.backbone(x))
        coarse = model.fpnhead(pyramid)[0]
        point_logits = model.pointhead.point_logits(
            [pyramid[i] for i in model.pointhead.in_index], coarse,
            paddle.to_tensor(golden['train_points']))
    model.eval()
    assert point_logits.shape == [2, 19, 2048]
    assert np.abs(point_logits.numpy() - golden['train_point_logits']).max() <= TOL


def test_same_seed_draws_the_reference_points(model, golden):
    """With the plain (not shortcut) FPN head the coarse logits are bitwise
    PaddleSeg's, and the same seed draws the same training points.

    Bitwise only on the matrix-product code path the fixtures were made on,
    MKL's own choice: where ``import paddleseg`` picked another one
    (:mod:`paddleseg.mkl_dispatch`), the logits differ in the last bits,
    near-ties in uncertainty can swap points, and this test runs again in
    a process with ``MKL_DEBUG_CPU_TYPE=`` (MKL's own choice)."""
    if os.environ.get(mkl_dispatch.VARIABLE):
        env = dict(os.environ, **{mkl_dispatch.VARIABLE: ''})
        proc = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
             '{}::test_same_seed_draws_the_reference_points'.format(__file__)],
            cwd=os.path.dirname(os.path.dirname(__file__)), env=env,
            capture_output=True, text=True)
        assert proc.returncode == 0 and '1 passed' in proc.stdout, proc.stdout[-3000:]
        return
    model.train()
    model.fpnhead.exact_tail = False
    try:
        paddle.seed(int(golden['seed']))
        with paddle.no_grad():
            _, (point_logits, points) = model(paddle.to_tensor(golden['train_x']))
    finally:
        model.fpnhead.exact_tail = True
        model.eval()
    np.testing.assert_array_equal(points.numpy(), golden['train_points'])
    assert np.abs(point_logits.numpy() - golden['train_point_logits']).max() <= TOL


def test_pointrend_resnet101_state_dict_matches_paddleseg():
    with open(os.path.join(GOLDEN, 'paddleseg_state_dict_shapes.json')) as f:
        reference = json.load(f)['PointRend_ResNet101_vd']
    net = PointRend(num_classes=19, backbone=ResNet101_vd(output_stride=8),
                    backbone_indices=[0, 1, 2, 3])
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == reference


def test_fpn_inplanes_must_match_backbone():
    with pytest.raises(ValueError, match='fpn_inplanes'):
        PointRend(num_classes=19, backbone=ResNet18_vd(),
                  backbone_indices=[0, 1, 2, 3])
