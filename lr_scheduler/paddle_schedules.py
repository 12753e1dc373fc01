"""Paddle's own schedules, registered under their paddle names."""

import paddle

from paddleseg.cvlibs import manager

__all__ = ['CosineAnnealingDecay', 'PiecewiseDecay']

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
