"""Optimizers and learning-rate schedules that configs can name.

Importing this package registers the optimizer factories (``sgd``, ``SGD``,
``Momentum``, ``adam``, ``Adam``, ``adamw``, ``AdamW``) in
``manager.OPTIMIZERS`` and the schedules (``PolynomialDecay`` with optional
linear warmup, ``CosineAnnealingDecay``, ``PiecewiseDecay``) in
``manager.LR_SCHEDULERS``. The config builder imports it, so a config can
name them as soon as :mod:`paddleseg.cvlibs` is imported.

The top-level ``lr_scheduler`` package of the original repository re-exports
the schedules from here.
"""

from paddleseg.optimizers.lr import (CosineAnnealingDecay, PiecewiseDecay,
                                     PolynomialDecay)
from paddleseg.optimizers.optimizer import Momentum, adam, adamw, sgd

__all__ = ['PolynomialDecay', 'CosineAnnealingDecay', 'PiecewiseDecay',
           'sgd', 'Momentum', 'adam', 'adamw']
