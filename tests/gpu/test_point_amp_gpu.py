"""On a GPU, under paddle's real autocast: PointRend's points stay float32
and their indices int64, the losses see float32, point_sample takes
grid_sample, and paddleseg.core.amp prepares an O2 model (float16 weights,
float32 master weights and checkpoints) that trains and resumes.

(The CPU suite checks the same functions with float16 tensors made by hand
and a recorded paddle.amp.decorate: tests/test_amp.py,
tests/test_point_features.py, tests/test_losses.py.)
"""

import numpy as np
import paddle
import pytest

from paddleseg.core import amp
from paddleseg.models import point_features as pf
from paddleseg.models.losses import CrossEntropyLoss, PointCrossEntropyLoss


def _half(shape, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal(shape)
                            .astype('float16'))


@pytest.mark.parametrize('level', ['O1', 'O2'])
def test_points_indices_and_losses_under_autocast(tools, on_device, level):
    tools.need_fp16()
    coarse = _half((2, 5, 16, 32), 1)
    fine = _half((2, 8, 16, 32), 2)
    label = paddle.to_tensor(np.random.default_rng(3).integers(0, 5, (2, 64, 128)))
    with amp.autocast('fp16', level):
        assert paddle.amp.is_autocast_enabled()
        points = pf.get_uncertain_point_coords_with_randomness(coarse, 64, 3, 0.75)
        idx, grid_points = pf.get_uncertain_point_coords_on_grid(
            pf.calculate_uncertainty(coarse), 100)
        sampled = pf.point_sample(fine, points)
        assert not pf.uses_gather(fine, points)  # a GPU tensor: grid_sample
        point_loss = PointCrossEntropyLoss()([_half((2, 5, 64), 4), points], label)
        dense_loss = CrossEntropyLoss()(_half((2, 5, 64, 128), 5), label)
        # back inside autocast after the float32 regions
        assert paddle.amp.is_autocast_enabled()
    assert points.dtype == paddle.float32 and grid_points.dtype == paddle.float32
    assert idx.dtype == paddle.int64
    assert sampled.dtype == paddle.float32
    assert point_loss.dtype == paddle.float32 and dense_loss.dtype == paddle.float32
    assert np.isfinite(float(point_loss)) and np.isfinite(float(dense_loss))


def test_gather_and_grid_sample_agree_on_the_gpu(on_device):
    rng = np.random.default_rng(7)
    maps = paddle.to_tensor(rng.standard_normal((2, 5, 7, 9)).astype('float32'))
    points = paddle.to_tensor(rng.uniform(-0.1, 1.1, (2, 300, 2)).astype('float32'))
    for align in (False, True):
        gathered = pf._gather_bilinear(maps, points, align)
        sampled = pf.point_sample(maps, points, align_corners=align)
        np.testing.assert_allclose(gathered.numpy(), sampled.numpy(), atol=1e-5)


def test_prepare_o2_trains_saves_fp32_and_resumes(tiny, tools, on_device, tmp_path):
    tools.need_fp16()
    from paddleseg.core.train import compute_losses
    from paddleseg.cvlibs import builder

    precision, level = amp.resolve_precision('fp16', 'O2')
    assert (precision, level) == ('fp16', 'O2')
    paddle.seed(5)
    cfg, model = tools.build(tiny['cfg'])
    losses = builder.build_losses(cfg, tiny['cfg'])
    lr = builder.build_lr_scheduler(cfg, cfg['iters'], tiny['cfg'])
    optimizer = builder.build_optimizer(cfg, model, lr, tiny['cfg'])
    model, optimizer = amp.prepare(model, optimizer, precision, level)
    convs = [layer for layer in model.sublayers()
             if isinstance(layer, (paddle.nn.Conv1D, paddle.nn.Conv2D))]
    assert convs and {layer.weight.dtype for layer in convs} == {paddle.float16}
    scaler = amp.make_grad_scaler(precision)
    assert scaler.is_enable()

    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((2, 3, 64, 64)).astype('float32'))
    label = paddle.to_tensor(rng.integers(0, model.num_classes, (2, 64, 64)).astype('int64'))
    model.train()
    for _ in range(2):
        with amp.autocast(precision, level):
            outputs = model(x)
            terms = compute_losses(outputs, label, losses)
            loss = paddle.add_n(terms)
        assert outputs[1][1].dtype == paddle.float32  # the points
        assert all(t.dtype == paddle.float32 for t in terms)
        assert np.isfinite([float(t) for t in terms]).all()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.clear_grad()

    state = model.state_dict()
    floats = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)
    assert {v.dtype for v in state.values() if v.dtype in floats} == {paddle.float32}
    opt_state = optimizer.state_dict()
    assert 'master_weights' in opt_state and opt_state['master_weights']
    assert amp.scaler_state(scaler)['scale'][0] > 0

    # a fresh O2 model takes the float32 checkpoint through the dtype match
    # (set_state_dict alone refuses float32 values for float16 weights)
    paddle.seed(6)
    _, again = tools.build(tiny['cfg'])
    again, _ = amp.prepare(again, None, precision, level)
    with pytest.raises(AssertionError):
        again.set_state_dict(state)
    again.set_state_dict(amp.match_state_dtypes(again, state))
    fresh = amp.make_grad_scaler(precision)
    assert amp.load_scaler_state(fresh, amp.scaler_state(scaler))
    assert fresh.state_dict()['incr_count'] == scaler.state_dict()['incr_count']
    again.eval()
    model.eval()
    with amp.autocast(precision, level):
        a, b = model(x)[0], again(x)[0]
    assert a.dtype == b.dtype == paddle.float32  # inference output is float32
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)
