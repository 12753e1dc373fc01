"""Learning-rate schedules, registered in ``manager.LR_SCHEDULERS``.

Importing this package (the config builder does, lazily) registers
``PolynomialDecay`` (with optional linear warmup), ``CosineAnnealingDecay``
and ``PiecewiseDecay``. A schedule with an ``iters`` parameter receives the
number of training iterations from the builder.
"""

from lr_scheduler.poly_warmup import PolynomialDecay
from lr_scheduler.paddle_schedules import CosineAnnealingDecay, PiecewiseDecay

__all__ = ['PolynomialDecay', 'CosineAnnealingDecay', 'PiecewiseDecay']
