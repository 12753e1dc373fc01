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
from paddleseg.core.trainer import Trainer, _resolve_resume
from paddleseg.errors import ConfigError
from paddleseg.models.losses import CrossEntropyLoss


class TinySeg(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 1)
        self.bn = paddle.nn.BatchNorm2D(2)

    def forward(self, x):
        return [self.bn(self.conv(x))]


class TinyData:
    num_classes = 2
    ignore_index = 255

    def __init__(self, n=4):
        rng = np.random.default_rng(0)
        self.items = [{'img': rng.standard_normal((3, 8, 8)).astype('float32'),
                       'label': rng.integers(0, 2, (8, 8)).astype('int64')} for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return dict(self.items[index])


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
            'stall_timeout', 'watchdog']
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
        precision='fp16', it=2, rank=1, nranks=1, signals=StopSignals(),
        net=model, model=model)
    hook.after_step()
    hook.trainer.it = 3  # not due
    hook.after_step()
    assert len(seen) == 1
    kwargs = seen[0]
    assert (kwargs['precision'], kwargs['amp_level'], kwargs['num_workers']) == \
        ('fp16', 'O2', used)
    assert kwargs['is_slide'] is False and kwargs['on_prediction'] is not None


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
