"""Pixel-wise softmax cross entropy with an ignore label and class weights."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager
from paddleseg.models.point_features import as_float32, float32_region

EPS = 1e-8


def weighted_cross_entropy(logits, label, weight=None, ignore_index=255,
                           top_k_percent_pixels=1.0):
    """Mean cross entropy over the non-ignored positions.

    ``sum_i w[y_i] * ce_i / sum_i w[y_i]`` over positions with
    ``y_i != ignore_index`` (``w = 1`` without weights); 0 when every position
    is ignored. With ``top_k_percent_pixels < 1`` only the largest
    ``int(k * numel)`` weighted losses are averaged (hard pixel mining).

    Args:
        logits (Tensor): ``[N, C, *]`` float.
        label (Tensor): ``[N, *]`` integer, values in ``[0, C)`` or ``ignore_index``.
        weight (Tensor, optional): ``[C]`` class weights. Default: None.
        ignore_index (int, optional): Label value that contributes nothing.
            Default: 255.
        top_k_percent_pixels (float, optional): In ``(0, 1]``. Default: 1.0.

    Mixed precision: the loss is computed in float32 with
    ``paddle.amp.auto_cast`` off, whatever the dtype of ``logits`` (float16
    logits are cast first; the gradient flows back in their dtype).

    Returns:
        Tensor: Scalar float32 loss.
    """
    with float32_region():
        return _weighted_cross_entropy(as_float32(logits), label, weight,
                                       ignore_index, top_k_percent_pixels)


def _weighted_cross_entropy(logits, label, weight, ignore_index,
                            top_k_percent_pixels):
    label = label.astype('int64')
    valid = label != ignore_index
    safe_label = paddle.where(valid, label, paddle.zeros_like(label))
    logp = F.log_softmax(logits, axis=1)
    ce = -paddle.take_along_axis(logp, safe_label.unsqueeze(1), axis=1).squeeze(1)
    coef = valid.astype(logits.dtype)
    if weight is not None:
        coef = coef * paddle.gather(as_float32(weight), safe_label.flatten()).reshape(
            safe_label.shape)
    loss = (ce * coef).flatten()
    coef = coef.flatten()
    if top_k_percent_pixels < 1.0:
        k = max(1, int(top_k_percent_pixels * loss.shape[0]))
        loss, idx = paddle.topk(loss, k)
        coef = paddle.gather(coef, idx)
    return loss.sum() / (coef.sum() + EPS)


class _WeightedCE(nn.Layer):
    def __init__(self, weight=None, ignore_index=255, top_k_percent_pixels=1.0,
                 data_format='NCHW'):
        super().__init__()
        if data_format != 'NCHW':
            raise ValueError("data_format must be 'NCHW', got {!r}".format(
                data_format))
        if not 0 < top_k_percent_pixels <= 1:
            raise ValueError('top_k_percent_pixels must be in (0, 1], got {}'
                             .format(top_k_percent_pixels))
        self.weight = None if weight is None else paddle.to_tensor(
            weight, dtype='float32')
        self.ignore_index = ignore_index
        self.top_k_percent_pixels = top_k_percent_pixels

    def _loss(self, logits, label):
        if self.weight is not None and self.weight.shape[0] != logits.shape[1]:
            raise ValueError('{} has {} class weights for {} classes'.format(
                type(self).__name__, self.weight.shape[0], logits.shape[1]))
        return weighted_cross_entropy(logits, label, self.weight,
                                      self.ignore_index,
                                      self.top_k_percent_pixels)


@manager.LOSSES.add_component
class CrossEntropyLoss(_WeightedCE):
    """Cross entropy on dense logits.

    Args:
        weight (list[float], optional): Per-class weights. Default: None.
        ignore_index (int, optional): Ignored label. Default: 255.
        top_k_percent_pixels (float, optional): Average only the hardest share
            of pixels. Default: 1.0.
        data_format (str, optional): Only 'NCHW'. Default: 'NCHW'.

    Shapes: ``forward(logits [N, C, H, W], label [N, H, W] or [N, 1, H, W])``
    -> scalar.
    """

    def forward(self, logits, label):
        if label.ndim == 4:
            label = label.squeeze(1)
        return self._loss(logits, label)
