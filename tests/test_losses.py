"""Losses against numbers computed with numpy."""

import numpy as np
import paddle
import pytest

from paddleseg.models.losses import CrossEntropyLoss, PointCrossEntropyLoss


def np_ce(logits, label):
    """Per-position cross entropy; logits [C, P], label [P]."""
    z = logits - logits.max(0, keepdims=True)
    logp = z - np.log(np.exp(z).sum(0, keepdims=True))
    return -logp[label, np.arange(label.size)]


LOGITS = np.array([[[[2.0, -1.0], [0.5, 0.0]],
                    [[1.0, 3.0], [0.5, -2.0]],
                    [[-1.0, 0.0], [1.5, 1.0]]]], 'float32')  # [1, 3, 2, 2]
LABEL = np.array([[[0, 1], [255, 2]]], 'int64')  # [1, 2, 2]


def test_cross_entropy_ignores_255_and_averages_valid_pixels():
    ce = np_ce(LOGITS.reshape(3, 4), np.array([0, 1, 0, 2]))
    expected = (ce[0] + ce[1] + ce[3]) / 3
    loss = CrossEntropyLoss()(paddle.to_tensor(LOGITS), paddle.to_tensor(LABEL))
    assert loss.shape == []
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    # label with a channel axis gives the same
    loss4 = CrossEntropyLoss()(paddle.to_tensor(LOGITS),
                               paddle.to_tensor(LABEL[:, None]))
    np.testing.assert_allclose(float(loss4), expected, rtol=1e-6)


def test_cross_entropy_class_weights():
    w = [1.0, 3.0, 0.5]
    ce = np_ce(LOGITS.reshape(3, 4), np.array([0, 1, 0, 2]))
    expected = (1.0 * ce[0] + 3.0 * ce[1] + 0.5 * ce[3]) / (1.0 + 3.0 + 0.5)
    loss = CrossEntropyLoss(weight=w)(paddle.to_tensor(LOGITS),
                                      paddle.to_tensor(LABEL))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    with pytest.raises(ValueError, match='2 class weights for 3 classes'):
        CrossEntropyLoss(weight=[1, 2])(paddle.to_tensor(LOGITS),
                                        paddle.to_tensor(LABEL))


def test_cross_entropy_top_k_and_all_ignored():
    ce = np_ce(LOGITS.reshape(3, 4), np.array([0, 1, 0, 2]))
    valid = np.array([ce[0], ce[1], 0.0, ce[3]])
    expected = np.sort(valid)[-2:].mean()
    loss = CrossEntropyLoss(top_k_percent_pixels=0.5)(
        paddle.to_tensor(LOGITS), paddle.to_tensor(LABEL))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    ignored = paddle.full([1, 2, 2], 255, 'int64')
    assert float(CrossEntropyLoss()(paddle.to_tensor(LOGITS), ignored)) == 0.0


def test_cross_entropy_gradient_flows_to_logits():
    x = paddle.to_tensor(LOGITS, stop_gradient=False)
    CrossEntropyLoss()(x, paddle.to_tensor(LABEL)).backward()
    g = x.grad.numpy()
    assert np.abs(g[0, :, 1, 0]).max() == 0.0  # the ignored pixel
    np.testing.assert_allclose(g.sum(1), 0.0, atol=1e-6)  # softmax - onehot


def test_point_cross_entropy_samples_labels_nearest():
    label = np.array([[[0, 1], [255, 2]]], 'int64')  # [1, 2, 2]
    # points at the 4 cell centres, then two near corners of cell (0, 1)
    points = np.array([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75],
                        [0.99, 0.01], [0.6, 0.4]]], 'float32')
    point_logits = np.random.default_rng(0).normal(size=(1, 3, 6)).astype('float32')
    point_label = np.array([0, 1, 255, 2, 1, 1])
    valid = point_label != 255
    ce = np_ce(point_logits[0], np.where(valid, point_label, 0))
    expected = ce[valid].mean()
    loss = PointCrossEntropyLoss()(
        [paddle.to_tensor(point_logits), paddle.to_tensor(points)],
        paddle.to_tensor(label))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


# -- mixed precision: the cross entropy runs in float32 ----------------------------
def test_float16_logits_give_a_float32_loss_and_float16_gradients():
    half = paddle.to_tensor(LOGITS.astype('float16'), stop_gradient=False)
    rounded = paddle.to_tensor(LOGITS.astype('float16').astype('float32'),
                               stop_gradient=False)
    loss_fn = CrossEntropyLoss(weight=[1.0, 2.0, 0.5])
    loss_half = loss_fn(half, paddle.to_tensor(LABEL))
    loss_rounded = loss_fn(rounded, paddle.to_tensor(LABEL))
    assert loss_half.dtype == paddle.float32
    np.testing.assert_allclose(float(loss_half), float(loss_rounded), rtol=1e-6)
    loss_half.backward()
    loss_rounded.backward()
    assert half.grad.dtype == paddle.float16
    np.testing.assert_allclose(half.grad.astype('float32').numpy(),
                               rounded.grad.numpy(), atol=1e-3)


def test_point_loss_with_float16_point_logits_is_float32():
    label = paddle.to_tensor(np.array([[[0, 1], [255, 2]]], 'int64'))
    points = paddle.to_tensor(np.array([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]]],
                                       'float32'))
    logits = np.random.default_rng(1).normal(size=(1, 3, 3)).astype('float16')
    loss = PointCrossEntropyLoss()([paddle.to_tensor(logits), points], label)
    assert loss.dtype == paddle.float32
    ce = np_ce(logits.astype('float32')[0], np.array([0, 1, 2]))
    np.testing.assert_allclose(float(loss), ce.mean(), rtol=1e-5)
    # float16 points are widened before the label is sampled
    loss16 = PointCrossEntropyLoss()([paddle.to_tensor(logits), points.astype('float16')],
                                     label)
    np.testing.assert_allclose(float(loss16), float(loss), rtol=1e-6)
