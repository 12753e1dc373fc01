"""Optimizer factories, registered in ``manager.OPTIMIZERS``.

A config's ``optimizer: {type: sgd, momentum: 0.9, weight_decay: 5.0e-4}``
names one of them; the builder calls it with ``parameters`` (the model's)
and ``learning_rate`` (the built schedule), which a config therefore must
not set (see :mod:`paddleseg.cvlibs.schema`).
"""

import paddle

from paddleseg.cvlibs import manager

__all__ = ['sgd', 'Momentum', 'adam', 'adamw']


def _l2_decay(weight_decay):
    """A float weight decay as an L2 regularizer (None stays None)."""
    if weight_decay is None:
        return None
    return paddle.regularizer.L2Decay(weight_decay)


def _grad_clip(grad_clip_norm):
    """Clip gradients by global norm when ``grad_clip_norm`` is given."""
    if grad_clip_norm is None:
        return None
    return paddle.nn.ClipGradByGlobalNorm(grad_clip_norm)


def sgd(parameters, learning_rate, momentum=0.0, weight_decay=None,
        grad_clip_norm=None):
    """SGD; with ``momentum`` > 0 (PaddleSeg configs use 0.9) it is
    ``paddle.optimizer.Momentum``, otherwise plain ``paddle.optimizer.SGD``.

    Args:
        parameters: The parameters to optimize (supplied by the builder).
        learning_rate (float | LRScheduler): Supplied by the builder.
        momentum (float): Default 0.0 (no momentum).
        weight_decay (float, optional): L2 regularization coefficient
            (``paddle.regularizer.L2Decay``). Default: none.
        grad_clip_norm (float, optional): Clip gradients to this global
            norm. Default: no clipping.
    """
    if momentum:
        return Momentum(parameters, learning_rate, momentum=momentum,
                        weight_decay=weight_decay,
                        grad_clip_norm=grad_clip_norm)
    return paddle.optimizer.SGD(
        learning_rate=learning_rate, parameters=parameters,
        weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def Momentum(parameters, learning_rate, momentum=0.9, weight_decay=None,
             use_nesterov=False, grad_clip_norm=None):
    """``paddle.optimizer.Momentum``; ``weight_decay`` (default none) is an
    L2Decay coefficient, ``grad_clip_norm`` (default none) a global-norm
    clip."""
    return paddle.optimizer.Momentum(
        learning_rate=learning_rate, momentum=momentum, parameters=parameters,
        use_nesterov=use_nesterov, weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def adam(parameters, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8,
         weight_decay=None, grad_clip_norm=None):
    """``paddle.optimizer.Adam``; ``weight_decay`` (default none) is an
    L2Decay coefficient added to the gradient, ``grad_clip_norm`` (default
    none) a global-norm clip."""
    return paddle.optimizer.Adam(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2,
        epsilon=epsilon, parameters=parameters,
        weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def adamw(parameters, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8,
          weight_decay=0.01, grad_clip_norm=None):
    """``paddle.optimizer.AdamW``; ``weight_decay`` (default 0.01) is the
    decoupled decay coefficient, ``grad_clip_norm`` (default none) a
    global-norm clip."""
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2,
        epsilon=epsilon, parameters=parameters, weight_decay=weight_decay,
        grad_clip=_grad_clip(grad_clip_norm))


for _name, _factory in (('sgd', sgd), ('SGD', sgd), ('Momentum', Momentum),
                        ('adam', adam), ('Adam', adam), ('adamw', adamw),
                        ('AdamW', adamw)):
    manager.OPTIMIZERS.add_component(_factory, name=_name)
del _name, _factory
