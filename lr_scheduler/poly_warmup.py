"""Compatibility module: :class:`paddleseg.optimizers.lr.PolynomialDecay`."""

from paddleseg.optimizers.lr import PolynomialDecay

__all__ = ['PolynomialDecay']
