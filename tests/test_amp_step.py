"""The training step and the NaN policy under a loss scaler, on the CPU build.

fp16 with the default ``--nan_policy stop``: a step the GradScaler skips
(non-finite gradients) lets the run go on, as PaddleSeg's does, and leaves
no trace; only :data:`MAX_SCALER_SKIPS` in a row stop it. fp32 keeps the
policy (a non-finite loss stops the run). The scaler is paddle's real
``GradScaler``, made while paddle believes the place is a GPU (on a CPU place
it disables itself); its overflow check and the optimizer's skip run on
the CPU. Also: the step waits for the device once (the finiteness flag), the
``[TRAIN]`` line reads its window of loss terms in one copy, and the FPN
tail's constant is built without a copy from the host.
"""

import types

import numpy as np
import paddle
import pytest

from paddleseg.core import amp
from paddleseg.core import hooks as hooks_mod
from paddleseg.core.hooks import MAX_SCALER_SKIPS, NonFiniteLossError
from paddleseg.core.options import TrainOptions
from paddleseg.core.state import LossTerms
from paddleseg.core.trainer import Trainer
from paddleseg.models.losses import CrossEntropyLoss
from train_helpers import TinyData, gpu_grad_scaler  # tests/helpers


class TwoHeads(paddle.nn.Layer):
    """Two outputs (two loss terms), BatchNorm in between."""

    def __init__(self):
        super().__init__()
        paddle.seed(0)
        self.conv = paddle.nn.Conv2D(3, 2, 1)
        self.bn = paddle.nn.BatchNorm2D(2)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return [y, y * 0.5]


class NaNAt(paddle.nn.Layer):
    """Cross entropy, NaN at the iterations in ``at`` (counted by calls)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = set(at), 0
        self.ce = CrossEntropyLoss()

    def forward(self, logits, label):
        self.calls += 1
        loss = self.ce(logits, label)
        return loss * float('nan') if self.calls in self.at else loss




def _enabled_scaler(monkeypatch):
    return gpu_grad_scaler(monkeypatch)


def _trainer(tmp_path, monkeypatch, precision, nan_at=(), iters=4, **opts):
    model = TwoHeads()
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9,
                                    parameters=model.parameters())
    losses = {'types': [NaNAt(nan_at), CrossEntropyLoss()], 'coef': [1.0, 0.5]}
    options = TrainOptions(iters=iters, batch_size=2, save_dir=str(tmp_path / 'out'),
                           save_interval=1000, log_iters=opts.pop('log_iters', 1000),
                           do_eval=False, precision=precision, **opts)
    trainer = Trainer(model, TinyData(), losses, opt, options)
    if precision == 'fp16':
        trainer.scaler = _enabled_scaler(monkeypatch)
    return trainer


def _snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _record(trainer):
    """The model's state after each step (after the hooks)."""
    seen = []

    class Record(hooks_mod.HookBase):
        def after_step(self):
            seen.append((self.state.iteration, dict(self.state.step_info),
                         _snapshot(self.trainer.net)))
    hook = Record()
    hook.trainer = trainer
    trainer.hooks.append(hook)
    return seen


def test_fp16_overflow_is_the_scalers_to_skip_under_nan_policy_stop(tmp_path, monkeypatch,
                                                                     capsys):
    trainer = _trainer(tmp_path, monkeypatch, 'fp16', nan_at=[2])
    seen = _record(trainer)
    trainer.run()  # raised NonFiniteLossError at iter 2
    assert [it for it, _, _ in seen] == [1, 2, 3, 4]
    assert [info['skipped'] for _, info, _ in seen] == [False, True, False, False]
    # the skipped step left no trace: weights and BatchNorm statistics of iter 1
    for key, value in seen[0][2].items():
        np.testing.assert_array_equal(seen[1][2][key], value, err_msg=key)
    assert any(not np.array_equal(seen[2][2][k], v) for k, v in seen[1][2].items())
    assert float(trainer.scaler.state_dict()['scale'][0]) == amp.INIT_LOSS_SCALING / 2
    assert 'the loss scaler skipped the step' in capsys.readouterr().out


def test_fp32_keeps_the_nan_policy(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, monkeypatch, 'fp32', nan_at=[2])
    with pytest.raises(NonFiniteLossError, match=r'non-finite loss at iter 2: terms nan, '):
        trainer.run()


def test_fp16_stops_after_too_many_scaler_skips_in_a_row(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, monkeypatch, 'fp16', nan_at=range(2, 100), iters=40,
                       nan_policy='skip')
    seen = _record(trainer)
    with pytest.raises(NonFiniteLossError, match=r'the fp16 loss scaler skipped {} steps in '
                       r'a row \(iter {}'.format(MAX_SCALER_SKIPS, MAX_SCALER_SKIPS + 1)):
        trainer.run()
    assert len(seen) == MAX_SCALER_SKIPS  # the last one raised in its hooks


def test_another_ranks_overflow_skips_here_too(monkeypatch):
    """The verdict is maxed over the ranks: a finite step here is skipped
    (and its BatchNorm statistics put back) when another rank's scaler
    skipped."""
    hook = hooks_mod.NanPolicyHook('stop')
    net = TwoHeads()
    scaler = types.SimpleNamespace(is_enable=lambda: True, _cache_found_inf=False)
    before = net.bn._mean.numpy().copy()
    hook.before_forward(net, scaler)
    net.train()
    net(paddle.randn([2, 3, 4, 4]) + 3)
    assert not np.array_equal(net.bn._mean.numpy(), before)
    asked = []
    monkeypatch.setattr(hooks_mod.dist, 'max_over_ranks',
                        lambda values: asked.append(list(values)) or [1])
    assert hook.judge(paddle.to_tensor(1.0), scaler) == (True, True)
    assert asked == [[0]] and hook.by_scaler
    np.testing.assert_array_equal(net.bn._mean.numpy(), before)


class _HostReads:
    """Counts the reads of tensor values by the host (outermost calls)."""

    NAMES = ('numpy', '__float__', '__bool__', '__int__', 'item', 'tolist')

    def __init__(self, monkeypatch):
        self.count, self.depth = 0, 0
        for name in self.NAMES:
            monkeypatch.setattr(paddle.Tensor, name, self._wrap(getattr(paddle.Tensor, name)))

    def _wrap(self, real):
        def read(tensor, *args, **kwargs):
            self.count += self.depth == 0
            self.depth += 1
            try:
                return real(tensor, *args, **kwargs)
            finally:
                self.depth -= 1
        return read


def test_a_step_reads_one_flag_and_the_log_one_window(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, monkeypatch, 'fp32', iters=4, log_iters=2)
    batch = {'img': paddle.to_tensor(np.stack([d['img'] for d in TinyData().items[:2]])),
             'label': paddle.to_tensor(np.stack([d['label'] for d in TinyData().items[:2]]))}
    reads = _HostReads(monkeypatch)
    info = trainer.step(batch)
    assert reads.count == 1  # the finiteness flag (it read each loss term too)
    assert isinstance(info['terms'], LossTerms) and len(info['terms']) == 2
    assert reads.count == 1
    terms = info['terms'].tolist()
    assert reads.count == 2 and info['terms'] == terms and info['terms'][1] == terms[1]
    assert all(np.isfinite(terms)) and terms[0] != terms[1]
    # the meter of the [TRAIN] line: one read for a window of steps
    meter = hooks_mod._Meter(2)
    for _ in range(2):
        meter.update(trainer.step(batch)['terms'], 0.0, 1.0, 2)
    reads.count = 0
    avg = meter.averages()
    assert reads.count == 1 and len(avg['terms']) == 2


def test_the_fpn_tail_constant_needs_no_copy_from_the_host(monkeypatch):
    from paddleseg.models.heads import fpn_tail
    weight = paddle.randn([2, 3, 3, 3])
    expected = np.einsum('yk,xl,oiyx->oikl', fpn_tail._UP[0:3], fpn_tail._UP[1:4],
                         weight.numpy())
    monkeypatch.setattr(paddle, 'to_tensor', lambda *a, **k: pytest.fail('to_tensor'))
    kernel = fpn_tail.folded_kernel(weight)
    np.testing.assert_allclose(kernel.numpy()[2:4], expected, rtol=1e-5, atol=1e-6)


def test_the_scaler_lowers_its_scale_under_numpy_2_4(monkeypatch):
    """paddle 3.3's update logs with float() of the [1]-shaped scale, a
    TypeError from numpy 2.4 on: the first overflow ended the run."""
    scaler = _enabled_scaler(monkeypatch)
    scaler._cache_found_inf = True  # what step() leaves after an overflow
    scaler.update()
    assert list(scaler._scale.shape) == [1]
    assert float(scaler.state_dict()['scale'][0]) == amp.INIT_LOSS_SCALING / 2
