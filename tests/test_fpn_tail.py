"""The FPN head's tower shortcut equals the plain computation."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddleseg.models.heads import FPNHead
from paddleseg.models.heads.fpn_tail import sparse_conv_tail, tail_factor


@pytest.mark.parametrize('in_size,ups,out_size,g', [
    (32, 3, 16, 8),     # os8 finest tower: stride 4 -> x8 -> resized to stride 8
    (16, 2, 16, 2),     # a stride-8 tower with two blocks
    (16, 1, 16, None),  # one block: resize by 2, 3-tap filter, no shortcut
    (33, 3, 16, None),  # sizes that are not a power-of-two ratio
    (16, 2, 8, None),   # g = 4 would read the border: no shortcut
    (24, 3, 16, None),  # ratio 12
])
def test_tail_factor(in_size, ups, out_size, g):
    assert tail_factor(in_size, ups, out_size) == g


def _pyramid(h, w, seed=0):
    """Inputs shaped like os8: three maps at (h, w), the finest at (2h, 2w)."""
    rng = np.random.default_rng(seed)
    shapes = [(h, w)] * 3 + [(2 * h, 2 * w)]
    return [paddle.to_tensor(rng.normal(size=(2, 8) + s).astype('float32'),
                             stop_gradient=False) for s in shapes]


def _run(head, inputs, exact_tail):
    head.exact_tail = exact_tail
    head.clear_gradients()
    for x in inputs:
        x.clear_gradient()
    out = head(inputs)[0]
    (out * paddle.sin(out)).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in head.named_parameters()}
    grads.update({'input{}'.format(i): x.grad.numpy().copy()
                  for i, x in enumerate(inputs)})
    return out.numpy(), grads


@pytest.mark.parametrize('h,w', [(4, 8), (6, 4)])
def test_shortcut_matches_plain_head_with_gradients(h, w):
    paddle.seed(0)
    head = FPNHead(num_class=5, in_channels=[8] * 4, channels=16,
                   dropout_ratio=0)
    head.train()
    inputs = _pyramid(h, w)
    fast, g_fast = _run(head, inputs, True)
    plain, g_plain = _run(head, inputs, False)
    assert fast.shape == (2, 5, h, w)
    np.testing.assert_allclose(fast, plain, atol=1e-5, rtol=1e-5)
    assert g_fast.keys() == g_plain.keys()
    for k in g_plain:
        scale = np.abs(g_plain[k]).max()
        np.testing.assert_allclose(g_fast[k], g_plain[k], atol=1e-5 * scale,
                                   err_msg=k)


def test_odd_sizes_use_the_shortcut_only_where_it_is_exact():
    # tower 2 (5x7, two blocks, to 5x7) pools; tower 3 (9x13 -> 5x7) falls back
    assert tail_factor(5, 2, 5) == 2 and tail_factor(7, 2, 7) == 2
    assert tail_factor(9, 3, 5) is None
    paddle.seed(1)
    head = FPNHead(num_class=3, in_channels=[4] * 4, channels=8, dropout_ratio=0)
    head.eval()
    rng = np.random.default_rng(1)
    inputs = [paddle.to_tensor(rng.normal(size=(1, 4) + s).astype('float32'))
              for s in [(5, 7)] * 3 + [(9, 13)]]
    with paddle.no_grad():
        head.exact_tail = True
        a = head(inputs)[0].numpy()
        head.exact_tail = False
        b = head(inputs)[0].numpy()
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('g,h,w', [(8, 3, 5), (16, 2, 3), (32, 2, 2)])
def test_sparse_tail_equals_the_plain_tail_with_gradients(g, h, w):
    """The tail alone, for g = 8 (os8's finest tower), 16 and 32 (coarser outputs)."""
    paddle.seed(1)
    conv = paddle.nn.Conv2D(6, 4, 3, padding=1)
    rng = np.random.default_rng(g)
    p = paddle.to_tensor(rng.normal(size=(2, 6, g * h // 2, g * w // 2)).astype('float32'),
                         stop_gradient=False)

    def plain(x):
        up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        y = F.interpolate(F.relu(conv(up)), scale_factor=2, mode='bilinear',
                          align_corners=False)
        return F.interpolate(y, (h, w), mode='bilinear', align_corners=False)

    results = []
    for fn in (lambda x: sparse_conv_tail(x, conv, g, (h, w)), plain):
        conv.clear_gradients()
        p.clear_gradient()
        out = fn(p)
        (out * paddle.cos(out)).sum().backward()
        results.append((out.numpy(), p.grad.numpy().copy(), conv.weight.grad.numpy().copy(),
                        conv.bias.grad.numpy().copy()))
    assert results[0][0].shape == (2, 4, h, w)
    for fast, ref in zip(*results):
        np.testing.assert_allclose(fast, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))
