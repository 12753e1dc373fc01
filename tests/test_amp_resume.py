"""Resuming an optimizer state across precisions, on the CPU build.

A checkpoint saved in fp32, O1, O2 (ours: canonical names) or by PaddleSeg
(paddle's names of the saving process, fp32 or O2) is resumed in fp32, O1
and O2, in a process that names the parameters differently (layers built
before the model); and ours are resumed PaddleSeg's way (a fresh process,
plain ``set_state_dict``) in their own precision. Each time the optimizer creates its accumulators as
its first step does (``_create_accumulators``: where paddle asserts
"Optimizer set error ... should in state dict") and must find every saved
velocity, and under O2 float32 master weights with the exact saved (or
checkpoint) values.

O2 is simulated as ``paddle.amp.decorate(level='O2')`` does it on a GPU
(paddle's own ``amp_initialize`` casts the weights to float16 except the
norms, the optimizer is made multi-precision, ``state_dict()`` saves float32);
on a CPU place paddle's decorate returns the model untouched, and the CPU
momentum kernel has no float16, so no real step runs here.
"""

import os

import numpy as np
import paddle
import pytest
from paddle.amp.auto_cast import StateDictHook, _set_multi_precision, amp_initialize

from paddleseg.core import amp
from paddleseg.core.optim_state import (MASTER_KEY, load_optimizer_state, optimizer_state,
                                        param_names, uses_master_weight)
from paddleseg.core.options import TrainOptions
from paddleseg.core.trainer import Trainer
from paddleseg.models.losses import CrossEntropyLoss
from paddleseg.utils.checkpoint import save_checkpoint

SOURCES = ['fp32', 'O1', 'O2', 'paddleseg', 'paddleseg_O2']
TARGETS = ['fp32', 'O1', 'O2']
# not representable in float16: the master weights must keep it
FINE = 1e-4


def _net(layers_before=0):
    for _ in range(layers_before):  # another process's names
        paddle.nn.Conv2D(1, 1, 1)
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4),
                                paddle.nn.Conv2D(4, 2, 1))


def fake_o2(model, optimizer):
    """What ``paddle.amp.decorate(level='O2', master_weight=True,
    save_dtype='float32')`` does on a GPU."""
    amp_initialize(models=[model], dtype='float16', excluded_layers=None)
    if optimizer is not None:
        _set_multi_precision(optimizer, True)
    for layer in model.sublayers(include_self=True):
        layer.register_state_dict_hook(StateDictHook('float32'))
    return model, optimizer


def _prepared(level, layers_before=0):
    net = _net(layers_before)
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=net.parameters())
    if level.endswith('O2'):
        fake_o2(net, opt)
    return net, opt


def _first_step(opt, net):
    """The accumulators (and master weights) the optimizer's first step makes."""
    block = paddle.static.default_main_program().global_block()
    opt._create_accumulators(block, [p for p in net.parameters() if not p.stop_gradient])


def _trainable(net):
    return [(n, p) for n, p in net.named_parameters() if not p.stop_gradient]


def _velocity(opt, p):
    return opt._get_accumulator_master('velocity', p).numpy()


def _exact(net):
    """The float32 weights the run trains (fp32: the weights, O2: the masters)
    of a trained state, distinct in each element and not float16-representable."""
    return {n: (np.arange(p.size, dtype='float32').reshape(p.shape) * 0.01 + i + FINE)
            for i, (n, p) in enumerate(_trainable(net))}


def _save(level, folder):
    """A checkpoint of ``level`` after some training: velocities ``i + 0.5``
    (for the i-th parameter), the weights (O2: the masters) :func:`_exact`."""
    net, opt = _prepared(level, layers_before=5)
    exact = _exact(net)
    _first_step(opt, net)
    for i, (n, p) in enumerate(_trainable(net)):
        opt._get_accumulator_master('velocity', p).set_value(
            np.full(p.shape, i + 0.5, 'float32'))
        if uses_master_weight(opt, p):
            opt._master_weights[p.name].set_value(exact[n])
        p.set_value(amp.match_state_dtypes(net, {n: exact[n]})[n])
    if level.startswith('paddleseg'):  # paddle's names, no meta
        os.makedirs(folder)
        paddle.save(net.state_dict(), os.path.join(folder, 'model.pdparams'))
        paddle.save(opt.state_dict(), os.path.join(folder, 'model.pdopt'))
        return None
    save_checkpoint({'model.pdparams': net.state_dict(),
                     'model.pdopt': optimizer_state(opt, net)}, folder,
                    meta={'iter': 2, 'seed': 1, 'optimizer_params': param_names(net)})
    return param_names(net)


@pytest.mark.parametrize('target', TARGETS)
@pytest.mark.parametrize('source', SOURCES)
def test_every_precision_resumes_in_every_other(tmp_path, source, target):
    names = _save(source, str(tmp_path / 'ckpt'))
    weights = paddle.load(str(tmp_path / 'ckpt' / 'model.pdparams'))
    state = paddle.load(str(tmp_path / 'ckpt' / 'model.pdopt'))
    net, opt = _prepared('fp32', layers_before=2)
    net.set_state_dict(weights)  # as Checkpointer.resume: fp32 weights, then prepare
    if target == 'O2':
        fake_o2(net, opt)
    load_optimizer_state(opt, net, state, names=names, weights=weights)
    _first_step(opt, net)  # raised "Optimizer set error ... should in state dict"
    exact = _exact(net)
    for i, (n, p) in enumerate(_trainable(net)):
        np.testing.assert_array_equal(_velocity(opt, p), np.full(p.shape, i + 0.5), err_msg=n)
        if uses_master_weight(opt, p):
            master = opt._master_weights[p.name]
            assert master.dtype == paddle.float32 and master.name.startswith(p.name)
            np.testing.assert_allclose(master.numpy(), exact[n], rtol=0, atol=1e-6,
                                       err_msg=n)
        else:  # from an O2 checkpoint: its master weights, not the float16 rounding
            np.testing.assert_allclose(p.numpy(), exact[n], rtol=0, atol=1e-6, err_msg=n)
    assert (net[0].weight.dtype == paddle.float16) == (target == 'O2')


def test_an_o2_state_is_saved_in_a_fresh_process_names(tmp_path):
    """Our O2 ``model.pdopt``: canonical names for the master-keyed
    accumulators and for the master weights themselves (PaddleSeg's O2
    resume asks for ``<master name>_velocity_0``)."""
    _save('O2', str(tmp_path / 'ckpt'))
    state = paddle.load(str(tmp_path / 'ckpt' / 'model.pdopt'))
    assert 'conv2d_0.w_0_fp32_master_0_velocity_0' in state
    assert 'batch_norm2d_0.w_0_velocity_0' in state
    assert {k: v.name for k, v in state[MASTER_KEY].items()} == {
        p: p + '_fp32_master_0' for p in ('conv2d_0.w_0', 'conv2d_0.b_0',
                                          'conv2d_1.w_0', 'conv2d_1.b_0')}


def test_the_trainer_restores_the_optimizer_after_preparing_it(tmp_path, monkeypatch):
    """Trainer: an fp32 checkpoint resumed with ``--amp_level O2`` (decorate
    simulated) finds its velocities under the master weights' names."""
    _save('fp32', str(tmp_path / 'run' / 'iter_2'))
    monkeypatch.setattr(paddle.amp, 'decorate', lambda models, optimizers, **kw:
                        fake_o2(models, optimizers))
    net, opt = _prepared('fp32', layers_before=1)
    opts = TrainOptions(iters=4, batch_size=1, save_dir=str(tmp_path / 'run'),
                        resume_model='auto', precision='fp16', amp_level='O2')
    trainer = Trainer(net, [], {'types': [CrossEntropyLoss()], 'coef': [1.0]}, opt, opts)
    assert trainer.state.start_iter == 2 and net[0].weight.dtype == paddle.float16
    _first_step(trainer.optimizer, net)
    exact = _exact(net)
    for i, (n, p) in enumerate(_trainable(net)):
        np.testing.assert_array_equal(_velocity(opt, p), np.full(p.shape, i + 0.5), err_msg=n)
    np.testing.assert_allclose(opt._master_weights[net[0].weight.name].numpy(),
                               exact['0.weight'], rtol=0, atol=1e-6)


@pytest.mark.parametrize('source', ['fp32', 'O1', 'O2'])
def test_paddleseg_resumes_ours_in_the_same_precision(tmp_path, source):
    """PaddleSeg's resume: a fresh process (a fresh name generator here) and
    plain ``optimizer.set_state_dict``; our O2 state's master weights carry
    the names its accumulators are keyed by."""
    _save(source, str(tmp_path / 'ckpt'))
    state = paddle.load(str(tmp_path / 'ckpt' / 'model.pdopt'))
    with paddle.utils.unique_name.guard():
        net, opt = _prepared('fp32')
        net.set_state_dict(paddle.load(str(tmp_path / 'ckpt' / 'model.pdparams')))
        if source == 'O2':
            fake_o2(net, opt)
        opt.set_state_dict(state)
        _first_step(opt, net)
    exact = _exact(net)
    for i, (n, p) in enumerate(_trainable(net)):
        np.testing.assert_array_equal(_velocity(opt, p), np.full(p.shape, i + 0.5), err_msg=n)
        if uses_master_weight(opt, p):
            np.testing.assert_allclose(opt._master_weights[p.name].numpy(), exact[n],
                                       rtol=0, atol=1e-6, err_msg=n)
