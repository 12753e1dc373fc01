"""Training stopped the hard way: SIGKILL during saves, SIGINT/SIGTERM, a
NaN loss, an unreadable sample in the middle of a run."""

import json
import os
import random
import re
import signal
import time

import numpy as np
import paddle
import pytest

import train as train_cli
from robust_helpers import (kill_and_wait, make_data, own_lines, run_cli, start_cli,
                            train_args, wait_for_line, write_config)
from paddleseg.utils.checkpoint import find_latest_checkpoint, load_checkpoint

ITER_DIR = re.compile(r'iter_(\d+)')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('interrupts')
    root = make_data(base / 'cs')
    return {'base': base, 'root': root,
            'cfg': write_config(base / 'tiny.yml', root, iters=6)}


def _params(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def _assert_same_weights(a, b):
    a, b = _params(a), _params(b)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _visible_iter_dirs(save_dir):
    return sorted(name for name in os.listdir(save_dir) if ITER_DIR.fullmatch(name))


def _wait_for_temp_folder(save_dir, proc, timeout=120):
    """Wait until a save is under way (its hidden temporary folder exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(save_dir) and any(
                name.startswith('.iter_') for name in os.listdir(save_dir)):
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.002)
    raise AssertionError('no save started within {} s'.format(timeout))


def test_sigkill_during_saves_keeps_a_complete_checkpoint(tiny):
    """Kill -9 a run that saves at every iteration, several times, at or
    shortly after the start of a save; each time the newest iter_N folder is
    complete and loads, every visible iter_N folder is complete, and
    ``--resume_model auto`` goes on. The last run finishes with exactly the
    kept checkpoints and no temporary leftovers."""
    iters = 12
    cfg = write_config(tiny['base'] / 'kill.yml', tiny['root'], iters=iters)
    out = tiny['base'] / 'kill'
    args = train_args(cfg, out, '--save_interval', 1, '--keep_checkpoint_max', 2,
                      '--resume_model', 'auto')
    rng = random.Random(0)
    leftovers_seen = 0
    for round_ in range(3):
        proc = start_cli('train.py', *args, stdout_path=tiny['base'] / 'kill.log')
        before = find_latest_checkpoint(str(out))
        # let it save at least once in this round, then kill it during the next save
        wait_for_line(proc, 'Saved {}'.format(out / 'iter_'), timeout=120)
        _wait_for_temp_folder(out, proc)
        time.sleep(0 if round_ == 0 else rng.uniform(0, 0.3))
        status, _ = kill_and_wait(proc)
        assert status == -signal.SIGKILL
        hidden = [n for n in os.listdir(out) if n.startswith('.')]
        leftovers_seen += bool(hidden)
        latest = find_latest_checkpoint(str(out))
        assert latest is not None and latest != before
        states, meta = load_checkpoint(latest)
        assert meta['iter'] == int(ITER_DIR.fullmatch(os.path.basename(latest)).group(1))
        assert set(states) == {'model.pdparams', 'model.pdopt'}
        assert len(states['model.pdparams']) > 100
        for name in _visible_iter_dirs(out):
            assert os.path.isfile(out / name / 'meta.json'), name
    assert leftovers_seen  # at least one kill landed inside a save
    proc = start_cli('train.py', *args, stdout_path=tiny['base'] / 'kill.log')
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert 'Resumed from' in open(tiny['base'] / 'kill.log').read()
    assert sorted(os.listdir(out)) == ['iter_{}'.format(iters - 1), 'iter_{}'.format(iters)]


def _interrupted_run(tiny, name, sig, *extra):
    """Start a run of 6 iterations, send ``sig`` once iteration 2 is logged;
    return (status, stderr, save_dir)."""
    out = tiny['base'] / name
    proc = start_cli('train.py', *train_args(tiny['cfg'], out, '--save_interval', 100,
                                             *extra),
                     stdout_path=tiny['base'] / (name + '.log'))
    wait_for_line(proc, '[TRAIN] iter: 2/6')
    status, err = kill_and_wait(proc, sig)
    return status, err, out


def test_sigterm_saves_and_the_resumed_run_matches_an_uninterrupted_one(tiny):
    status, err, out = _interrupted_run(tiny, 'term', signal.SIGTERM)
    assert status == 143, err
    lines = own_lines(err)
    assert len(lines) == 1 and 'Traceback' not in err, err
    match = re.fullmatch(r'train\.py: interrupted by SIGTERM after iter (\d+); checkpoint '
                         r'(\S+) saved \(resume with --resume_model auto\)', lines[0])
    assert match, lines[0]
    it = int(match.group(1))
    assert 2 <= it < 6 and match.group(2) == str(out / 'iter_{}'.format(it))
    assert _visible_iter_dirs(out) == ['iter_{}'.format(it)]
    assert json.load(open(out / 'iter_{}'.format(it) / 'meta.json'))['iter'] == it

    # in fresh processes like the interrupted run, so that all three run on
    # the MKL code path train.py's tune_process picks (this process may have
    # run its first product on another one)
    for args in (train_args(tiny['cfg'], out, '--save_interval', 100, '--resume_model', 'auto'),
                 train_args(tiny['cfg'], tiny['base'] / 'whole_cli', '--save_interval', 100)):
        done = run_cli('train.py', *args)
        assert done.returncode == 0, done.stderr[-3000:]
    whole = tiny['base'] / 'whole_cli'
    _assert_same_weights(out / 'iter_6' / 'model.pdparams',
                         whole / 'iter_6' / 'model.pdparams')
    opt_a = paddle.load(str(out / 'iter_6' / 'model.pdopt'))
    opt_b = paddle.load(str(whole / 'iter_6' / 'model.pdopt'))
    assert opt_a['LR_Scheduler'] == opt_b['LR_Scheduler']


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_whole_process_group_with_loader_workers(tiny, sig):
    """Ctrl-C in a terminal, or a container stop, signals the DataLoader
    workers too: the run still saves and exits with 128 + the signal, and
    no process of the group is left. (With an evaluation every 2
    iterations, the signal may land in one: it is abandoned.)"""
    out = tiny['base'] / 'group_{}'.format(sig.name)
    proc = start_cli('train.py', *train_args(tiny['cfg'], out, '--save_interval', 100,
                                             '--num_workers', 2, '--do_eval',
                                             '--eval_interval', 2),
                     stdout_path=tiny['base'] / 'group.log', new_session=True)
    wait_for_line(proc, '[TRAIN] iter: 2/6')
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    match = re.search(r'interrupted by {} after iter (\d+); checkpoint (\S+) saved'.format(
        sig.name), err)
    assert match and 'Traceback' not in err, err
    assert load_checkpoint(match.group(2))[1]['iter'] == int(match.group(1))
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # the workers are gone too


def _failing_thread(name):
    import threading

    def fail():
        raise RuntimeError('File descriptor /paddle_1_0_1 open failed\nsecond line')
    thread = threading.Thread(target=fail, name=name)
    thread.start()
    return thread


def test_loader_thread_failing_just_before_the_stop_signal_is_one_line(capsys):
    """The group's SIGTERM ends the workers, a reader thread fails, and only
    then does the main thread run its handler: one line, no traceback."""
    import threading
    from paddleseg.core.stop import StopSignals as _StopSignals
    before = threading.excepthook
    with _StopSignals() as guard:
        thread = _failing_thread('reader')
        time.sleep(0.3)  # the thread is waiting in the grace period
        os.kill(os.getpid(), signal.SIGTERM)
        thread.join(10)
        assert guard.signum == signal.SIGTERM
    out, err = capsys.readouterr()
    assert 'Traceback' not in err and 'Traceback' not in out
    assert re.search(r'after SIGTERM: thread reader stopped: RuntimeError: File '
                     r'descriptor /paddle_1_0_1 open failed\n', out), out
    assert threading.excepthook is before


def test_thread_failing_without_a_stop_signal_gets_the_usual_report(capsys, monkeypatch):
    import threading
    from paddleseg.core.stop import StopSignals as _StopSignals
    seen = []
    monkeypatch.setattr(threading, 'excepthook', seen.append)
    monkeypatch.setattr(_StopSignals, 'GRACE', 0.2)
    with _StopSignals() as guard:
        _failing_thread('worker-x').join(10)
        assert guard.signum is None
    assert [(a.thread.name, a.exc_type) for a in seen] == [('worker-x', RuntimeError)]
    assert 'stopped' not in capsys.readouterr().out


class _NaNLoss(paddle.nn.Layer):
    """Cross entropy that is NaN at the calls listed in ``nan_calls``."""
    nan_calls = set()
    calls = 0

    def forward(self, logits, label):
        from paddleseg.models.losses import CrossEntropyLoss
        type(self).calls += 1
        loss = CrossEntropyLoss()(logits, label)
        return loss * float('nan') if type(self).calls in self.nan_calls else loss


@pytest.fixture
def nan_loss():
    from paddleseg.cvlibs import manager
    if 'NaNAtCalls' not in manager.LOSSES:
        manager.LOSSES.add_component(_NaNLoss, name='NaNAtCalls')
    _NaNLoss.calls = 0
    yield _NaNLoss
    _NaNLoss.nan_calls = set()


def test_nan_skip_drops_the_step_and_goes_on(tiny, nan_loss, capsys):
    nan_loss.nan_calls = {3}
    out = tiny['base'] / 'nan_skip'
    train_cli.main(train_args(tiny['cfg'], out, '--save_interval', 100, '--nan_policy',
                              'skip', '--opts', 'loss.types.0.type=NaNAtCalls'))
    logs = capsys.readouterr().out
    assert re.search(r'non-finite loss at iter 3: terms nan, [0-9.]+; step skipped '
                     r'\(--nan_policy skip\)', logs), logs
    assert all('[TRAIN] iter: {}/6'.format(i) in logs for i in range(1, 7))
    weights = _params(out / 'iter_6' / 'model.pdparams')
    assert all(np.isfinite(v).all() for v in weights.values())
    # the schedule advanced on the skipped step too
    assert paddle.load(str(out / 'iter_6' / 'model.pdopt'))['LR_Scheduler']['last_epoch'] == 6


def test_nan_skip_stops_after_too_many_in_a_row(tiny, nan_loss, capsys):
    from paddleseg.core.train import MAX_SKIPPED_STEPS
    nan_loss.nan_calls = set(range(3, 100))
    out = tiny['base'] / 'nan_many'
    cfg = write_config(tiny['base'] / 'nan_many.yml', tiny['root'], iters=20)
    with pytest.raises(SystemExit) as exc:
        train_cli.main(train_args(cfg, out, '--save_interval', 2, '--nan_policy', 'skip',
                                  '--opts', 'loss.types.0.type=NaNAtCalls'))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    stop = 2 + MAX_SKIPPED_STEPS
    assert 'non-finite loss at iter {}: terms nan'.format(stop) in err
    assert '{} in a row; stopped. Last good checkpoint: {}'.format(
        MAX_SKIPPED_STEPS, out / 'iter_10') in err
    # the skipped steps left no trace, BatchNorm statistics included
    _assert_same_weights(out / 'iter_2' / 'model.pdparams', out / 'iter_10' / 'model.pdparams')


def test_unreadable_sample_mid_run_saves_progress_then_resume_after_the_fix(tiny, capsys):
    """The sample of iteration 3 has a label of the wrong size: the run stops
    there with iter_2 saved; once the label is fixed, resuming finishes with
    the weights of a run that never failed."""
    import shutil

    import cv2
    from paddleseg.core.sampler import ResumableBatchSampler
    root = tiny['base'] / 'cs_bad'
    shutil.copytree(tiny['root'], root)
    cfg = write_config(tiny['base'] / 'bad.yml', str(root), iters=6)
    from paddleseg.datasets import Cityscapes
    files = Cityscapes([], str(root)).file_list
    order = [b[0][0] for b in ResumableBatchSampler(len(files), 1, seed=3)]
    label = files[order[2]][1]  # loaded at iteration 3
    good = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(label, good[:16])
    out = tiny['base'] / 'bad_run'
    with pytest.raises(SystemExit) as exc:
        train_cli.main(train_args(cfg, out, '--save_interval', 100))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'label {} is 16x64'.format(label) in err
    assert ('training stopped at iter 3; checkpoint {} holds iter 2: fix the data and '
            'resume with --resume_model auto'.format(out / 'iter_2')) in err
    assert _visible_iter_dirs(out) == ['iter_2']
    cv2.imwrite(label, good)
    train_cli.main(train_args(cfg, out, '--save_interval', 100, '--resume_model', 'auto'))
    whole = tiny['base'] / 'whole'
    if not (whole / 'iter_6').exists():
        train_cli.main(train_args(tiny['cfg'], whole, '--save_interval', 100))
    _assert_same_weights(out / 'iter_6' / 'model.pdparams', whole / 'iter_6' / 'model.pdparams')


def test_train_py_stall_watchdog_exits_124_with_one_line():
    """train.py's watchdog (the library's only reports): a guarded block
    that outlasts the timeout ends the process with 124 and one stderr line."""
    import subprocess
    import sys
    from robust_helpers import ENV, ROOT
    probe = ('import sys, time\n'
             'sys.path.insert(0, {!r})\n'
             'import train\n'
             'with train.stall_watchdog(0.3, 0) as watchdog:\n'
             '    with watchdog.guard("iter 7"):\n'
             '        time.sleep(20)\n'
             'print("not stopped")\n').format(ROOT)
    proc = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == train_cli.EXIT_STALLED == 124, proc.stderr
    message = ('rank 0: no progress for 0.3 s in iter 7 (a stuck collective? did another '
               'process of the job die?); exiting with status 124')
    assert own_lines(proc.stderr) == ['train: error: ' + message], proc.stderr
    assert '[ERROR] ' + message in proc.stdout and 'not stopped' not in proc.stdout


# -- stopping together: evaluation and loader failures, in one process ----------

class _TinySeg(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 1)

    def forward(self, x):
        return [self.conv(x)]


class _TinyData:
    num_classes = 2
    ignore_index = 255

    def __init__(self, n=4, fail_at=None):
        rng = np.random.default_rng(0)
        self.fail_at = fail_at
        self.items = [{'img': rng.standard_normal((3, 8, 8)).astype('float32'),
                       'label': rng.integers(0, 2, (8, 8)).astype('int64')} for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if index == self.fail_at:
            raise ValueError('a bug in item {}'.format(index))
        return dict(self.items[index])


def _tiny_run(save_dir, **options):
    from paddleseg.core import TrainOptions, Trainer
    from paddleseg.models.losses import CrossEntropyLoss
    model = _TinySeg()
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    opts = TrainOptions(**dict(dict(batch_size=1, save_dir=str(save_dir), seed=1), **options))
    return Trainer(model, _TinyData(), {'types': [CrossEntropyLoss()], 'coef': [1.0]},
                   optimizer, opts, val_dataset=_TinyData(2))


def test_the_iteration_is_saved_before_its_evaluation_and_then_holds_its_best(
        tmp_path, monkeypatch):
    """A stop during a long evaluation loses nothing: iter_2 is complete
    when its evaluation starts; its meta.json then gets the evaluation's
    best (the meta alone is rewritten)."""
    from paddleseg.core import hooks as hooks_mod
    from paddleseg.utils.checkpoint import read_meta
    seen = []

    def evaluate(model, dataset, **kwargs):
        seen.append(find_latest_checkpoint(str(tmp_path)))
        return {'miou': 0.75, 'acc': 0.5, 'kappa': 0.5}
    monkeypatch.setattr(hooks_mod, 'evaluate_details', evaluate)
    assert _tiny_run(tmp_path, iters=2, save_interval=2, do_eval=True).run() == \
        {'miou': 0.75, 'iter': 2}
    assert seen == [str(tmp_path / 'iter_2')]
    assert read_meta(str(tmp_path / 'iter_2'))['best'] == {'miou': 0.75, 'iter': 2}
    assert not [name for name in os.listdir(tmp_path) if name.startswith('.')]


def test_a_loader_failing_without_a_signal_keeps_the_progress_made(tmp_path, monkeypatch):
    """The loader raises before iteration 3 (e.g. its workers died): iter_2
    is saved and the run stops with LoaderFailed naming it."""
    from paddleseg.core.stop import LoaderFailed
    from paddleseg.core.trainer import Trainer
    loader = Trainer._loader

    def failing_loader(self):
        batches = loader(self)

        class Failing:
            def __iter__(self):
                for i, batch in enumerate(batches):
                    if i == 2:
                        raise RuntimeError('DataLoader 2 workers exit unexpectedly\nmore')
                    yield batch
        return Failing()
    monkeypatch.setattr(Trainer, '_loader', failing_loader)
    with pytest.raises(LoaderFailed) as exc:
        _tiny_run(tmp_path, iters=5, save_interval=100).run()
    assert str(exc.value) == (
        'training stopped at iter 3: the data loader failed: RuntimeError: DataLoader 2 '
        'workers exit unexpectedly; checkpoint {} holds iter 2 (resume with '
        '--resume_model auto)'.format(tmp_path / 'iter_2'))
    assert isinstance(exc.value.__cause__, RuntimeError)
    assert load_checkpoint(str(tmp_path / 'iter_2'))[1]['iter'] == 2


def _as_ranks(monkeypatch, nranks, run):
    """Run ``run(rank)`` for each rank in its own thread, the evaluation's
    collectives replaced by ones over the threads; return
    ``{rank: (result or exception, collectives joined)}``."""
    import threading
    from paddleseg.core import val as core_val
    local, barrier, lock = threading.local(), threading.Barrier(nranks, timeout=20), \
        threading.Lock()
    board, calls = {}, {r: 0 for r in range(nranks)}

    def collective(combine):
        def call(values):
            values = np.asarray(values, np.int64)
            calls[local.rank] += 1
            with lock:
                board[local.rank] = values
            barrier.wait()
            out = combine([board[r] for r in range(nranks)])
            barrier.wait()
            return out
        return call
    monkeypatch.setattr(core_val, 'init_distributed', lambda: (local.rank, nranks))
    monkeypatch.setattr(core_val.dist, 'max_over_ranks',
                        collective(lambda v: np.max(v, axis=0).tolist()))
    monkeypatch.setattr(core_val.dist, 'sum_over_ranks', collective(lambda v: np.sum(v, 0)))
    results = {}

    def thread(rank):
        local.rank = rank
        try:
            results[rank] = run(rank)
        except Exception as exc:
            results[rank] = exc
    threads = [threading.Thread(target=thread, args=(r,)) for r in range(nranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return {r: (results[r], calls[r]) for r in range(nranks)}


def _counting(function):
    def counted(*args, **kwargs):
        counted.calls += 1
        return function(*args, **kwargs)
    counted.calls = 0
    return counted


def test_ranks_agree_to_abandon_an_evaluation_at_the_same_image(monkeypatch):
    """9 images on 2 ranks (5 and 4): the ranks agree every 4 images of the
    largest share. Rank 1 asks to stop from its first image on: both abandon
    after the check at image 4, with the same collectives (2: the check and
    the sum); rank 1, whose share is shorter, joins the same ones."""
    from paddleseg.core.stop import EvalAborted
    from paddleseg.core.val import STOP_CHECK_IMAGES, evaluate_details
    assert STOP_CHECK_IMAGES == 4
    models = {0: _TinySeg(), 1: _TinySeg()}
    for model in models.values():
        model.forward = _counting(model.forward)

    def run(rank):
        return evaluate_details(models[rank], _TinyData(9), progress=False,
                                stop_requested=lambda: signal.SIGTERM if rank == 1 else 0)
    out = _as_ranks(monkeypatch, 2, run)
    for rank in (0, 1):
        result, calls = out[rank]
        assert isinstance(result, EvalAborted) and result.signum == signal.SIGTERM, result
        assert calls == 2 and models[rank].forward.calls == 4
    # no request: every image, the same collectives on both ranks
    out = _as_ranks(monkeypatch, 2, lambda rank: evaluate_details(
        _TinySeg(), _TinyData(9), progress=False, stop_requested=lambda: 0))
    assert [out[r][0]['images'] for r in (0, 1)] == [9, 9]
    assert out[0][1] == out[1][1] == 2


def test_a_rank_whose_evaluation_fails_tells_the_others_at_the_next_check(monkeypatch):
    """Item 2 (rank 0's second image) raises a bug, not bad data: rank 0
    joins the next check at once with its failure, both stop there (rank 1
    after 4 of its 10 images, not 10) and rank 0 raises its error, rank 1
    says another process failed; 2 collectives each (check and sum)."""
    from paddleseg.core.val import evaluate_details
    from paddleseg.errors import DatasetError
    models = {0: _TinySeg(), 1: _TinySeg()}
    for model in models.values():
        model.forward = _counting(model.forward)
    out = _as_ranks(monkeypatch, 2, lambda rank: evaluate_details(
        models[rank], _TinyData(20, fail_at=2), progress=False, stop_requested=lambda: 0))
    assert [models[r].forward.calls for r in (0, 1)] == [1, 4]
    assert isinstance(out[0][0], RuntimeError) and 'a bug in item 2' in str(out[0][0])
    assert isinstance(out[1][0], DatasetError) and 'another process' in str(out[1][0])
    assert out[0][1] == out[1][1] == 2
