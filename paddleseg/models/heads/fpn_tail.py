"""Exact shortcut for the tail of a Semantic FPN tower.

A tower of ``L`` blocks runs ``conv3x3+ReLU -> 2x bilinear upsample`` ``L``
times and its output is then resized (bilinear, ``align_corners=False``) to
the head's output size ``S``. When that resize shrinks by ``f = 2g`` with
``g >= 2`` a power of two, bilinear sampling reads only the two rows (and
columns) ``f*i + f/2 - 1`` and ``f*i + f/2`` of the last upsampled map, and
through the last 2x upsample only the rows ``g*i + g/2 - 1`` and
``g*i + g/2`` of the last block's output ``Y`` (each with weight 1/2), so::

    out[i, j] = mean over a, b in {0, 1} of Y[g*i + g/2 - 1 + a, g*j + g/2 - 1 + b]

* ``g == 2``: every position of ``Y`` is read: ``out = avg_pool2x2(Y)``; the
  last upsample and the resize are gone.
* ``g >= 4``: only 1/g^2... of ``Y`` is read, so the last conv runs only
  there: the rows and columns of its input (the 2x upsample of the previous
  block's output ``P``) that those positions need are gathered from ``P``
  with the upsample's fixed 0.75/0.25 weights, and four stride-4
  convolutions give the four phases ``(a, b)``.

There is no BatchNorm in these towers (conv with bias + ReLU), so the
shortcut is exact in training as in inference, gradients included; it only
reorders floating-point sums (differences ~1e-6).
"""

import numpy as np
import paddle
import paddle.nn.functional as F


def tail_factor(in_size, num_upsamples, out_size):
    """``g`` of a tower whose input is ``in_size`` (one axis), or None.

    The shortcut applies when the tower's output, ``in_size * 2**L``, is
    ``2g`` times ``out_size`` with ``g`` a power of two >= 2 and ``L >= 2``.
    """
    if num_upsamples < 2 or out_size <= 0:
        return None
    full = in_size * 2 ** num_upsamples
    if full % out_size:
        return None
    f = full // out_size
    if f < 4 or f & (f - 1):
        return None
    return f // 2


def _upsample_taps(g, n, size):
    """Rows of ``up2(P)`` needed by the 3x3 conv at the read positions.

    Returns ``(idx_a, idx_b, w_a, w_b)`` over ``4n`` gathered rows, in groups
    of four (``t = -1, 0, 1, 2`` around ``g*i + g/2 - 1``): row ``r`` of the
    upsampled map is ``w_a * P[idx_a] + w_b * P[idx_b]``; rows outside the
    map (the conv's zero padding) get zero weights.
    """
    r = (g * np.arange(n)[:, None] + g // 2 - 1 + np.arange(-1, 3)[None, :]).ravel()
    p = r // 2
    nb = np.where(r % 2 == 0, p - 1, p + 1)
    inside = (r >= 0) & (r < 2 * size)
    idx_a = np.clip(p, 0, size - 1)
    idx_b = np.clip(nb, 0, size - 1)
    w_a = np.where(inside, 0.75, 0.0).astype('float32')
    w_b = np.where(inside, 0.25, 0.0).astype('float32')
    return idx_a, idx_b, w_a, w_b


def _gather_upsampled(p, g, n, axis):
    size = p.shape[axis]
    idx_a, idx_b, w_a, w_b = _upsample_taps(g, n, size)
    shape = [1, 1, 1, 1]
    shape[axis] = len(w_a)
    a = paddle.index_select(p, paddle.to_tensor(idx_a), axis=axis)
    b = paddle.index_select(p, paddle.to_tensor(idx_b), axis=axis)
    return (a * paddle.to_tensor(w_a).reshape(shape).astype(p.dtype) +
            b * paddle.to_tensor(w_b).reshape(shape).astype(p.dtype))


def sparse_conv_tail(p, conv, g, out_size):
    """``resize(up2(relu(conv(up2(p)))), out_size)`` for a resize by ``2g``, g >= 4.

    Args:
        p (Tensor): ``[N, C, H, W]``, the previous block's output.
        conv (nn.Conv2D): The last block's 3x3 conv (stride 1, padding 1).
        g (int): Power of two >= 4 with ``2H = g * out_size[0]`` and
            ``2W = g * out_size[1]``.
        out_size (tuple): ``(h, w)``.

    Returns:
        Tensor: ``[N, C_out, h, w]``.
    """
    h, w = out_size
    grid = _gather_upsampled(_gather_upsampled(p, g, h, 2), g, w, 3)
    out = 0
    for a in (0, 1):
        for b in (0, 1):
            out = out + F.relu(F.conv2d(grid[:, :, a:, b:], conv.weight,
                                        conv.bias, stride=4))
    return out * 0.25
