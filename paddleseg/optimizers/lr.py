"""Learning-rate schedules, registered in ``manager.LR_SCHEDULERS``.

A schedule whose constructor has an ``iters`` parameter receives the number
of training iterations from the config builder.

``PolynomialDecay``: polynomial decay with an optional linear warmup, as one
scheduler.

It reproduces ``paddle.optimizer.lr.LinearWarmup`` wrapped around
``paddle.optimizer.lr.PolynomialDecay``, the schedule the original
PointRend-Paddle training used (1000 warmup iterations from 1e-5, then poly
decay with power 0.9 to 1e-5 over the remaining iterations). Being a single
``LRScheduler``, its ``state_dict()`` is just the step count and last value,
and ``set_state_dict()`` resumes it.

At step ``t`` (0-based, ``lr`` = ``learning_rate``, ``w`` =
``warmup_iters``):

* ``t < w``: ``warmup_start_lr + (lr - warmup_start_lr) * t / w``;
* ``t >= w``: ``(lr - end_lr) * (1 - s / decay_steps) ** power + end_lr``
  with ``s = min(t - w, decay_steps)``.

The poly clock starts when the warmup ends (``t - w``), as in
``LinearWarmup``, which steps the inner schedule with ``last_epoch -
warmup_steps``; hence ``decay_steps`` defaults to ``iters - w``, so the
schedule reaches ``end_lr`` at the last iteration.
"""

import paddle

from paddleseg.cvlibs import manager

__all__ = ['PolynomialDecay', 'CosineAnnealingDecay', 'PiecewiseDecay']


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError('{} must be a positive integer, got {!r}'.format(
            name, value))


@manager.LR_SCHEDULERS.add_component
class PolynomialDecay(paddle.optimizer.lr.LRScheduler):
    """Linear warmup, then polynomial decay (formulas in the module doc).

    Args:
        learning_rate (float): The peak rate: where the warmup ends and the
            decay starts.
        decay_steps (int, optional): Length of the decay. Default:
            ``iters - warmup_iters``.
        end_lr (float): The rate the decay ends at, kept afterwards.
            Default 0.0.
        power (float): Exponent of the decay. Default 0.9.
        warmup_iters (int): Length of the linear warmup; 0 disables it.
            Default 0.
        warmup_start_lr (float): The rate at step 0 of the warmup.
            Default 1.0e-5.
        iters (int, optional): Training iterations, supplied by the config
            builder; only used for the ``decay_steps`` default.
        last_epoch (int): Index of the last step; -1 starts afresh.
        verbose (bool): Print every update. Default False.

    Raises:
        ValueError: neither ``decay_steps`` nor ``iters`` is given,
            ``iters`` does not exceed ``warmup_iters`` (without
            ``decay_steps``), a step count is not a positive integer
            (``warmup_iters`` may be 0), or ``power`` is not positive.
    """

    def __init__(self, learning_rate, decay_steps=None, end_lr=0.0, power=0.9,
                 warmup_iters=0, warmup_start_lr=1.0e-5, iters=None,
                 last_epoch=-1, verbose=False):
        if decay_steps is None:
            if iters is None:
                raise ValueError('give decay_steps, or iters to derive it')
            if iters <= warmup_iters:
                raise ValueError('iters ({}) must be larger than warmup_iters '
                                 '({})'.format(iters, warmup_iters))
            decay_steps = iters - warmup_iters
        _check_positive_int('decay_steps', decay_steps)
        if warmup_iters:
            _check_positive_int('warmup_iters', warmup_iters)
        if power <= 0:
            raise ValueError('power must be positive, got {!r}'.format(power))
        self.decay_steps = decay_steps
        self.end_lr = end_lr
        self.power = power
        self.warmup_iters = warmup_iters
        self.warmup_start_lr = warmup_start_lr
        super().__init__(learning_rate, last_epoch, verbose)

    def get_lr(self):
        """The learning rate at step ``self.last_epoch``."""
        step = self.last_epoch
        if step < self.warmup_iters:
            return (self.base_lr - self.warmup_start_lr) * float(step) / float(
                self.warmup_iters) + self.warmup_start_lr
        step = min(step - self.warmup_iters, self.decay_steps)
        return (self.base_lr - self.end_lr) * (
            (1 - float(step) / float(self.decay_steps)) ** self.power
        ) + self.end_lr


# paddle's own schedules, registered under their paddle names
PiecewiseDecay = manager.LR_SCHEDULERS.add_component(
    paddle.optimizer.lr.PiecewiseDecay)


@manager.LR_SCHEDULERS.add_component
class CosineAnnealingDecay(paddle.optimizer.lr.CosineAnnealingDecay):
    """``paddle.optimizer.lr.CosineAnnealingDecay`` whose half period
    ``T_max`` defaults to ``iters`` (the training length, supplied by the
    builder).

    Args:
        learning_rate (float): The initial (highest) learning rate.
        T_max (int, optional): Iterations from the highest to the lowest
            value. Default: ``iters``.
        eta_min (float): The lowest value. Default 0.0.
        iters (int, optional): Training iterations.
        last_epoch (int): Index of the last step; -1 starts afresh.
        verbose (bool): Print every update. Default False.
    """

    def __init__(self, learning_rate, T_max=None, eta_min=0.0, iters=None,
                 last_epoch=-1, verbose=False):
        super().__init__(learning_rate, iters if T_max is None else T_max,
                         eta_min, last_epoch, verbose)
