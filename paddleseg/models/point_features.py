"""Stateless point-sampling functions of PointRend (Kirillov et al., CVPR 2020).

Coordinates are normalised to ``[0, 1] x [0, 1]`` with ``(x, y)`` order, x
along the width. Every function takes and returns tensors only; the point
head composes them for training (uncertain points with randomness) and for
inference (adaptive subdivision on the grid).
"""

import paddle
import paddle.nn.functional as F


def point_sample(input, points, align_corners=False, mode='bilinear'):
    """Sample ``input`` at normalised point coordinates.

    Bilinear sampling at a list of points (``[N, P, 2]``) gathers the four
    neighbours of every point and blends them (:func:`_gather_bilinear`),
    about 3x faster on CPU than ``F.grid_sample`` with the same arithmetic
    (differences ~1e-7); grids, ``'nearest'`` and static graphs (export:
    shapes may be unknown until run time, and oneDNN's passes take
    ``grid_sample``, not this pattern) go to ``F.grid_sample``.

    Args:
        input (Tensor): Maps ``[N, C, H, W]``.
        points (Tensor): ``[N, P, 2]`` (or ``[N, Hg, Wg, 2]``) coordinates in
            ``[0, 1]``, ``(x, y)`` order.
        align_corners (bool, optional): As in ``F.grid_sample``: with False,
            0 and 1 are the outer edges of the border pixels; with True, their
            centres. Default: False.
        mode (str, optional): 'bilinear' or 'nearest'. Default: 'bilinear'.

    Returns:
        Tensor: ``[N, C, P]`` (or ``[N, C, Hg, Wg]``), zero outside the map.
    """
    if points.ndim == 3 and mode == 'bilinear' and paddle.in_dynamic_mode():
        return _gather_bilinear(input, points, align_corners)
    return grid_sample_points(input, points, align_corners, mode)


def grid_sample_points(input, points, align_corners=False, mode='bilinear'):
    """:func:`point_sample` through ``F.grid_sample``, always (same arguments
    and result); PaddleSeg's way, bit for bit."""
    flat = points.ndim == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, grid * 2.0 - 1.0, mode=mode,
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
        Tensor: ``[N, 1, ...]``, at most 0; the highest values are the most
        uncertain locations (a tie between the two best classes gives 0).
    """
    top2 = paddle.topk(logits, k=2, axis=1)[0]
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
        Tensor: ``[N, P, 2]`` float32 coordinates in ``[0, 1]``; the uncertain
        points come first, each group in descending uncertainty for the first.
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
        coords = paddle.rand([batch, int(num_points * oversample_ratio), 2])
        # grid_sample's exact rounding, as PaddleSeg: near-ties in the
        # uncertainty then fall the same way, and a seed draws its points
        uncertainty = calculate_uncertainty(
            grid_sample_points(coarse_logits, coords, align_corners=align_corners))
        idx = paddle.topk(uncertainty[:, 0, :], k=num_uncertain, axis=1)[1]
        groups.append(paddle.take_along_axis(
            coords, idx.unsqueeze(-1).expand([batch, num_uncertain, 2]), axis=1))
    if num_random > 0:
        groups.append(paddle.rand([batch, num_random, 2]))
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
    if isinstance(h, int) and isinstance(w, int):
        num_points = min(h * w, int(num_points))
    else:  # paddle.jit.to_static with a dynamic size: h, w are tensors
        num_points = paddle.clip(h * w, max=int(num_points))
    point_indices = paddle.topk(uncertainty_map.reshape([n, h * w]),
                                k=num_points, axis=1)[1]
    w_step, h_step = 1.0 / w, 1.0 / h
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
        Tensor: A new ``[N, C, H, W]`` tensor equal to ``logits`` except at the
        given points, where it holds ``point_logits``.
    """
    n, c, h, w = logits.shape
    idx = point_indices.unsqueeze(1).expand([n, c, point_indices.shape[1]])
    flat = paddle.put_along_axis(logits.reshape([n, c, h * w]), idx,
                                 point_logits, axis=2, reduce='assign')
    return flat.reshape([n, c, h, w])
