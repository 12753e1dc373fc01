"""The training engine's parts: options, resume order, hooks, evaluation
settings, the stall watchdog. A 1x1-conv model on 8x8 images keeps every
run to a fraction of a second."""

import inspect
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from paddleseg.core import hooks as hooks_mod
from paddleseg.core import train
from paddleseg.core.stop import StallWatchdog, StopSignals
from paddleseg.core.options import TrainOptions
from paddleseg.core.state import TrainState
from paddleseg.core.trainer import Trainer
from paddleseg.utils.dist import resolve_resume as _resolve_resume
from paddleseg.errors import ConfigError
from paddleseg.models.losses import CrossEntropyLoss
from train_helpers import TinyData  # tests/helpers


class TinySeg(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 1)
        self.bn = paddle.nn.BatchNorm2D(2)

    def forward(self, x):
        return [self.bn(self.conv(x))]




def _parts():
    model = TinySeg()
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    return model, optimizer, {'types': [CrossEntropyLoss()], 'coef': [1.0]}


def _weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_options_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        TrainOptions(10, 2)
    opts = TrainOptions(iters=10, batch_size=2, save_interval=4)
    assert opts.eval_interval == 4 and opts.eval_kwargs == {}
    with pytest.raises(ConfigError, match="nan_policy must be 'stop' or 'skip'"):
        TrainOptions(iters=1, batch_size=1, nan_policy='ignore')
    with pytest.raises(ConfigError, match='--log_iters must be a positive integer, got 0'):
        TrainOptions(iters=1, batch_size=1, log_iters=0)


def test_train_has_paddleseg_28s_signature_then_ours_keyword_only():
    """PaddleSeg 2.8's core.train arguments in its order (positional
    model, train_dataset, val_dataset, optimizer work), then ours."""
    names = ['model', 'train_dataset', 'val_dataset', 'optimizer', 'save_dir', 'iters',
             'batch_size', 'resume_model', 'save_interval', 'log_iters', 'num_workers',
             'use_vdl', 'use_ema', 'losses', 'keep_checkpoint_max', 'test_config',
             'precision', 'amp_level', 'profiler_options', 'to_static_training']
    ours = ['do_eval', 'seed', 'nan_policy', 'eval_kwargs', 'eval_interval',
            'stall_timeout', 'watchdog', 'hooks', 'lr_scheduler']
    params = inspect.signature(train).parameters
    assert list(params) == names + ours
    assert [params[n].default for n in ('iters', 'batch_size', 'save_dir')] == [
        10000, 2, 'output']
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in ours)


def test_resolve_resume_decides_in_one_place(tmp_path, capsys):
    assert _resolve_resume(str(tmp_path), None) is None
    assert _resolve_resume(str(tmp_path), 'some/iter_3') == 'some/iter_3'
    assert _resolve_resume(str(tmp_path), 'auto') is None
    assert 'No checkpoint in {} to resume from'.format(tmp_path) in capsys.readouterr().out
    model, optimizer, losses = _parts()
    train(model, TinyData(), losses=losses, optimizer=optimizer, iters=2, batch_size=2,
          save_dir=str(tmp_path), save_interval=1, seed=1)
    assert _resolve_resume(str(tmp_path), 'auto') == str(tmp_path / 'iter_2')


class Recorder(hooks_mod.HookBase):
    def __init__(self, fail_at=None):
        self.events, self.fail_at = [], fail_at

    def before_train(self):
        self.events.append('before_train')

    def before_step(self):
        self.events.append('before_step {}'.format(self.trainer.it))

    def after_step(self):
        self.events.append('after_step {} {}'.format(
            self.trainer.it, sorted(self.trainer.step_info)))
        if self.trainer.it == self.fail_at:
            raise RuntimeError('hook failed')

    def after_train(self):
        self.events.append('after_train')


def test_hooks_see_every_step_and_after_train_runs_on_errors(tmp_path):
    model, optimizer, losses = _parts()
    opts = TrainOptions(iters=2, batch_size=2, save_dir=str(tmp_path), seed=1)
    rec = Recorder()
    assert Trainer(model, TinyData(), losses, optimizer, opts, hooks=[rec]).run() == \
        {'miou': -1.0, 'iter': -1}
    info = "['batch_cost', 'finite_here', 'reader_cost', 'samples', 'skipped', 'terms']"
    assert rec.events == ['before_train', 'before_step 1', 'after_step 1 ' + info,
                          'before_step 2', 'after_step 2 ' + info, 'after_train']
    assert os.listdir(tmp_path) == []  # no checkpoint hook, nothing saved
    rec = Recorder(fail_at=1)
    with pytest.raises(RuntimeError, match='hook failed'):
        Trainer(model, TinyData(), losses, optimizer, opts, hooks=[rec]).run()
    assert rec.events[-1] == 'after_train'


def test_resume_loads_the_weights_and_prepares_amp_before_wrapping(tmp_path, monkeypatch):
    """DataParallel broadcasts rank 0's weights when it is built: by then the
    checkpoint's weights must be in the model."""
    model, optimizer, losses = _parts()
    train(model, TinyData(), losses=losses, optimizer=optimizer, iters=2, batch_size=2,
          save_dir=str(tmp_path), save_interval=2, seed=1)
    saved = _weights(model)
    order = []
    monkeypatch.setattr(Trainer, 'prepare_amp', lambda self, state=None: (
        order.append('prepare_amp'), setattr(self, 'scaler', None)))

    def wrap(self, net):
        order.append(('wrap', all(np.array_equal(v, saved[k])
                                  for k, v in _weights(net).items())))
        return net
    monkeypatch.setattr(Trainer, '_wrap', wrap)
    fresh, optimizer, losses = _parts()
    assert not all(np.array_equal(v, saved[k]) for k, v in _weights(fresh).items())
    opts = TrainOptions(iters=4, batch_size=2, save_dir=str(tmp_path), resume_model='auto')
    trainer = Trainer(fresh, TinyData(), losses, optimizer, opts)
    assert order == ['prepare_amp', ('wrap', True)]
    assert trainer.start_iter == 2 and trainer.seed == 1


@pytest.mark.parametrize('workers, used', [(0, 0), (1, 1), (8, hooks_mod.EVAL_WORKERS)])
def test_evaluation_during_training_uses_the_runs_precision_and_few_workers(
        monkeypatch, workers, used):
    seen = []

    def fake_evaluate(model, dataset, **kwargs):
        seen.append(kwargs)
        return {'miou': 0.5, 'acc': 0.5, 'kappa': 0.5}
    monkeypatch.setattr(hooks_mod, 'evaluate_details', fake_evaluate)
    model = TinySeg()
    hook = hooks_mod.EvalHook(TinyData())
    hook.trainer = SimpleNamespace(
        opts=TrainOptions(iters=4, batch_size=1, eval_interval=2, num_workers=workers,
                          amp_level='O2', eval_kwargs={'is_slide': False}),
        precision='fp16', net=model, model=model,
        state=TrainState(iteration=2, rank=1, nranks=1, signals=StopSignals()))
    hook.after_step()
    hook.state.iteration = 3  # not due
    hook.after_step()
    assert len(seen) == 1
    kwargs = seen[0]
    assert (kwargs['precision'], kwargs['amp_level'], kwargs['num_workers']) == \
        ('fp16', 'O2', used)
    assert kwargs['is_slide'] is False and kwargs['stop_requested']() == 0


def test_stall_watchdog_calls_back_once_per_stall():
    calls = []
    with StallWatchdog(0.2, on_stall=lambda t, what: calls.append((t, what))) as watchdog:
        with watchdog.guard('iter 1'):
            time.sleep(0.05)
        assert calls == []
        with watchdog.guard('iter 2'):
            time.sleep(1.2)
    assert calls == [(0.2, 'iter 2')]
    assert not any(t.name == 'paddleseg-watchdog' for t in threading.enumerate())
    idle = StallWatchdog(0)  # disabled: no thread, guard is a no-op
    with idle.guard('iter 3'):
        pass
    assert idle._thread is None


# -- hooks with state, the checkpointer, the lr scheduler ------------------------
class Counter(hooks_mod.HookBase):
    """A hook with a state of its own, kept in the checkpoints' meta."""

    def __init__(self):
        self.calls, self.loaded = 0, None

    def after_step(self):
        self.calls += 1

    def state_dict(self):
        return {'counter_calls': self.calls}

    def load_state_dict(self, meta):
        self.loaded = meta.get('counter_calls')
        self.calls = self.loaded or 0


def test_core_train_adds_hooks_to_the_defaults_and_a_hooks_state_is_resumed(tmp_path):
    from paddleseg.utils.checkpoint import read_meta
    model, optimizer, losses = _parts()
    counter = Counter()
    train(model, TinyData(), losses=losses, optimizer=optimizer, iters=2, batch_size=2,
          save_dir=str(tmp_path), save_interval=2, seed=1, hooks=[counter])
    assert counter.calls == 2
    meta = read_meta(str(tmp_path / 'iter_2'))  # the default checkpoint hook still ran
    # the layout of meta.json is the earlier one, plus the hook's key
    assert sorted(meta) == ['batch_size', 'best', 'counter_calls', 'files', 'iter', 'iters',
                            'nranks', 'optimizer_params', 'seed']
    assert meta['counter_calls'] == 2 and meta['best'] == {'miou': -1.0, 'iter': -1}
    again = Counter()
    model, optimizer, losses = _parts()
    opts = TrainOptions(iters=3, batch_size=2, save_dir=str(tmp_path), resume_model='auto')
    trainer = Trainer(model, TinyData(), losses, optimizer, opts,
                      hooks=hooks_mod.default_hooks(opts, extra=[again]))
    assert again.loaded == 2 and trainer.state.start_iter == 2
    trainer.run()
    assert again.calls == 3 and read_meta(str(tmp_path / 'iter_3'))['counter_calls'] == 3


def test_a_hook_state_may_not_overwrite_the_checkpoints_own_keys(tmp_path):
    class Bad(hooks_mod.HookBase):
        def state_dict(self):
            return {'iter': 0}
    model, optimizer, losses = _parts()
    with pytest.raises(ValueError, match="Bad.state_dict\\(\\) uses the checkpoint meta "
                                         "key\\(s\\) iter"):
        train(model, TinyData(), losses=losses, optimizer=optimizer, iters=1, batch_size=2,
              save_dir=str(tmp_path), save_interval=1, seed=1, hooks=[Bad()])


def test_the_best_model_hook_saves_best_model_and_gets_its_best_back_on_resume(tmp_path):
    from paddleseg.utils.checkpoint import read_meta
    model, optimizer, losses = _parts()
    best = train(model, TinyData(), val_dataset=TinyData(2), losses=losses,
                 optimizer=optimizer, iters=2, batch_size=2, save_dir=str(tmp_path),
                 save_interval=2, seed=1)
    assert best['iter'] == 2 and best['miou'] >= 0
    assert read_meta(str(tmp_path / 'best_model')) == {
        'iter': 2, 'miou': best['miou'], 'files': ['model.pdparams']}
    assert read_meta(str(tmp_path / 'iter_2'))['best'] == best
    model, optimizer, losses = _parts()
    opts = TrainOptions(iters=3, batch_size=2, save_dir=str(tmp_path), resume_model='auto',
                        do_eval=True, eval_interval=100)
    trainer = Trainer(model, TinyData(), losses, optimizer, opts, val_dataset=TinyData(2))
    assert trainer.state.best == best
    best_hook = [h for h in trainer.hooks if isinstance(h, hooks_mod.BestModelHook)]
    assert [h.best for h in best_hook] == [best]


def test_the_lr_scheduler_passed_is_the_one_stepped(tmp_path):
    model, optimizer, losses = _parts()  # SGD with a constant learning rate
    scheduler = paddle.optimizer.lr.StepDecay(0.1, step_size=1)
    train(model, TinyData(), losses=losses, optimizer=optimizer, iters=3, batch_size=2,
          save_dir=str(tmp_path), save_interval=3, seed=1, lr_scheduler=scheduler)
    assert scheduler.last_epoch == 3
    model = TinySeg()
    built_with = paddle.optimizer.lr.StepDecay(0.1, step_size=1)
    optimizer = paddle.optimizer.SGD(learning_rate=built_with, parameters=model.parameters())
    train(model, TinyData(), losses=losses, optimizer=optimizer, iters=2, batch_size=2,
          save_dir=str(tmp_path / 'b'), save_interval=2, seed=1)
    assert built_with.last_epoch == 2  # found from the optimizer without lr_scheduler=


def test_positive_int_options_refuse_bools():
    for name in ('save_interval', 'log_iters', 'keep_checkpoint_max', 'eval_interval'):
        with pytest.raises(ConfigError, match='--{} must be a positive integer, got True'
                           .format(name)):
            TrainOptions(iters=1, batch_size=1, **{name: True})


def test_state_fresh_is_what_was_published_at_this_iteration():
    state = TrainState(iteration=3)
    assert state.fresh('eval') is None
    state.publish('eval', {'miou': 0.5})
    assert state.fresh('eval') == {'miou': 0.5, 'iter': 3}
    state.iteration = 4
    assert state.fresh('eval') is None and state.storage['eval']['iter'] == 3


def test_the_trainer_saves_on_interrupt_through_its_checkpointer(tmp_path):
    """No checkpoint hook among the hooks: a stop signal still saves."""
    import signal

    class Stop(hooks_mod.HookBase):
        def after_step(self):
            if self.state.iteration == 2:
                self.state.signals.signum = signal.SIGTERM
    model, optimizer, losses = _parts()
    opts = TrainOptions(iters=5, batch_size=2, save_dir=str(tmp_path), seed=1)
    with pytest.raises(train.__globals__['TrainingInterrupted']) as info:
        Trainer(model, TinyData(), losses, optimizer, opts, hooks=[Stop()]).run()
    assert info.value.iteration == 2
    assert info.value.checkpoint == str(tmp_path / 'iter_2')
    assert os.listdir(tmp_path) == ['iter_2']
