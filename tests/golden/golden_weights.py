"""Deterministic weights for the golden-fixture comparison.

Both sides (PyPI paddleseg 2.8.0 in a throw-away venv, and ours) fill every
parameter and BatchNorm statistic of a model from one seeded numpy generator,
visiting the state dict in sorted key order, so the fixtures need to store
only the seed, the inputs and the outputs. Imports nothing but numpy and
paddle so that it runs in either environment.
"""

import numpy as np
import paddle


def fill_state_dict(model, seed):
    """Overwrite every tensor of ``model.state_dict()`` from ``seed``.

    Conv/linear weights get N(0, 1/fan_in) (activations keep their scale
    through deep networks), BatchNorm scales U(0.5, 1.5), shifts and biases
    N(0, 0.1), running means N(0, 0.2) and running variances U(0.5, 2.0): the
    statistics are far from the (0, 1) defaults, so eval-mode BatchNorm is
    really exercised.
    """
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    bn_prefixes = {k[:-len('._mean')] for k in state if k.endswith('._mean')}
    values = {}
    for key in sorted(state):
        shape = list(state[key].shape)
        prefix, _, leaf = key.rpartition('.')
        if leaf == '_variance':
            arr = rng.uniform(0.5, 2.0, shape)
        elif leaf == '_mean':
            arr = rng.normal(0.0, 0.2, shape)
        elif prefix in bn_prefixes and leaf == 'weight':
            arr = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            arr = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        else:
            arr = rng.normal(0.0, 0.1, shape)
        values[key] = paddle.to_tensor(arr.astype('float32'))
    model.set_state_dict(values)
    return model


def make_inputs(seed):
    """The fixture inputs: an eval image [1, 3, 128, 256] and a training
    batch [2, 3, 64, 128], float32 in roughly [-1, 1]."""
    rng = np.random.default_rng(seed)
    eval_x = rng.uniform(-1, 1, (1, 3, 128, 256)).astype('float32')
    train_x = rng.uniform(-1, 1, (2, 3, 64, 128)).astype('float32')
    return eval_x, train_x
