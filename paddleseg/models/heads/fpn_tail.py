"""Exact shortcut for the tail of a Semantic FPN tower.

A tower of ``L`` blocks runs ``conv3x3+ReLU -> 2x bilinear upsample`` ``L``
times and its output is then resized (bilinear, ``align_corners=False``) to
the head's output size ``S``. When that resize shrinks by ``f = 2g`` with
``g >= 2`` a power of two, bilinear sampling reads only the rows (and
columns) ``f*i + f/2 - 1`` and ``f*i + f/2`` of the last upsampled map, and
through the last 2x upsample only the rows ``g*i + g/2 - 1`` and
``g*i + g/2`` of the last block's output ``Y``, each with weight 1/2::

    out[i, j] = mean over a, b in {0, 1} of Y[g*i + g/2 - 1 + a, g*j + g/2 - 1 + b]

* ``g == 2``: every position of ``Y`` is read: ``out = avg_pool2x2(Y)``; the
  last upsample and the resize are gone.
* ``g >= 8``: only ``4 / g^2`` of ``Y`` is read, so the last conv runs only
  there. Its input, the 2x upsample of the previous block's output ``P``,
  is a fixed linear map of ``P`` (weights 0.75/0.25), and for a read
  position the 3x3 window covers upsampled rows that come from four rows
  ``(g/2)*i + g/4 - 2 + k``, ``k = 0..3``, of ``P``, all inside ``P``. So the
  upsample folds into the kernel: for the phase ``(a, b)``,
  ``K_ab[k, l] = sum_{dy, dx} A[a + dy, k] A[b + dx, l] W[dy, dx]`` is a 4x4
  kernel applied to ``P`` with stride ``g/2``; the four phases run as one
  convolution with ``4 x C_out`` output channels.

There is no BatchNorm in these towers (conv with bias + ReLU), so the
shortcut is exact in training as in inference, gradients included (they
flow through ``K`` to ``W``); it only reorders floating-point sums
(differences ~1e-6).
"""

import numpy as np
import paddle
import paddle.nn.functional as F

# Upsampled rows t = 0..3 of a window group as weights of the four rows of P
# they come from (2x bilinear, align_corners=False: 0.75 to the nearest
# source row, 0.25 to the next nearest).
_UP = np.array([[0.25, 0.75, 0.00, 0.00],
                [0.00, 0.75, 0.25, 0.00],
                [0.00, 0.25, 0.75, 0.00],
                [0.00, 0.00, 0.75, 0.25]], dtype='float32')


def tail_factor(in_size, num_upsamples, out_size):
    """``g`` of a tower whose input is ``in_size`` (one axis), or None.

    The tower's output, ``in_size * 2**L``, must be ``2g`` times
    ``out_size`` with ``L >= 2`` and ``g`` a power of two, 2 or >= 8 (``g == 4``
    reads the border, where the folded form does not hold: no shortcut).
    """
    if num_upsamples < 2 or out_size <= 0:
        return None
    full = in_size * 2 ** num_upsamples
    if full % out_size:
        return None
    f = full // out_size
    if f & (f - 1) or f < 4 or f == 8:
        return None
    return f // 2


def _up_matrix(dtype):
    """:data:`_UP` as a ``dtype`` tensor built on the current device from
    ``paddle.eye`` (rows of the identity, scaled): no copy from the host,
    which on a GPU would wait for the device at every forward pass, and the
    same ops in a dygraph forward and in an exported program."""
    eye = paddle.eye(4, dtype='float32')
    rows = [eye[i:i + 1] for i in range(4)]
    near = paddle.concat([rows[1], rows[1], rows[2], rows[2]])  # 0.75 each
    far = paddle.concat([rows[0], rows[2], rows[1], rows[3]])   # 0.25 each
    return (near * 0.75 + far * 0.25).astype(dtype)


def folded_kernel(weight):
    """The four phase kernels of a 3x3 conv applied after a 2x upsample.

    Args:
        weight (Tensor): ``[C_out, C_in, 3, 3]``.

    Returns:
        Tensor: ``[4 * C_out, C_in, 4, 4]``, phases ``(a, b)`` in the order
        (0, 0), (0, 1), (1, 0), (1, 1).
    """
    up = _up_matrix(weight.dtype)
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            rows, cols = up[a:a + 3], up[b:b + 3]  # [3, 4] each
            phases.append(paddle.einsum('yk,xl,oiyx->oikl', rows, cols, weight))
    return paddle.concat(phases, axis=0)


def sparse_conv_tail(p, conv, g, out_size):
    """``resize(up2(relu(conv(up2(p)))), out_size)`` for a resize by ``2g``, g >= 8.

    Args:
        p (Tensor): ``[N, C, H, W]``, the previous block's output, with
            ``2H = g * out_size[0]`` and ``2W = g * out_size[1]``.
        conv (nn.Conv2D): The last block's 3x3 conv (stride 1, padding 1).
        g (int): Power of two >= 8.
        out_size (tuple): ``(h, w)``.

    Returns:
        Tensor: ``[N, C_out, h, w]``.
    """
    start = g // 4 - 2
    bias = None if conv.bias is None else paddle.tile(conv.bias, [4])
    if start:
        p = p[:, :, start:, start:]
    y = F.conv2d(p, folded_kernel(conv.weight), bias, stride=g // 2)
    n, _, h, w = y.shape
    y = F.relu(y).reshape([n, 4, -1, h, w])
    return y.mean(axis=1)
