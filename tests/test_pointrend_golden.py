"""Our PointRend gives PaddleSeg 2.8.0's logits and points from the same weights.

The fixtures come from tests/golden/make_pointrend_golden.py run against PyPI
paddleseg 2.8.0; both sides fill the weights with golden_weights.py. See
tests/golden/README.md for what they hold.

Matrix products (MKL) round differently on different CPUs, code paths and
thread counts, so nothing here needs bitwise equality: logits are compared
within ``TOL``, and rankings by uncertainty (training points, subdivision
cells) are compared exactly except among values tied within ``TIE_TOL``.
"""

import json
import os
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddleseg.models import PointRend
from paddleseg.models import point_features as pf
from paddleseg.models.backbones import ResNet18_vd, ResNet101_vd

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
sys.path.insert(0, GOLDEN)
import golden_weights  # noqa: E402

TOL = 1e-4
# Uncertainty is a difference of two (bilinearly sampled) logits, so logits
# within TOL give uncertainties within 2 * TOL: closer values may rank either
# way. Measured on an AMD EPYC: 2.4e-5 in training mode on MKL's AVX2 path.
TIE_TOL = 2 * TOL
NUM_POINTS, OVERSAMPLE, IMPORTANCE = 2048, 3, 0.75  # PointRend's defaults
NUM_UNCERTAIN = int(IMPORTANCE * NUM_POINTS)


@pytest.fixture(scope='module')
def golden():
    return dict(np.load(os.path.join(GOLDEN, 'pointrend_r18_golden.npz')))


@pytest.fixture(scope='module')
def _model(golden):
    net = PointRend(num_classes=19, backbone=ResNet18_vd(output_stride=8),
                    backbone_indices=[0, 1, 2, 3],
                    fpn_inplanes=[64, 128, 256, 512])
    net = golden_weights.fill_state_dict(net, int(golden['seed']))
    return net, {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.fixture
def model(_model):
    """The golden model in eval mode with its golden weights (training-mode
    passes move the BatchNorm statistics, so they are put back each time)."""
    net, state = _model
    net.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    net.fpnhead.exact_tail = True
    net.eval()
    return net


# ---------------------------------------------------------------- training points

def match_training_points(points, ref_points, candidates, uncertainty,
                          num_uncertain, tol=TIE_TOL):
    """Compare training points with the reference's, allowing only tie swaps.

    The reference drew ``M`` uniform candidates per image, kept the
    ``num_uncertain`` of highest uncertainty (descending) and appended
    uniform points. ``points`` is accepted when, per image:

    * the uniform part ``points[:, num_uncertain:]`` is bitwise the reference's;
    * every importance point is bitwise one of the candidates, none twice;
    * with ``b`` the reference's ``num_uncertain``-th highest uncertainty,
      every candidate above ``b + tol`` is chosen and none below ``b - tol``
      (only candidates tied with the boundary within ``tol`` may swap in or out);
    * at every position ``i`` the chosen candidate's reference uncertainty is
      within ``tol`` of the reference's ``i``-th highest (order may differ only
      among tied values).

    Args:
        points, ref_points (ndarray): ``[N, P, 2]``.
        candidates (ndarray): The reference's candidates ``[N, M, 2]``.
        uncertainty (ndarray): The reference's uncertainty of them ``[N, M]``.
        num_uncertain (int): Importance points per image.
        tol (float): Tie tolerance of the uncertainty.

    Returns:
        tuple(list[str], ndarray): The reasons for rejection (empty: accepted)
        and, for each point, the position of the same point in ``ref_points``
        (``-1`` where the reference does not have it) ``[N, P]``.
    """
    problems = []
    if points.shape != ref_points.shape:
        return ['shape {} instead of {}'.format(points.shape, ref_points.shape)], None
    n_img, _, _ = points.shape
    k = num_uncertain
    ref_pos = np.full(points.shape[:2], -1)
    for n in range(n_img):
        where = {tuple(p): i for i, p in enumerate(ref_points[n].tolist())}
        ref_pos[n] = [where.get(tuple(p), -1) for p in points[n].tolist()]
        bad = np.any(points[n, k:] != ref_points[n, k:], axis=1).sum()
        if bad:
            problems.append('image {}: {} uniform points differ'.format(n, bad))
        index = {tuple(c): i for i, c in enumerate(candidates[n].tolist())}
        chosen = np.array([index.get(tuple(p), -1) for p in points[n, :k].tolist()])
        if (chosen < 0).any():
            problems.append('image {}: {} importance points are not candidates'
                            .format(n, (chosen < 0).sum()))
            continue
        if len(np.unique(chosen)) != k:
            problems.append('image {}: a candidate is chosen twice'.format(n))
        ranked = np.sort(uncertainty[n])[::-1]
        bound = ranked[k - 1]
        picked = np.zeros(len(candidates[n]), bool)
        picked[chosen] = True
        missing = (~picked & (uncertainty[n] > bound + tol)).sum()
        if missing:
            problems.append('image {}: {} candidates above the top-k boundary are '
                            'not chosen'.format(n, missing))
        below = (picked & (uncertainty[n] < bound - tol)).sum()
        if below:
            problems.append('image {}: {} chosen candidates are below the top-k '
                            'boundary'.format(n, below))
        order = (np.abs(uncertainty[n][chosen] - ranked[:k]) > tol).sum()
        if order:
            problems.append('image {}: {} positions out of descending order '
                            'beyond ties'.format(n, order))
    return problems, ref_pos


def sample_points(head_logits, seed, num_points=NUM_POINTS,
                  oversample_ratio=OVERSAMPLE, importance_ratio=IMPORTANCE,
                  align_corners=False):
    """Our training sampler, seeded, on the given coarse logits."""
    paddle.seed(seed)
    return pf.get_uncertain_point_coords_with_randomness(
        paddle.to_tensor(head_logits), num_points, oversample_ratio,
        importance_ratio, align_corners=align_corners).numpy()


def from_candidates(golden, order):
    """Points made from the reference's own candidates and uniform draw,
    the importance part in the candidate order ``order(uncertainty)``."""
    cand, u = golden['train_candidates'], golden['train_candidate_uncertainty']
    pick = np.stack([order(u[n])[:NUM_UNCERTAIN] for n in range(len(u))])
    uniform = golden['train_points'][:, NUM_UNCERTAIN:]
    return np.concatenate(
        [np.take_along_axis(cand, pick[..., None], axis=1), uniform], axis=1)


def check(golden, points):
    return match_training_points(
        points, golden['train_points'], golden['train_candidates'],
        golden['train_candidate_uncertainty'], NUM_UNCERTAIN)[0]


def _reference_ranking(golden, n):
    """Image ``n``: the reference's candidate index of each importance point
    and the reference uncertainty of every candidate."""
    where = {tuple(c): i for i, c in enumerate(golden['train_candidates'][n].tolist())}
    chosen = np.array([where[tuple(p)] for p in
                       golden['train_points'][n, :NUM_UNCERTAIN].tolist()])
    return chosen, golden['train_candidate_uncertainty'][n]


def test_point_matcher_accepts_the_reference_and_tie_swaps(golden):
    ref = golden['train_points']
    assert check(golden, ref) == []
    # rebuilt from the record (stable order: exact ties may come out swapped)
    assert check(golden, from_candidates(golden, lambda u: np.argsort(-u, kind='stable'))) == []
    chosen, u = _reference_ranking(golden, 0)
    # two neighbours of nearly (not exactly) equal uncertainty swapped
    gaps = u[chosen[:-1]] - u[chosen[1:]]
    i = int(np.argmin(np.where(gaps > 0, gaps, np.inf)))
    assert 0 < gaps[i] <= TIE_TOL
    swapped = ref.copy()
    swapped[0, [i, i + 1]] = ref[0, [i + 1, i]]
    assert check(golden, swapped) == []
    # the last one kept replaced by the first one dropped, tied within TIE_TOL
    dropped = np.argsort(-u, kind='stable')[NUM_UNCERTAIN]
    assert 0 < u[chosen[-1]] - u[dropped] <= TIE_TOL
    swapped = ref.copy()
    swapped[0, NUM_UNCERTAIN - 1] = golden['train_candidates'][0, dropped]
    assert check(golden, swapped) == []
    # ... but not by a dropped one further down, beyond the tolerance
    far = np.argsort(-u, kind='stable')[NUM_UNCERTAIN + 30]
    assert u[chosen[-1]] - u[far] > TIE_TOL
    swapped[0, NUM_UNCERTAIN - 1] = golden['train_candidates'][0, far]
    assert any('below the top-k boundary' in p for p in check(golden, swapped))


def test_point_matcher_tie_rule_on_a_small_case():
    """Top 2 of 5 candidates: the boundary is 0.50006 (the 2nd highest);
    0.5 and 0.50003 are tied with it within 1e-4 (not within 1e-5), 0.3
    and 0.9 are not."""
    cand = np.array([[[.1, .1], [.2, .2], [.3, .3], [.4, .4], [.5, .5]]], 'float32')
    u = np.array([[0.9, 0.5, 0.50003, 0.3, 0.50006]], 'float32')
    extra = np.array([[[.7, .8]]], 'float32')
    ref = np.concatenate([cand[:, [0, 4]], extra], axis=1)
    for pts, ok in [([0, 4], True), ([0, 1], True), ([0, 2], True), ([4, 0], False),
                    ([0, 3], False), ([1, 4], False), ([0, 0], False)]:
        got = np.concatenate([cand[:, pts], extra], axis=1)
        problems, _ = match_training_points(got, ref, cand, u, 2, tol=1e-4)
        assert (problems == []) == ok, (pts, problems)
    problems, _ = match_training_points(
        np.concatenate([cand[:, [0, 4]], extra[:, :, ::-1]], axis=1), ref, cand, u, 2)
    assert problems == ['image 0: 1 uniform points differ']
    problems, _ = match_training_points(ref, ref, cand, u, 2, tol=1e-5)
    assert problems == []
    problems, _ = match_training_points(
        np.concatenate([cand[:, [0, 1]], extra], axis=1), ref, cand, u, 2, tol=1e-5)
    assert problems == ['image 0: 1 chosen candidates are below the top-k boundary',
                        'image 0: 1 positions out of descending order beyond ties']


def test_our_sampler_on_the_reference_coarse_logits_draws_its_points(golden):
    points = sample_points(golden['train_head_logits'], int(golden['seed']))
    assert check(golden, points) == []


WRONG_SAMPLERS = {
    # the least uncertain candidates instead of the most
    'lowest uncertainty': (
        lambda g: from_candidates(g, lambda u: np.argsort(u, kind='stable')),
        'above the top-k boundary'),
    # a random pick of the candidates
    'no ranking': (
        lambda g: from_candidates(g, lambda u: np.random.default_rng(0).permutation(len(u))),
        'above the top-k boundary'),
    # the right points but the importance part in ascending order
    'ascending order': (
        lambda g: np.concatenate([g['train_points'][:, NUM_UNCERTAIN - 1::-1],
                                  g['train_points'][:, NUM_UNCERTAIN:]], axis=1),
        'out of descending order'),
    'importance ratio 0.5': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']),
                                importance_ratio=0.5),
        'not candidates'),
    'importance ratio 0.8': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']),
                                importance_ratio=0.8),
        'uniform points differ'),
    'oversample ratio 2': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']),
                                oversample_ratio=2),
        'not candidates'),
    'oversample ratio 4': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']),
                                oversample_ratio=4),
        'not candidates'),
    # right sampler, output coordinates half a coarse cell to the right
    'points shifted by half a cell': (
        lambda g: g['train_points'] + np.array(
            [0.5 / g['train_head_logits'].shape[3], 0], 'float32'),
        'not candidates'),
    # uncertainty sampled half a cell off (align_corners=True): wrong ranking
    'uncertainty half a cell off': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']),
                                align_corners=True),
        'above the top-k boundary'),
    'another seed': (
        lambda g: sample_points(g['train_head_logits'], int(g['seed']) + 1),
        'not candidates'),
}


@pytest.mark.parametrize('name', sorted(WRONG_SAMPLERS))
def test_point_matcher_rejects_a_wrong_sampler(golden, name):
    make, reason = WRONG_SAMPLERS[name]
    points = make(golden)
    problems = check(golden, points)
    assert problems, name
    assert any(reason in p for p in problems), problems


@pytest.mark.parametrize('exact_tail', [True, False], ids=['shortcut', 'plain'])
def test_same_seed_draws_the_reference_points(model, golden, exact_tail):
    """Our model, seeded as the reference run, draws its training points up
    to tie swaps, and predicts its point logits at the same points.

    Run with the FPN head's shortcut tail (our default) and with the plain
    computation (bitwise PaddleSeg's on MKL's own code path on AMD)."""
    model.train()
    model.fpnhead.exact_tail = exact_tail
    paddle.seed(int(golden['seed']))
    with paddle.no_grad():
        _, (point_logits, points) = model(paddle.to_tensor(golden['train_x']))
    points, point_logits = points.numpy(), point_logits.numpy()
    problems, ref_pos = match_training_points(
        points, golden['train_points'], golden['train_candidates'],
        golden['train_candidate_uncertainty'], NUM_UNCERTAIN)
    assert problems == []
    # point logits wherever the reference has the same point: all but those
    # swapped across the top-k boundary, at most the candidates tied with it
    found = ref_pos >= 0
    u = golden['train_candidate_uncertainty']
    bound = np.sort(u, axis=1)[:, ::-1][:, NUM_UNCERTAIN - 1:NUM_UNCERTAIN]
    assert (~found).sum() <= (np.abs(u - bound) <= TIE_TOL).sum()
    ref_logits = np.take_along_axis(golden['train_point_logits'],
                                    np.maximum(ref_pos, 0)[:, None, :], axis=2)
    diff = np.abs(point_logits - ref_logits).max(axis=1)[found]
    assert diff.max() <= TOL


def test_our_uncertainty_of_the_candidates_is_within_the_tie_tolerance(model, golden):
    """What makes TIE_TOL enough: our coarse logits, in training mode, give
    the reference's uncertainty of its candidates within TIE_TOL / 2."""
    model.train()
    with paddle.no_grad():
        x = paddle.to_tensor(golden['train_x'])
        head = model.fpnhead(model.neck(model.backbone(x)))[0]
        u = pf.calculate_uncertainty(pf.grid_sample_points(
            head, paddle.to_tensor(golden['train_candidates'])))[:, 0].numpy()
    assert np.abs(head.numpy() - golden['train_head_logits']).max() <= TOL
    assert np.abs(u - golden['train_candidate_uncertainty']).max() <= TIE_TOL / 2


# ---------------------------------------------------------------- logits

def test_eval_subdivision_logits_match(model, golden):
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
    assert point_logits.shape == [2, 19, 2048]
    assert np.abs(point_logits.numpy() - golden['train_point_logits']).max() <= TOL


# ---------------------------------------------------------------- subdivision cut

def _upsample_mask(mask, size):
    """Cells of a bilinear resize to ``size`` that read a marked cell."""
    t = paddle.to_tensor(mask[:, None].astype('float32'))
    return F.interpolate(t, size, mode='bilinear', align_corners=False)[:, 0].numpy() > 0


def test_eval_cases_cover_the_subdivision_cut(golden):
    """The first eval case re-predicts every cell at both steps (8192 <=
    8196); the second keeps 8196 of more at both, with a margin between the
    last kept and the first dropped uncertainty far above rounding noise."""
    for h, w, kept, gap in golden['eval_steps']:
        assert kept == h * w and gap == np.inf
    steps = golden['eval2_steps']
    assert len(steps) == 2
    for i, (h, w, kept, gap) in enumerate(steps):
        assert kept == 8196 < h * w
        assert golden['eval2_kept{}'.format(i)].shape == (1, 8196)
        assert gap > 1e-5


def compare_subdivision(steps, refined, golden, name='eval2', tol=TIE_TOL):
    """Compare a subdivision run with the reference's, allowing tie swaps.

    At every step our kept cells must be the reference's, except cells whose
    uncertainty (ours) is within ``tol`` of our cut value (the k-th highest),
    or that read a cell already swapped at an earlier step (through the 2x
    bilinear upsample). The refined logits must be within ``TOL`` of the
    reference's except at the cells so marked, which must be under 1%; the
    class maps must agree except there and where the reference's two best
    logits are within ``2 * TOL``.

    Args:
        steps (list): Per step, our ``(uncertainty [N, 1, H, W],
            kept indices [N, K])``.
        refined (ndarray): Our refined logits ``[N, C, H, W]`` (last step).
        golden (dict): The fixtures, with ``{name}_steps``, ``{name}_kept{i}``
            and ``{name}_refined_logits``.

    Returns:
        tuple(list[str], float): The reasons for rejection (empty: accepted)
        and the max abs difference of the refined logits outside marked cells.
    """
    table = golden[name + '_steps']
    if len(steps) != len(table):
        return ['{} steps instead of {}'.format(len(steps), len(table))], None
    problems, affected = [], None
    for i, (u, index) in enumerate(steps):
        n, _, h, w = u.shape
        if [h, w, index.shape[1]] != table[i, :3].tolist():
            problems.append('step {}: grid {}x{} keeping {}, reference {}'.format(
                i, h, w, index.shape[1], table[i, :3].tolist()))
            return problems, None
        ours = np.zeros((n, h * w), bool)
        np.put_along_axis(ours, index.astype('int64'), True, axis=1)
        ref = np.zeros((n, h * w), bool)
        np.put_along_axis(ref, golden['{}_kept{}'.format(name, i)].astype('int64'),
                          True, axis=1)
        affected = (np.zeros((n, h, w), bool) if affected is None
                    else _upsample_mask(affected, (h, w)))
        flat = u.reshape(n, h * w)
        k = index.shape[1]
        cut = -np.partition(-flat, k - 1, axis=1)[:, k - 1:k]  # k-th highest
        differ = ours != ref
        unexplained = (differ & (np.abs(flat - cut) > tol)
                       & ~affected.reshape(n, -1)).sum()
        if unexplained:
            problems.append('step {}: {} cells kept on one side only, not tied '
                            'with the cut'.format(i, unexplained))
        affected |= differ.reshape(n, h, w)
    reference = golden[name + '_refined_logits']
    if refined.shape != reference.shape:
        return problems + ['refined logits {} instead of {}'.format(
            refined.shape, reference.shape)], None
    if affected.mean() >= 0.01:
        problems.append('{:.1%} of the cells swapped'.format(affected.mean()))
    diff = float(np.where(affected[:, None], 0, np.abs(refined - reference)).max())
    if not diff <= TOL:
        problems.append('refined logits differ by {:.3g}'.format(diff))
    top2 = np.sort(reference, axis=1)[:, -2:]
    near_tie = (top2[:, 1] - top2[:, 0]) <= 2 * TOL
    mismatch = (refined.argmax(1) != reference.argmax(1)) & ~near_tie & ~affected
    if mismatch.any():  # implied by the logits check; said for the record
        problems.append('{} cells of another class'.format(mismatch.sum()))
    return problems, diff


@pytest.fixture(scope='module')
def eval2_run(_model, golden):
    """Our eval pass on ``eval2_x``: the model's output, and what
    :func:`compare_subdivision` takes (per-step records, refined logits)."""
    net, state = _model
    net.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    net.fpnhead.exact_tail = True
    net.eval()
    steps, refined = [], []
    on_grid = pf.get_uncertain_point_coords_on_grid

    def spy(uncertainty, num_points):
        index, coords = on_grid(uncertainty, num_points)
        steps.append((uncertainty.numpy(), index.numpy()))
        return index, coords
    hook = net.pointhead.register_forward_post_hook(
        lambda layer, inputs, output: refined.append(output[0].numpy()))
    pf.get_uncertain_point_coords_on_grid = spy
    try:
        with paddle.no_grad():
            out = net(paddle.to_tensor(golden['eval2_x']))[0].numpy()
    finally:
        pf.get_uncertain_point_coords_on_grid = on_grid
        hook.remove()
    assert len(refined) == 1
    return out, steps, refined[0]


def test_eval_subdivision_cut_matches(eval2_run, golden):
    """At 272x544 both subdivision steps keep only the 8196 most uncertain
    cells: our kept cells and refined logits (the point head's output,
    136x272, before the resize to the input) are PaddleSeg's, up to ties."""
    out, steps, refined = eval2_run
    assert out.shape == (1, 19, 272, 544)
    problems, diff = compare_subdivision(steps, refined, golden)
    assert problems == [] and diff <= TOL


def _swap_at_cut(steps, i, rank):
    """``steps`` with, at step ``i``, the lowest kept cell replaced by the
    cell of uncertainty rank ``rank`` (0: highest); returns the two cells."""
    u, index = steps[i]
    flat = u.reshape(u.shape[0], -1)
    order = np.argsort(-flat[0], kind='stable')
    k = index.shape[1]
    last = order[k - 1]
    index = np.where(index == last, order[rank], index)
    return steps[:i] + [(u, index)] + steps[i + 1:], last, order[rank]


def test_subdivision_comparison_accepts_tie_swaps(eval2_run, golden):
    _, steps, refined = eval2_run
    k = steps[-1][1].shape[1]
    w = refined.shape[3]
    for i in (0, 1):
        swapped, out_cell, in_cell = _swap_at_cut(steps, i, k)  # first dropped
        gap = np.abs(steps[i][0].ravel()[out_cell] - steps[i][0].ravel()[in_cell])
        assert gap <= TIE_TOL
        changed = refined.copy()
        if i == 1:  # the swapped cells are re-predicted differently
            for cell in (out_cell, in_cell):
                changed[0, :, cell // w, cell % w] += 1.0
        assert compare_subdivision(swapped, changed, golden)[0] == []


@pytest.mark.parametrize('mistake', [
    'keeps 8192', 'far cell swapped in', 'logits off at a kept cell',
    'logits off at a cell not kept', 'logits off by 2e-4'])
def test_subdivision_comparison_rejects(eval2_run, golden, mistake):
    _, steps, refined = eval2_run
    k = steps[-1][1].shape[1]
    w = refined.shape[3]
    refined = refined.copy()
    if mistake == 'keeps 8192':
        steps = steps[:-1] + [(steps[-1][0], steps[-1][1][:, :8192])]
    elif mistake == 'far cell swapped in':
        u = steps[1][0].ravel()
        steps, _, cell = _swap_at_cut(steps, 1, k + 500)
        assert u[cell] < np.sort(u)[::-1][k - 1] - TIE_TOL
    elif mistake.startswith('logits off at'):
        kept = set(steps[1][1][0].tolist())
        cell = next(c for c in range(refined[0, 0].size)
                    if (c in kept) == (mistake == 'logits off at a kept cell'))
        refined[0, 3, cell // w, cell % w] += 1e-3
    else:
        refined += 2e-4
    assert compare_subdivision(steps, refined, golden)[0] != []


# ---------------------------------------------------------------- state dicts

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
