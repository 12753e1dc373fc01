"""Compatibility module: the schedules of :mod:`paddleseg.optimizers.lr`
that wrap paddle's own."""

from paddleseg.optimizers.lr import CosineAnnealingDecay, PiecewiseDecay

__all__ = ['CosineAnnealingDecay', 'PiecewiseDecay']
