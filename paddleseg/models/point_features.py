"""Stateless point-sampling functions of PointRend (Kirillov et al., CVPR 2020).

Coordinates are normalised to ``[0, 1] x [0, 1]`` with ``(x, y)`` order, x
along the width. Every function takes and returns tensors only; the point
head composes them for training (uncertain points with randomness) and for
inference (adaptive subdivision on the grid).

Mixed precision: point coordinates are float32 and point indices int64
whatever the dtype of the maps (a float16 coordinate is off by up to half a
pixel on a 2048-pixel-wide label); sampling runs in float32 outside any
``paddle.amp.auto_cast`` region, so float16 maps give float32 samples.
"""

import contextlib

import paddle
import paddle.nn.functional as F

from paddleseg.utils.dist import device_kind

GATHER_PLACES = ('cpu',)
"""Device kinds on which :func:`point_sample` gathers and blends instead of
calling ``F.grid_sample``: measured 3x faster on CPU; not measured elsewhere,
so every other device (GPU, XPU, custom devices) keeps ``grid_sample``."""


def float32_region():
    """A context in which ``paddle.amp.auto_cast`` is off.

    Entered only when autocast is on (``paddle.amp.is_autocast_enabled()``,
    ~10 us; entering ``auto_cast(enable=False)`` costs ~100 us); otherwise a
    no-op context.
    """
    if paddle.amp.is_autocast_enabled():
        return paddle.amp.auto_cast(enable=False)
    return contextlib.nullcontext()


def as_float32(x):
    """``x`` as float32: a cast only when it is another dtype."""
    return x if x.dtype == paddle.float32 else x.astype('float32')


def _place_kind(tensor):
    """The device kind of ``tensor``'s place ('cpu', 'gpu', 'xpu' or a
    custom device type, :func:`paddleseg.utils.dist.device_kind`); None for
    a value of a program being built, which has no place (under
    ``paddle.jit.to_static`` it is None, or a method in the old IR)."""
    place = getattr(tensor, 'place', None)
    return device_kind(place) if hasattr(place, 'is_cpu_place') else None


def uses_gather(input, points, mode='bilinear'):
    """Whether :func:`point_sample` takes the gather-and-blend path for
    these arguments: bilinear sampling of a point list ``[N, P, 2]`` of maps
    on a device of :data:`GATHER_PLACES`."""
    return (points.ndim == 3 and mode == 'bilinear'
            and _place_kind(input) in GATHER_PLACES)


def point_sample(input, points, align_corners=False, mode='bilinear'):
    """Sample ``input`` at normalised point coordinates.

    On CPU, bilinear sampling at a list of points (``[N, P, 2]``) gathers
    the four neighbours of every point and blends them
    (:func:`_gather_bilinear`), about 3x faster than ``F.grid_sample`` with
    the same arithmetic (differences ~1e-7). Maps on any other device (the
    place of ``input`` decides, see :data:`GATHER_PLACES`), grids,
    ``'nearest'`` and values of a program being built (no place; an export
    samples with its own point head, deploy/adapters.py) go
    to ``F.grid_sample``.

    Sampling runs in float32 with autocast off: float16 (or other) maps and
    coordinates are cast to float32 first, and the result is float32.

    Args:
        input (Tensor): Maps ``[N, C, H, W]``.
        points (Tensor): ``[N, P, 2]`` (or ``[N, Hg, Wg, 2]``) coordinates in
            ``[0, 1]``, ``(x, y)`` order.
        align_corners (bool, optional): As in ``F.grid_sample``: with False,
            0 and 1 are the outer edges of the border pixels; with True, their
            centres. Default: False.
        mode (str, optional): 'bilinear' or 'nearest'. Default: 'bilinear'.

    Returns:
        Tensor: ``[N, C, P]`` (or ``[N, C, Hg, Wg]``) float32, zero outside
        the map.
    """
    if uses_gather(input, points, mode):
        with float32_region():
            return _gather_bilinear(as_float32(input), as_float32(points),
                                    align_corners)
    return grid_sample_points(input, points, align_corners, mode)


def grid_sample_points(input, points, align_corners=False, mode='bilinear',
                       grid_sample=None):
    """:func:`point_sample` through ``F.grid_sample``, always (same arguments
    and result, float32 too); PaddleSeg's way, bit for bit.

    ``grid_sample`` (optional) stands in for ``F.grid_sample`` (the same
    arguments and result): an export passes the op its program format needs.
    """
    flat = points.ndim == 3
    grid_sample = grid_sample or F.grid_sample
    with float32_region():
        input, points = as_float32(input), as_float32(points)
        grid = points.unsqueeze(2) if flat else points
        out = grid_sample(input, grid * 2.0 - 1.0, mode=mode, padding_mode='zeros',
                          align_corners=align_corners)
    return out.squeeze(3) if flat else out


def _gather_bilinear(input, points, align_corners):
    """Bilinear samples ``[N, C, P]`` of ``input`` ``[N, C, H, W]`` at
    ``points`` ``[N, P, 2]``, zero padding, with ``F.grid_sample``'s
    coordinate arithmetic: the four neighbours' feature vectors are
    gathered from an ``[N*H*W, C]`` view and blended by one batched
    ``[1, 4] x [4, C]`` product per point."""
    n, c, h, w = input.shape
    p = points.shape[1]
    g = points * 2.0 - 1.0
    if align_corners:
        x, y = (g[..., 0] + 1) / 2 * (w - 1), (g[..., 1] + 1) / 2 * (h - 1)
    else:
        x, y = ((g[..., 0] + 1) * w - 1) / 2, ((g[..., 1] + 1) * h - 1) / 2
    x0, y0 = paddle.floor(x), paddle.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype('int64'), y0.astype('int64')
    image_start = (paddle.arange(n, dtype='int64') * (h * w)).unsqueeze(1)
    index, weight = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index.append(image_start + yi.clip(0, h - 1) * w + xi.clip(0, w - 1))
            weight.append(wx * wy * inside.astype(input.dtype))
    rows = input.reshape([n, c, h * w]).transpose([0, 2, 1]).reshape([n * h * w, c])
    corners = paddle.gather(rows, paddle.stack(index, axis=-1).reshape([-1]))
    blended = paddle.matmul(paddle.stack(weight, axis=-1).unsqueeze(-2),
                            corners.reshape([n, p, 4, c]))  # [N, P, 1, C]
    return blended.squeeze(2).transpose([0, 2, 1])


def calculate_uncertainty(logits):
    """Uncertainty of class logits: second-best minus best logit.

    Args:
        logits (Tensor): ``[N, C, ...]`` with ``C >= 2``.

    Returns:
        Tensor: ``[N, 1, ...]`` float32, at most 0; the highest values are
        the most uncertain locations (a tie between the two best classes
        gives 0). Float16 logits are compared as they are and their two
        best values subtracted in float32.
    """
    top2 = as_float32(paddle.topk(logits, k=2, axis=1)[0])
    with float32_region():
        return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def get_uncertain_point_coords_with_randomness(
        coarse_logits, num_points, oversample_ratio, importance_sample_ratio,
        align_corners=False):
    """Training points: the most uncertain of an oversampled set plus random ones.

    Draws ``int(num_points * oversample_ratio)`` uniform points, keeps the
    ``int(importance_sample_ratio * num_points)`` most uncertain of them
    (uncertainty of the bilinearly sampled ``coarse_logits``) and fills the
    rest with fresh uniform points.

    Args:
        coarse_logits (Tensor): ``[N, C, H, W]``.
        num_points (int): Points per image, P.
        oversample_ratio (float): >= 1.
        importance_sample_ratio (float): In ``[0, 1]``.
        align_corners (bool, optional): Used to sample the logits. Default: False.

    Returns:
        Tensor: ``[N, P, 2]`` float32 coordinates in ``[0, 1]`` (also for
        float16 logits: the uncertainty is computed from float32 samples);
        the uncertain points come first, each group in descending
        uncertainty for the first.
    """
    if oversample_ratio < 1:
        raise ValueError('oversample_ratio must be >= 1, got {}'.format(
            oversample_ratio))
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError('importance_sample_ratio must be in [0, 1], got {}'
                         .format(importance_sample_ratio))
    batch = coarse_logits.shape[0]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    groups = []
    if num_uncertain > 0:
        coords = paddle.rand([batch, int(num_points * oversample_ratio), 2],
                             dtype='float32')
        # grid_sample's exact rounding, as PaddleSeg: near-ties in the
        # uncertainty then fall the same way, and a seed draws its points
        uncertainty = calculate_uncertainty(
            grid_sample_points(coarse_logits, coords, align_corners=align_corners))
        idx = paddle.topk(uncertainty[:, 0, :], k=num_uncertain, axis=1)[1]
        groups.append(paddle.take_along_axis(
            coords, idx.unsqueeze(-1).expand([batch, num_uncertain, 2]), axis=1))
    if num_random > 0:
        groups.append(paddle.rand([batch, num_random, 2], dtype='float32'))
    return paddle.concat(groups, axis=1) if len(groups) > 1 else groups[0]


def get_uncertain_point_coords_on_grid(uncertainty_map, num_points):
    """Inference points: the ``num_points`` most uncertain cells of a grid.

    Args:
        uncertainty_map (Tensor): ``[N, 1, H, W]``.
        num_points (int): Points wanted; capped at ``H * W``.

    Returns:
        tuple(Tensor, Tensor): ``point_indices`` ``[N, P]`` int64 flat indices
        into ``H * W``, and ``point_coords`` ``[N, P, 2]`` float32: the cell
        centres ``((col + 0.5) / W, (row + 0.5) / H)``.
    """
    n, _, h, w = uncertainty_map.shape
    flat = uncertainty_map.reshape([n, h * w])
    if isinstance(h, int) and isinstance(w, int):
        num_points = min(h * w, int(num_points))
        w_step, h_step = 1.0 / w, 1.0 / h
    else:  # paddle.jit.to_static with a dynamic size: h, w are tensors.
        # Written for Paddle Inference's oneDNN passes (old-IR export): H * W
        # is read from the flat shape (they would fuse an integer multiply
        # with the clip, as an activation, and fail), and the steps are
        # float32 of shape [1] (oneDNN divides neither integers nor 0-D).
        num_points = paddle.clip(paddle.shape(flat)[1], max=int(num_points))
        w_step = 1.0 / w.astype('float32').reshape([1])
        h_step = 1.0 / h.astype('float32').reshape([1])
    point_indices = paddle.topk(flat, k=num_points, axis=1)[1]
    x = w_step / 2.0 + (point_indices % w).astype('float32') * w_step
    y = h_step / 2.0 + (point_indices // w).astype('float32') * h_step
    return point_indices, paddle.stack([x, y], axis=2)


def scatter_point_logits(logits, point_indices, point_logits):
    """Write refined point logits back into a logit map.

    Args:
        logits (Tensor): ``[N, C, H, W]``.
        point_indices (Tensor): ``[N, P]`` distinct flat indices into ``H * W``.
        point_logits (Tensor): ``[N, C, P]``.

    Returns:
        Tensor: A new ``[N, C, H, W]`` tensor of ``logits``' dtype, equal to
        ``logits`` except at the given points, where it holds
        ``point_logits`` (cast to that dtype: under mixed precision the
        point logits may be float32 and the map float16, or the reverse).
    """
    n, c, h, w = logits.shape
    if point_logits.dtype != logits.dtype:
        point_logits = point_logits.astype(logits.dtype)
    if point_indices.dtype != paddle.int64:
        point_indices = point_indices.astype('int64')
    idx = point_indices.unsqueeze(1).expand([n, c, point_indices.shape[1]])
    flat = paddle.put_along_axis(logits.reshape([n, c, h * w]), idx,
                                 point_logits, axis=2, reduce='assign')
    return flat.reshape([n, c, h, w])
