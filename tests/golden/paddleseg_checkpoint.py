"""PaddleSeg 2.8.0's side of the checkpoint checks (run with the venv's Python).

Run from outside the repository (``cd /tmp``) so that PyPI paddleseg is
imported, not this repository's. The model is PaddleSeg's PointRend on
ResNet18_vd (output stride 8, 19 classes) and the optimizer is built as
PaddleSeg's ``SegBuilder`` builds ``optimizer: {type: sgd, momentum: 0.9,
weight_decay: 4.0e-5}`` (``paddleseg.optimizers.Momentum``, which makes a
``paddle.optimizer.Momentum``).

``python paddleseg_checkpoint.py save OUT``
    Trains 2 steps on random data as PaddleSeg's loop does
    (``paddleseg.core.train.loss_computation``, ``optimizer.step``,
    ``lr.step``; its CrossEntropyLoss needs :class:`float_ones_like_of_integers`
    on paddle 3) and saves ``OUT/iter_2/`` as that loop does: only
    ``model.pdparams`` and ``model.pdopt``. Writes ``OUT/truth.json``: every
    key of ``model.pdopt`` in the file's order with its shape and the
    structured name of its parameter in PaddleSeg's model.

``python paddleseg_checkpoint.py load CKPT OUT.npz [WARMUP]``
    Builds PaddleSeg's model and optimizer (its lr schedule a
    ``LinearWarmup`` around ``PolynomialDecay`` when ``WARMUP`` > 0, as
    PaddleSeg's builder makes for ``warmup_iters``), resumes ``CKPT`` with
    PaddleSeg's own ``paddleseg.utils.resume``, makes the optimizer create
    its accumulators as its first step would (for the parameters that get a
    gradient; each is looked up in the loaded state by the name this
    process gives it) and writes every
    velocity by structured parameter name, the iteration and the schedule's
    ``last_epoch`` to ``OUT.npz``.

``python paddleseg_checkpoint.py fixture``
    Writes ``paddleseg_pdopt_r18.json`` next to this file from a ``save``
    run: the keys (in order), shapes and structured names of PaddleSeg's
    ``model.pdopt``, checked by ``tests/test_paddleseg_checkpoints.py``
    without the venv.
"""

import json
import os
import sys
import tempfile

import numpy as np
import paddle

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, 'paddleseg_pdopt_r18.json')
ITERS = 4


def build_model():
    from paddleseg.models import PointRend
    from paddleseg.models.backbones import ResNet18_vd
    return PointRend(num_classes=19, backbone=ResNet18_vd(output_stride=8),
                     backbone_indices=[0, 1, 2, 3], fpn_inplanes=[64, 128, 256, 512])


def build_optimizer(model, warmup=0):
    from paddleseg.optimizers import Momentum
    lr = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=max(ITERS - warmup, 1),
                                             end_lr=0.0, power=0.9)
    if warmup:
        lr = paddle.optimizer.lr.LinearWarmup(lr, warmup_steps=warmup, start_lr=1.0e-5,
                                              end_lr=0.01)
    return Momentum(momentum=0.9, weight_decay=4.0e-5)(model, lr), lr


class float_ones_like_of_integers:
    """Work around paddleseg 2.8.0's CrossEntropyLoss on paddle 3.

    Without class weights it divides by ``mean(mask * ones_like(label))``,
    a float32 times an int64 tensor, which paddle 3 refuses to promote.
    Inside this context ``paddle.ones_like`` of an integer tensor (without a
    dtype) is float32; every other call is passed through unchanged.
    """

    def __enter__(self):
        self._ones_like = original = paddle.ones_like

        def ones_like(x, dtype=None, name=None):
            if dtype is None and 'int' in str(x.dtype):
                dtype = 'float32'
            return original(x, dtype=dtype, name=name)
        paddle.ones_like = ones_like
        return self

    def __exit__(self, *exc):
        paddle.ones_like = self._ones_like


def _forward_backward(model, rng):
    """A training forward and backward pass on a random batch, with
    PaddleSeg's ``loss_computation`` of its two PointRend losses."""
    from paddleseg.core.train import loss_computation
    from paddleseg.models.losses import CrossEntropyLoss, PointCrossEntropyLoss
    losses = {'types': [CrossEntropyLoss(), PointCrossEntropyLoss()], 'coef': [1, 1]}
    model.train()
    images = paddle.to_tensor(rng.standard_normal((2, 3, 64, 128)).astype('float32'))
    labels = paddle.to_tensor(rng.integers(0, 19, (2, 64, 128)).astype('int64'))
    with float_ones_like_of_integers():
        loss = sum(loss_computation(model(images), labels, None, losses))
    loss.backward()


def save(out):
    paddle.seed(3)
    model = build_model()
    optimizer, lr = build_optimizer(model)
    rng = np.random.default_rng(3)
    for _ in range(2):
        _forward_backward(model, rng)
        optimizer.step()
        lr.step()
        model.clear_gradients()
    folder = os.path.join(out, 'iter_2')
    os.makedirs(folder, exist_ok=True)
    paddle.save(model.state_dict(), os.path.join(folder, 'model.pdparams'))
    paddle.save(optimizer.state_dict(), os.path.join(folder, 'model.pdopt'))
    structured = {p.name: n for n, p in model.named_parameters()}
    keys = []
    for key, value in optimizer.state_dict().items():
        if key == 'LR_Scheduler':
            continue
        param = max((n for n in structured if key.startswith(n + '_')), key=len)
        keys.append([key, list(value.shape), structured[param]])
    with open(os.path.join(out, 'truth.json'), 'w') as f:
        json.dump({'keys': keys, 'LR_Scheduler': optimizer.state_dict()['LR_Scheduler'],
                   'trainable': [n for n, p in model.named_parameters()
                                 if not p.stop_gradient]}, f, indent=1)
    return out


def load(ckpt, out, warmup=0):
    from paddleseg.utils import resume
    model = build_model()
    optimizer, lr = build_optimizer(model, warmup)
    it = resume(model, optimizer, ckpt)
    # what its first step does: accumulators for the parameters that have a
    # gradient (PointRend's neck.fpn_out.3 never has one), each looked up
    # in the loaded state by the name this process gives it
    _forward_backward(model, np.random.default_rng(5))
    params = [p for p in model.parameters() if not p.stop_gradient and p.grad is not None]
    block = paddle.static.default_main_program().global_block()
    optimizer._create_accumulators(block, params)
    velocity = optimizer._accumulators[optimizer._velocity_acc_str]
    names = {p.name: n for n, p in model.named_parameters()}
    arrays = {'v/' + names[p.name]: velocity[p.name].numpy() for p in params}
    np.savez(out, iter=it, last_epoch=lr.last_epoch, **arrays)
    return out


def fixture():
    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        with open(os.path.join(tmp, 'truth.json')) as f:
            truth = json.load(f)
    made_by = ('tests/golden/paddleseg_checkpoint.py fixture (PyPI paddleseg 2.8.0, '
               'paddle {})'.format(paddle.__version__))
    with open(FIXTURE, 'w') as f:   # one key per line
        f.write('{{"made_by": {},\n "keys": [\n'.format(json.dumps(made_by)))
        f.write(',\n'.join('  ' + json.dumps(k) for k in truth['keys']))
        f.write('],\n "trainable": [\n')
        f.write(',\n'.join('  ' + json.dumps(n) for n in truth['trainable']))
        f.write(']}\n')


if __name__ == '__main__':
    sys.path.insert(0, HERE)
    import golden_weights
    golden_weights.require_reference()
    command = sys.argv[1]
    if command == 'save':
        save(sys.argv[2])
    elif command == 'load':
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif command == 'fixture':
        fixture()
    else:
        raise SystemExit('usage: paddleseg_checkpoint.py save OUT | load CKPT OUT.npz '
                         '[WARMUP] | fixture')
