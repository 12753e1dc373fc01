"""Compatibility package: the learning-rate schedules of the original
repository's ``from lr_scheduler import ...``.

The schedules live in :mod:`paddleseg.optimizers.lr` (registered in
``manager.LR_SCHEDULERS`` when :mod:`paddleseg.cvlibs` is imported); this
package only re-exports them, so both import paths give the same classes.
"""

from paddleseg.optimizers.lr import (CosineAnnealingDecay, PiecewiseDecay,
                                     PolynomialDecay)

__all__ = ['PolynomialDecay', 'CosineAnnealingDecay', 'PiecewiseDecay']
