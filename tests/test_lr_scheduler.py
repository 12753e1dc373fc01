"""The learning-rate schedules of paddleseg.optimizers.lr, as the seed's
``from lr_scheduler import ...`` sees them."""

import math

import paddle
import pytest
from paddle.optimizer import lr as paddle_lr

from lr_scheduler import CosineAnnealingDecay, PiecewiseDecay, PolynomialDecay
from paddleseg.cvlibs import manager


def values(scheduler, steps):
    """The rate at steps 0 .. steps-1."""
    out = []
    for _ in range(steps):
        out.append(scheduler())
        scheduler.step()
    return out


def test_the_top_level_package_re_exports_the_package_schedules():
    import lr_scheduler.paddle_schedules
    import lr_scheduler.poly_warmup
    from paddleseg.optimizers import lr
    assert (PolynomialDecay, CosineAnnealingDecay, PiecewiseDecay) == (
        lr.PolynomialDecay, lr.CosineAnnealingDecay, lr.PiecewiseDecay)
    assert lr_scheduler.poly_warmup.PolynomialDecay is lr.PolynomialDecay
    assert lr_scheduler.paddle_schedules.PiecewiseDecay is lr.PiecewiseDecay
    assert PolynomialDecay.__module__ == 'paddleseg.optimizers.lr'


def test_registered():
    assert manager.LR_SCHEDULERS.get('PolynomialDecay') is PolynomialDecay
    assert manager.LR_SCHEDULERS.get('CosineAnnealingDecay') is (
        CosineAnnealingDecay)
    assert manager.LR_SCHEDULERS.get('PiecewiseDecay') is (
        paddle_lr.PiecewiseDecay) is PiecewiseDecay


def test_equals_paddle_linear_warmup_around_polynomial_decay():
    ours = PolynomialDecay(0.01, end_lr=1e-5, power=0.9, warmup_iters=3,
                           warmup_start_lr=1e-5, iters=13)
    reference = paddle_lr.LinearWarmup(
        paddle_lr.PolynomialDecay(0.01, decay_steps=10, end_lr=1e-5,
                                  power=0.9),
        warmup_steps=3, start_lr=1e-5, end_lr=0.01)
    assert values(ours, 20) == values(reference, 20)


def test_without_warmup_equals_paddle_polynomial_decay():
    ours = PolynomialDecay(0.1, end_lr=0.0, power=0.9, iters=7)
    reference = paddle_lr.PolynomialDecay(0.1, decay_steps=7, end_lr=0.0,
                                          power=0.9)
    assert values(ours, 10) == values(reference, 10)


def test_values_by_hand():
    # warmup 0 -> 0.01 over 4 steps, then linear (power 1) decay to 0 over 4.
    scheduler = PolynomialDecay(0.01, decay_steps=4, end_lr=0.0, power=1.0,
                                warmup_iters=4, warmup_start_lr=0.0)
    expected = [0.0, 0.0025, 0.005, 0.0075, 0.01, 0.0075, 0.005, 0.0025,
                0.0, 0.0]
    assert values(scheduler, 10) == pytest.approx(expected, abs=1e-15)


def test_seed_recipe_poly_clock_starts_after_warmup():
    # lr 0.01, 1000 warmup iters from 1e-5, poly 0.9 to 1e-5, 80k iters.
    scheduler = PolynomialDecay(0.01, end_lr=1e-5, power=0.9,
                                warmup_iters=1000, warmup_start_lr=1e-5,
                                iters=80000)
    assert scheduler.decay_steps == 79000
    at = {}
    for step in range(80001):
        if step in (0, 500, 1000, 40500, 80000):
            at[step] = scheduler()
        scheduler.step()
    assert at[0] == pytest.approx(1e-5)
    assert at[500] == pytest.approx((0.01 - 1e-5) * 0.5 + 1e-5)
    assert at[1000] == pytest.approx(0.01)
    assert at[40500] == pytest.approx((0.01 - 1e-5) * 0.5 ** 0.9 + 1e-5)
    assert at[80000] == pytest.approx(1e-5)


def test_explicit_decay_steps_wins_over_iters():
    scheduler = PolynomialDecay(1.0, decay_steps=2, power=1.0, iters=100)
    assert values(scheduler, 4) == [1.0, 0.5, 0.0, 0.0]


def test_resume_from_state_dict():
    def make():
        return PolynomialDecay(0.01, end_lr=1e-4, warmup_iters=2, iters=10)

    first = make()
    values(first, 5)
    state = first.state_dict()
    assert state == {'last_epoch': 5, 'last_lr': first()}
    resumed = make()
    resumed.set_state_dict(state)
    assert resumed() == first()
    assert values(resumed, 6) == values(first, 6)


def test_drives_an_optimizer():
    scheduler = PolynomialDecay(0.01, warmup_iters=2, warmup_start_lr=0.0,
                                iters=10)
    optimizer = paddle.optimizer.SGD(learning_rate=scheduler,
                                     parameters=paddle.nn.Linear(2, 2)
                                     .parameters())
    scheduler.step()
    assert optimizer.get_lr() == pytest.approx(0.005)


@pytest.mark.parametrize('kwargs, message', [
    ({}, 'give decay_steps, or iters to derive it'),
    ({'iters': 5, 'warmup_iters': 5},
     r'iters \(5\) must be larger than warmup_iters \(5\)'),
    ({'decay_steps': 0}, 'decay_steps must be a positive integer'),
    ({'decay_steps': 2.5}, 'decay_steps must be a positive integer'),
    ({'decay_steps': 5, 'warmup_iters': -1},
     'warmup_iters must be a positive integer'),
    ({'decay_steps': 5, 'power': 0}, 'power must be positive'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolynomialDecay(0.01, **kwargs)


def test_cosine_half_period_defaults_to_iters():
    scheduler = CosineAnnealingDecay(1.0, iters=4)
    expected = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(5)]
    assert values(scheduler, 5) == pytest.approx(expected)
    assert CosineAnnealingDecay(1.0, T_max=8, iters=4).T_max == 8
