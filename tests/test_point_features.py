"""Point sampling functions against hand-computed values."""

import numpy as np
import paddle
import pytest

from paddleseg.models import point_features as pf


def _t(a, dtype='float32'):
    return paddle.to_tensor(np.asarray(a, dtype=dtype))


MAP = _t([[[[0., 1.], [2., 3.]]]])  # [1, 1, 2, 2]


@pytest.mark.parametrize('align_corners,points,expected', [
    # align_corners=False: pixel centres sit at 0.25 and 0.75
    (False, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]],
     [0., 1., 2., 1.5]),
    # between centres on one row, and half-way to the zero padding beyond
    (False, [[0.5, 0.25], [1.0, 0.25]], [0.5, 0.5]),
    # align_corners=True: centres at 0 and 1
    (True, [[0., 0.], [1., 1.], [0.5, 0.], [0.5, 0.5]], [0., 3., 0.5, 1.5]),
])
def test_point_sample_bilinear(align_corners, points, expected):
    out = pf.point_sample(MAP, _t([points]), align_corners=align_corners)
    assert out.shape == [1, 1, len(points)]
    np.testing.assert_allclose(out.numpy()[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize('align_corners', [False, True])
def test_gathered_bilinear_equals_grid_sample_with_gradients(align_corners):
    """The gather-and-blend sampler against F.grid_sample: batch of 2, odd
    sizes, points inside, on the border and outside the map (zero padding);
    values and the gradients of both inputs."""
    rng = np.random.default_rng(7)
    maps = rng.standard_normal((2, 5, 7, 9)).astype('float32')
    points = rng.uniform(-0.1, 1.1, (2, 300, 2)).astype('float32')
    points[0, :4] = [[0, 0], [1, 1], [0.5, 1.0], [1.0, 0.0]]
    results = []
    for sample in (pf.point_sample, pf.grid_sample_points):
        x = paddle.to_tensor(maps, stop_gradient=False)
        p = paddle.to_tensor(points, stop_gradient=False)
        out = sample(x, p, align_corners=align_corners)
        (out * paddle.to_tensor(np.arange(5, dtype='float32').reshape(1, 5, 1))).sum().backward()
        results.append((out.numpy(), x.grad.numpy(), p.grad.numpy()))
    (a, ga, pa), (b, gb, pb) = results
    assert a.shape == (2, 5, 300)
    np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(ga, gb, atol=2e-5)
    np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=2e-4)


def test_point_sample_nearest_and_grid_shape():
    out = pf.point_sample(MAP, _t([[[0.3, 0.8], [0.9, 0.1]]]), mode='nearest')
    np.testing.assert_array_equal(out.numpy()[0, 0], [2., 1.])
    grid = pf.point_sample(MAP, _t([[[[0.25, 0.25], [0.75, 0.75]]]]))
    assert grid.shape == [1, 1, 1, 2]
    np.testing.assert_allclose(grid.numpy().ravel(), [0., 3.], atol=1e-6)


def test_calculate_uncertainty_is_second_minus_best():
    logits = _t([[[[3., 2.]], [[1., 2.]], [[0., -1.]]]])  # [1, 3, 1, 2]
    unc = pf.calculate_uncertainty(logits)
    assert unc.shape == [1, 1, 1, 2]
    np.testing.assert_allclose(unc.numpy().ravel(), [-2., 0.])


def test_points_on_grid_pick_most_uncertain_cells_and_their_centres():
    unc = _t([[[[-5., -0.1, -3.], [-0.2, -4., -6.]]]])  # [1, 1, 2, 3]
    idx, coords = pf.get_uncertain_point_coords_on_grid(unc, 2)
    assert idx.numpy().tolist() == [[1, 3]]
    np.testing.assert_allclose(coords.numpy()[0],
                               [[1.5 / 3, 0.5 / 2], [0.5 / 3, 1.5 / 2]], atol=1e-6)
    idx, coords = pf.get_uncertain_point_coords_on_grid(unc, 100)
    assert sorted(idx.numpy()[0].tolist()) == list(range(6))
    assert coords.shape == [1, 6, 2]


def test_scatter_replaces_only_the_given_points():
    logits = paddle.zeros([2, 3, 2, 2])
    idx = _t([[0, 3], [2, 1]], 'int64')
    vals = paddle.arange(12, dtype='float32').reshape([2, 3, 2]) + 1
    out = pf.scatter_point_logits(logits, idx, vals).numpy().reshape(2, 3, 4)
    expected = np.zeros((2, 3, 4), 'float32')
    for n in range(2):
        for p, cell in enumerate(idx.numpy()[n]):
            expected[n, :, cell] = vals.numpy()[n, :, p]
    np.testing.assert_array_equal(out, expected)
    assert float(logits.abs().sum()) == 0.0  # input not modified


def _left_half_uncertain(batch=2, h=8, w=8):
    """Logits that tie two classes on the left half (uncertainty 0) and are
    confident on the right half (uncertainty -10)."""
    logits = np.zeros((batch, 3, h, w), 'float32')
    logits[:, 0, :, w // 2:] = 10.0
    return paddle.to_tensor(logits)


def test_training_points_prefer_uncertain_regions():
    paddle.seed(0)
    coords = pf.get_uncertain_point_coords_with_randomness(
        _left_half_uncertain(), num_points=64, oversample_ratio=3,
        importance_sample_ratio=0.75)
    assert coords.shape == [2, 64, 2]
    c = coords.numpy()
    assert c.min() >= 0 and c.max() <= 1
    # the 48 importance points come first and all lie where logits tie
    # (x < 0.5 minus the bilinear blend band of half a cell: 0.5 - 1/16)
    assert (c[:, :48, 0] < 0.5 - 1 / 16 + 1e-6).all()
    # the 16 random ones are spread over the image
    assert (c[:, 48:, 0] > 0.5).any()


def test_training_points_ratio_zero_is_uniform_and_bad_ratios_raise():
    paddle.seed(1)
    c = pf.get_uncertain_point_coords_with_randomness(
        _left_half_uncertain(), 200, 3, 0.0).numpy()
    right = (c[..., 0] > 0.5).mean()
    assert 0.35 < right < 0.65
    with pytest.raises(ValueError, match='oversample_ratio'):
        pf.get_uncertain_point_coords_with_randomness(
            _left_half_uncertain(), 8, 0.5, 0.75)
    with pytest.raises(ValueError, match='importance_sample_ratio'):
        pf.get_uncertain_point_coords_with_randomness(
            _left_half_uncertain(), 8, 3, 1.5)


# -- mixed precision: float16 maps give float32 points, indices and samples ---------
def _half_and_rounded(shape, seed=3):
    """A float16 tensor and the float32 tensor of the same (rounded) values."""
    values = np.random.default_rng(seed).standard_normal(shape).astype('float16')
    return paddle.to_tensor(values), paddle.to_tensor(values.astype('float32'))


@pytest.mark.parametrize('sample', [pf.point_sample, pf.grid_sample_points])
def test_float16_maps_are_sampled_in_float32(sample):
    half, rounded = _half_and_rounded((2, 4, 6, 9))
    points = paddle.to_tensor(np.random.default_rng(4).uniform(0, 1, (2, 50, 2))
                              .astype('float32'))
    out = sample(half, points)
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), sample(rounded, points).numpy(), atol=1e-6)
    # float16 coordinates are widened too (the result is still float32)
    assert sample(half, points.astype('float16')).dtype == paddle.float32


def test_float16_maps_pass_gradients_back_in_float16():
    half, _ = _half_and_rounded((1, 3, 5, 5))
    half.stop_gradient = False
    pf.point_sample(half, paddle.rand([1, 7, 2])).sum().backward()
    assert half.grad.dtype == paddle.float16
    assert float(half.grad.astype('float32').abs().sum()) > 0


def test_uncertainty_and_points_of_float16_logits_are_float32_and_int64():
    half, rounded = _half_and_rounded((2, 5, 6, 7), seed=5)
    unc = pf.calculate_uncertainty(half)
    assert unc.dtype == paddle.float32
    np.testing.assert_array_equal(unc.numpy(), pf.calculate_uncertainty(rounded).numpy())
    idx, coords = pf.get_uncertain_point_coords_on_grid(unc, 10)
    assert idx.dtype == paddle.int64 and coords.dtype == paddle.float32
    # training points: the same draw as from the float32 logits of the same values
    paddle.seed(9)
    from_half = pf.get_uncertain_point_coords_with_randomness(half, 20, 3, 0.75)
    paddle.seed(9)
    from_rounded = pf.get_uncertain_point_coords_with_randomness(rounded, 20, 3, 0.75)
    assert from_half.dtype == paddle.float32
    np.testing.assert_array_equal(from_half.numpy(), from_rounded.numpy())


def test_scatter_casts_point_logits_to_the_map_dtype():
    logits = paddle.zeros([1, 2, 2, 2])
    vals = paddle.to_tensor([[[1.5, -2.0], [0.25, 3.0]]], dtype='float16')
    out = pf.scatter_point_logits(logits, _t([[3, 0]], 'int32'), vals)
    assert out.dtype == paddle.float32
    np.testing.assert_array_equal(out.numpy().reshape(2, 4),
                                  [[-2.0, 0, 0, 1.5], [3.0, 0, 0, 0.25]])


def test_point_head_training_outputs_are_float32_for_float16_inputs():
    from paddleseg.models.heads import PointHead
    paddle.seed(2)
    head = PointHead(num_classes=3, in_channels=[4], out_channels=8, num_points=16,
                     dropout_ratio=0)
    head.train()
    fine, _ = _half_and_rounded((2, 4, 6, 7), seed=6)
    coarse, _ = _half_and_rounded((2, 3, 6, 7), seed=7)
    point_logits, points = head([fine], [coarse])
    assert points.dtype == paddle.float32 and points.shape == [2, 16, 2]
    assert point_logits.dtype == paddle.float32 and point_logits.shape == [2, 3, 16]


def test_float32_region_turns_autocast_off_only_when_it_is_on(monkeypatch):
    import contextlib
    entered = []
    monkeypatch.setattr(paddle.amp, 'auto_cast', lambda **kw: entered.append(kw) or
                        contextlib.nullcontext())
    monkeypatch.setattr(paddle.amp, 'is_autocast_enabled', lambda *a: False)
    with pf.float32_region():
        pass
    assert entered == []
    monkeypatch.setattr(paddle.amp, 'is_autocast_enabled', lambda *a: True)
    pf.point_sample(MAP, _t([[[0.5, 0.5]]]))
    assert entered and all(kw == {'enable': False} for kw in entered)


# -- which sampler runs where -------------------------------------------------------
class _FakePlace:
    def __init__(self, kind):
        self.kind = kind

    def is_cpu_place(self):
        return self.kind == 'cpu'

    def is_cuda_pinned_place(self):
        return False

    def is_gpu_place(self):
        return self.kind == 'gpu'

    def is_xpu_place(self):
        return self.kind == 'xpu'

    def is_custom_place(self):
        return self.kind not in ('cpu', 'gpu', 'xpu')

    def custom_device_type(self):
        return self.kind


class _OnDevice:
    def __init__(self, kind):
        self.place = _FakePlace(kind)


def test_gather_path_only_for_point_lists_on_cpu():
    points = _t([[[0.5, 0.5]]])
    assert pf.uses_gather(MAP, points)  # a real CPU tensor
    assert pf.uses_gather(_OnDevice('cpu'), points)
    for kind in ('gpu', 'xpu', 'npu'):
        assert not pf.uses_gather(_OnDevice(kind), points), kind
    assert not pf.uses_gather(MAP, points, mode='nearest')
    assert not pf.uses_gather(MAP, _t([[[[0.5, 0.5]]]]))  # a grid


def test_point_sample_off_cpu_goes_to_grid_sample(monkeypatch):
    """Maps on a GPU (faked: the place is all point_sample looks at) never
    reach the gather path; on the CPU they do."""
    calls = []
    real_gather = pf._gather_bilinear
    monkeypatch.setattr(pf, '_gather_bilinear',
                        lambda *a: calls.append('gather') or real_gather(*a))
    points = _t([[[0.25, 0.25], [0.5, 0.5]]])
    on_cpu = pf.point_sample(MAP, points).numpy()
    assert calls == ['gather']
    monkeypatch.setattr(pf, '_place_kind', lambda tensor: 'gpu')
    on_gpu = pf.point_sample(MAP, points).numpy()
    assert calls == ['gather']
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-6)
    np.testing.assert_allclose(on_gpu[0, 0], [0.0, 1.5], atol=1e-6)
