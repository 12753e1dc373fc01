"""Mixed precision on the GPU: train.py with ``--precision fp16`` at AMP
levels O1 and O2, its GradScaler checkpointed and resumed, and pure-fp16
(O2) weights.

The end-to-end runs of train.py are the main check: finite losses, a
``scaler.pdstate`` in every checkpoint, a run resumed from ``iter_2``
that continues at iteration 3 with the saved loss scaling, and a checkpoint
resumed in another precision (fp32 <-> O2, O1 <-> O2: the optimizer state
keyed by master weights or not; the CPU tests of every pair:
tests/test_amp_resume.py).
"""

import json
import math

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from paddle.nn.layer.norm import _BatchNormBase

SCALER = 'scaler.pdstate'


def _scalar(value):
    value = value.numpy() if hasattr(value, 'numpy') else value
    return float(np.asarray(value).reshape(-1)[0])


def _checkpoint(path):
    from paddleseg.utils.checkpoint import load_checkpoint
    return load_checkpoint(str(path))


def _check_scaler_continued(start, end, steps):
    """``end`` is what GradScaler's dynamic loss scaling makes of ``start``
    after ``steps`` more steps (paddle.amp.GradScaler: a step whose gradients
    overflow halves the scale and zeroes the count of good steps; the scale
    doubles only after 2000 good steps in a row, which ``steps`` is far from).

    A run that did not restore ``start`` begins again at the initial scale
    with no good steps counted, which fails one of the two checks."""
    s0, s1 = _scalar(start['scale']), _scalar(end['scale'])
    assert math.isfinite(s1) and s1 > 0, end
    assert s1 <= s0, 'loss scale went from {} up to {}: not resumed?'.format(s0, s1)
    if s1 == s0:  # no overflow: every step counted
        assert int(end['incr_count']) == int(start['incr_count']) + steps, (start, end)
    else:         # an overflow: counting started over after it
        assert int(end['incr_count']) < steps, (start, end)


@pytest.mark.parametrize('level', ['O1', 'O2'])
def test_fp16_training_checkpoints_the_scaler_and_resumes(tiny, tools, tmp_path, level):
    tools.need_fp16()
    amp = ['--precision', 'fp16', '--amp_level', level, '--iters', 4, '--save_interval', 2]
    first = tmp_path / 'first'
    proc = tools.run_python(tools.train_cmd(tiny['cfg'], first, *amp))
    tools.check_ok(proc, 'train.py --amp_level ' + level)
    assert 'fp16 needs a GPU' not in proc.stdout + proc.stderr  # no fp32 fallback
    rows = tools.train_log(proc.stdout)
    assert [it for it, _, _ in rows] == [1, 2, 3, 4], proc.stdout[-3000:]
    tools.assert_finite_losses(rows, proc.stdout)
    for it in (2, 4):
        states, meta = _checkpoint(first / 'iter_{}'.format(it))
        assert meta['iter'] == it
        assert SCALER in meta['files'] and SCALER in states, meta
        assert math.isfinite(_scalar(states[SCALER]['scale']))
    saved = _checkpoint(first / 'iter_2')[0][SCALER]

    # resume from iter_2 (into another folder): iterations 3 and 4 only,
    # with the loss scaling of iter_2
    second = tmp_path / 'second'
    proc = tools.run_python(tools.train_cmd(
        tiny['cfg'], second, *amp, '--resume_model', first / 'iter_2'))
    tools.check_ok(proc, 'train.py --resume_model (' + level + ')')
    assert 'Resumed from' in proc.stdout and 'at iter 2' in proc.stdout, proc.stdout[-3000:]
    rows = tools.train_log(proc.stdout)
    assert [it for it, _, _ in rows] == [3, 4], proc.stdout[-3000:]
    tools.assert_finite_losses(rows, proc.stdout)
    states, meta = _checkpoint(second / 'iter_4')
    assert meta['iter'] == 4 and SCALER in meta['files'], meta
    _check_scaler_continued(saved, states[SCALER], steps=2)

    # and the checkpoint evaluates (fp32, on the GPU)
    metrics = tmp_path / 'metrics.json'
    proc = tools.run_python([tools.script('val.py'), '--config', tiny['cfg'],
                             '--model_path', second / 'iter_4' / 'model.pdparams',
                             '--device', tools.DEVICE, '--save_json', metrics])
    tools.check_ok(proc, 'val.py of the ' + level + ' checkpoint')
    assert 0.0 <= json.load(open(metrics))['miou'] <= 1.0


PRECISIONS = {'fp32': ['--precision', 'fp32'],
              'O1': ['--precision', 'fp16', '--amp_level', 'O1'],
              'O2': ['--precision', 'fp16', '--amp_level', 'O2']}


@pytest.mark.parametrize('saved, resumed', [('fp32', 'O2'), ('O2', 'fp32'), ('O1', 'O2'),
                                            ('O2', 'O1')])
def test_a_checkpoint_resumes_in_another_precision(tiny, tools, tmp_path, saved, resumed):
    """The first step after the resume used to fail: "Optimizer set error,
    ..._fp32_master_0_velocity_0 should in state dict" (or the reverse)."""
    tools.need_fp16()
    first = tmp_path / 'first'
    proc = tools.run_python(tools.train_cmd(tiny['cfg'], first, *PRECISIONS[saved],
                                            '--iters', 2, '--save_interval', 2))
    tools.check_ok(proc, 'train.py ' + saved)
    second = tmp_path / 'second'
    proc = tools.run_python(tools.train_cmd(
        tiny['cfg'], second, *PRECISIONS[resumed], '--iters', 4, '--save_interval', 2,
        '--resume_model', first / 'iter_2'))
    tools.check_ok(proc, 'train.py {} resuming the {} checkpoint'.format(resumed, saved))
    rows = tools.train_log(proc.stdout)
    assert [it for it, _, _ in rows] == [3, 4], proc.stdout[-3000:]
    tools.assert_finite_losses(rows, proc.stdout)
    states, meta = _checkpoint(second / 'iter_4')
    assert meta['iter'] == 4
    assert ('master_weights' in states['model.pdopt']) == (resumed == 'O2')


def test_o2_decorated_model_trains_with_fp16_conv_weights(tiny, tools, on_device):
    """paddle.amp.decorate(level='O2') casts the PointRend model's
    convolutions to float16 (normalisation layers stay float32), and the
    model trains that way with a GradScaler."""
    tools.need_fp16()
    from paddleseg.core.train import compute_losses
    from paddleseg.cvlibs import builder

    paddle.seed(5)
    cfg, model = tools.build(tiny['cfg'])
    losses = builder.build_losses(cfg, tiny['cfg'])
    lr = builder.build_lr_scheduler(cfg, cfg['iters'], tiny['cfg'])
    optimizer = builder.build_optimizer(cfg, model, lr, tiny['cfg'])
    model, optimizer = paddle.amp.decorate(models=model, optimizers=optimizer,
                                           level='O2', dtype='float16')
    convs = [layer for layer in model.sublayers()
             if isinstance(layer, (nn.Conv1D, nn.Conv2D))]
    norms = [layer for layer in model.sublayers() if isinstance(layer, _BatchNormBase)]
    assert convs and norms
    assert {str(layer.weight.dtype) for layer in convs} == {str(paddle.float16)}
    assert {str(layer.weight.dtype) for layer in norms} == {str(paddle.float32)}

    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((2, 3, 64, 64)).astype('float32'))
    label = paddle.to_tensor(rng.integers(0, model.num_classes, (2, 64, 64)).astype('int64'))
    before = [layer.weight.astype('float32').numpy() for layer in convs]
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
    model.train()
    for step in range(3):
        with paddle.amp.auto_cast(enable=True, level='O2', dtype='float16'):
            outputs = model(x)
            terms = compute_losses(outputs, label, losses)
            loss = paddle.add_n(terms)
        values = [float(t) for t in terms]
        assert np.isfinite(values).all(), 'step {}: loss terms {}'.format(step, values)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.clear_grad()
    assert {str(layer.weight.dtype) for layer in convs} == {str(paddle.float16)}
    after = [layer.weight.astype('float32').numpy() for layer in convs]
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), \
        'nothing trained (every step overflowed? loss scale now {})'.format(
            _scalar(scaler.state_dict()['scale']))


_RECORD_DTYPES = '''\
"""Run train.py's main here, recording at each training step the dtypes of
the model's convolution and BatchNorm weights. argv: record.json, then
train.py's arguments."""
import json
import sys

sys.path.insert(0, {root!r})
import paddle  # noqa: E402
from paddle.nn.layer.norm import _BatchNormBase  # noqa: E402

import train as train_cli  # noqa: E402


from paddleseg.core.trainer import Trainer  # noqa: E402  (whose step() train.py calls)
record = []
step = Trainer.step


def recording_step(self, *args, **kwargs):
    it = getattr(self, 'it', None)
    if it is None:  # step(batch, it)
        it = args[1] if len(args) > 1 else kwargs['it']
    layers = self.net.sublayers()
    record.append({{
        'iter': int(it),
        'conv': sorted({{str(l.weight.dtype) for l in layers
                         if isinstance(l, (paddle.nn.Conv1D, paddle.nn.Conv2D))}}),
        'norm': sorted({{str(l.weight.dtype) for l in layers
                         if isinstance(l, _BatchNormBase)}}),
    }})
    return step(self, *args, **kwargs)


Trainer.step = recording_step
try:
    train_cli.main(sys.argv[2:])
finally:
    with open(sys.argv[1], 'w') as f:
        json.dump(record, f)
'''


def test_train_py_o2_trains_with_fp16_conv_weights(tiny, tools, tmp_path):
    """``--amp_level O2`` is paddle's pure-fp16 level (the model's weights
    float16 except normalisation, ``paddle.amp.decorate``): the weights of
    the convolutions are float16 while train.py trains. Seen from inside
    train.py (a driver wraps the trainer's step)."""
    tools.need_fp16()
    driver = tmp_path / 'record_dtypes.py'
    driver.write_text(_RECORD_DTYPES.format(root=tools.ROOT))
    record = tmp_path / 'record.json'
    cmd = tools.train_cmd(tiny['cfg'], tmp_path / 'out', '--precision', 'fp16',
                          '--amp_level', 'O2', '--iters', 2, '--save_interval', 2)
    proc = tools.run_python([driver, record] + cmd[1:])
    tools.check_ok(proc, 'train.py --amp_level O2 (recording dtypes)')
    steps = json.load(open(record))
    assert [s['iter'] for s in steps] == [1, 2]
    for s in steps:
        assert s['conv'] == [str(paddle.float16)], (
            'iter {}: train.py --amp_level O2 trained with convolution weights of {} '
            '(pure fp16 needs paddle.amp.decorate(models, optimizers, level="O2") '
            'before training); BatchNorm weights: {}'.format(s['iter'], s['conv'], s['norm']))
