"""Two GPUs under ``python -m paddle.distributed.launch --devices 0,1``.

train.py as a user runs it (exit 0, rank 0 writes the checkpoints and logs
every iteration), then the same training with each rank reporting its steps
and final weights: both ranks reach the last iteration, their BatchNorms
became SyncBatchNorm, and the trainable weights and the running statistics
are the same on both.
"""

import json
import os

import numpy as np

ITERS = 4


def _launch(tools, log_dir, program, *args):
    cmd = ['-m', 'paddle.distributed.launch', '--devices', '0,1',
           '--log_dir', str(log_dir), str(program)] + [str(a) for a in args]
    return tools.run_python(cmd)


def _worker_log(log_dir, rank):
    path = os.path.join(str(log_dir), 'workerlog.{}'.format(rank))
    assert os.path.isfile(path), 'no {} (files: {})'.format(
        path, sorted(os.listdir(str(log_dir))) if os.path.isdir(str(log_dir)) else None)
    with open(path, errors='replace') as f:
        return f.read()


def _check_launch(proc, log_dir, what):
    if proc.returncode != 0:
        logs = ''
        for rank in (0, 1):
            try:
                logs += '\n--- workerlog.{} ---\n{}'.format(rank, _worker_log(log_dir, rank)[-3000:])
            except AssertionError as exc:
                logs += '\n' + str(exc)
        raise AssertionError('{} exited {}\n--- stderr ---\n{}{}'.format(
            what, proc.returncode, proc.stderr[-3000:], logs))


def test_two_gpu_launch_of_train_py(tiny, tools, tmp_path):
    tools.need_gpus(2)
    out, log_dir = tmp_path / 'out', tmp_path / 'log'
    cmd = tools.train_cmd(tiny['cfg'], out, '--iters', ITERS, '--save_interval', 2)
    proc = _launch(tools, log_dir, *cmd)
    _check_launch(proc, log_dir, 'paddle.distributed.launch --devices 0,1 train.py')

    for it in (2, ITERS):
        folder = out / 'iter_{}'.format(it)
        meta = json.load(open(folder / 'meta.json'))
        assert meta['iter'] == it and meta['nranks'] == 2, meta
        assert {'model.pdparams', 'model.pdopt'} <= set(meta['files'])
        assert all((folder / name).is_file() for name in meta['files'])
    log0 = _worker_log(log_dir, 0)
    rows = tools.train_log(log0)
    assert [it for it, _, _ in rows] == list(range(1, ITERS + 1)), log0[-3000:]
    tools.assert_finite_losses(rows, log0)
    log1 = _worker_log(log_dir, 1)
    assert 'Traceback' not in log1 and 'train.py: error' not in log1, log1[-3000:]


_RANK_REPORT = '''\
"""train.py's main under paddle.distributed.launch, each rank printing its
steps and saving its final state. argv: out_dir, then train.py's arguments."""
import json
import os
import sys

sys.path.insert(0, {root!r})
import numpy as np  # noqa: E402
import paddle  # noqa: E402
from paddle.nn.layer.norm import _BatchNormBase  # noqa: E402

import train as train_cli  # noqa: E402


from paddleseg.core.trainer import Trainer  # noqa: E402  (whose step() train.py calls)
out = sys.argv[1]
step, run = Trainer.step, Trainer.run


def reporting_step(self, *args, **kwargs):
    it = getattr(self, 'it', None)
    if it is None:  # step(batch, it)
        it = args[1] if len(args) > 1 else kwargs['it']
    result = step(self, *args, **kwargs)
    terms = result['terms'] if isinstance(result, dict) else result
    print('rank {{}} step {{}} loss {{}}'.format(self.rank, it, sum(terms)), flush=True)
    return result


def reporting_run(self):
    result = run(self)
    layers = self.net.sublayers()
    sync = sum(isinstance(l, paddle.nn.SyncBatchNorm) for l in layers)
    plain = sum(isinstance(l, _BatchNormBase) and not isinstance(l, paddle.nn.SyncBatchNorm)
                for l in layers)
    trainable = {{n for n, p in self.net.named_parameters() if p.trainable}}
    state = {{k: v.numpy() for k, v in self.net.state_dict().items()}}
    np.savez(os.path.join(out, 'state_{{}}.npz'.format(self.rank)), **state)
    with open(os.path.join(out, 'rank_{{}}.json'.format(self.rank)), 'w') as f:
        json.dump({{'rank': self.rank, 'nranks': self.nranks, 'sync_bn': sync,
                   'plain_bn': plain, 'wrapper': type(self.model).__name__,
                   'trainable': sorted(trainable),
                   'device': paddle.get_device()}}, f)
    return result


Trainer.step = reporting_step
Trainer.run = reporting_run
os.makedirs(out, exist_ok=True)
train_cli.main(sys.argv[2:])
'''


def test_two_gpu_ranks_finish_with_the_same_weights(tiny, tools, tmp_path):
    tools.need_gpus(2)
    driver = tmp_path / 'rank_report.py'
    driver.write_text(_RANK_REPORT.format(root=tools.ROOT))
    report, log_dir = tmp_path / 'report', tmp_path / 'log'
    cmd = tools.train_cmd(tiny['cfg'], tmp_path / 'out', '--iters', ITERS,
                          '--save_interval', ITERS)
    proc = _launch(tools, log_dir, driver, report, *cmd[1:])
    _check_launch(proc, log_dir, 'paddle.distributed.launch --devices 0,1 (rank report)')

    infos, states = [], []
    for rank in (0, 1):
        log = _worker_log(log_dir, rank)
        steps = [line for line in log.splitlines() if line.startswith('rank {} step '.format(rank))]
        assert len(steps) == ITERS, log[-3000:]
        assert steps[-1].startswith('rank {} step {} loss '.format(rank, ITERS)), steps
        assert np.isfinite([float(line.rsplit(' ', 1)[1]) for line in steps]).all(), steps
        infos.append(json.load(open(report / 'rank_{}.json'.format(rank))))
        states.append(dict(np.load(report / 'state_{}.npz'.format(rank))))
    for rank, info in enumerate(infos):
        assert info['rank'] == rank and info['nranks'] == 2, info
        assert info['device'].startswith('gpu'), info
        assert info['wrapper'] == 'DataParallel', info
        assert info['sync_bn'] > 0 and info['plain_bn'] == 0, info
    # gradients are all-reduced and SyncBatchNorm shares the batch
    # statistics: every tensor ends the same on both ranks
    assert set(states[0]) == set(states[1])
    for key in sorted(states[0]):
        np.testing.assert_allclose(states[1][key], states[0][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    trainable = set(infos[0]['trainable'])
    assert trainable and trainable <= set(states[0])


def test_sigterm_to_the_launcher_during_an_evaluation_on_two_gpus(tools, tmp_path):
    """As tests/test_distributed_failures.py's CPU test, over NCCL: the
    launcher gets SIGTERM during the (slowed) evaluation of iter 3; iter_3
    was saved before it, the ranks agree to abandon it within a few images,
    both stop at iter 3 well within the launcher's 30 s."""
    import re
    import time
    from robust_helpers import NARROW_MODEL
    from tiny_data import make_tiny_cityscapes, write_tiny_config
    tools.need_gpus(2)
    root = make_tiny_cityscapes(str(tmp_path / 'data'), n_train=4, n_val=40, h=32, w=64)
    cfg = write_tiny_config(str(tmp_path / 'tiny.yml'), root, iters=6, batch_size=1,
                            crop=32, model=NARROW_MODEL)
    out, log_dir, marks = tmp_path / 'out', tmp_path / 'log', tmp_path / 'marks'
    marks.mkdir()
    cmd = tools.train_cmd(cfg, out, '--save_interval', 3, '--do_eval')
    driver = os.path.join(tools.ROOT, 'tests', 'helpers', 'dist_fault_driver.py')
    _launch(tools, log_dir, driver, 'eval_sigterm:2:1.1', marks, *cmd[1:])
    took = time.time() - float((marks / 'sigterm_sent').read_text())
    assert took < 25, took
    logs = [_worker_log(log_dir, rank) for rank in (0, 1)]
    for log in logs:
        assert re.search(r'interrupted by SIGTERM after iter 3\b', log), log[-3000:]
    assert 'Evaluation at iter 3 abandoned: stopping' in logs[0], logs[0][-3000:]
    meta = json.load(open(out / 'iter_3' / 'meta.json'))
    assert meta['iter'] == 3 and all((out / 'iter_3' / f).is_file() for f in meta['files'])
