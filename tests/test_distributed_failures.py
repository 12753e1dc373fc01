"""Two CPU processes under ``paddle.distributed.launch`` when one of them
dies or hangs: the job ends non-zero in bounded time and the checkpoints on
disk stay complete.

What happens (paddle 3.3, CPU/gloo): a killed rank closes its sockets, the
other rank's next all-reduce fails at once (gloo IoException, abort) and the
launcher stops the remaining processes (SIGTERM, SIGKILL 3 s later) and
exits non-zero. A rank that hangs instead (here: SIGSTOP) blocks the others
in a collective; gloo gives up after its own 30 s on CPU, and the trainer's
``--stall_timeout`` watchdog (any backend) ends the waiting rank with status
124 first when it is shorter. SIGTERM to the launcher reaches every rank.

What paddle's launcher reports: when a rank fails, it logs ``Container rank
<r> status failed ... code <status>`` for it, stops the others (SIGTERM,
SIGKILL 3 s later) and exits with the first non-zero status in rank order
(the stalled job: rank 0's 124). Stopped by a signal itself, it exits with
the signal's number (15 for SIGTERM) and reports nothing of the ranks; each
rank's own status (143 after saving) is recorded here by running train.py
through ``tests/record_exit.py``.

Faults at a fixed point (``tests/helpers/dist_fault_driver.py``, not a
sleep): SIGTERM to the launcher during a slow evaluation, with and
without loader workers; one rank's loader workers ended before it fetches
a batch, with and without a signal. Every rank stops at the same
iteration with its checkpoint, and ``--resume_model auto`` continues.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from robust_helpers import LAUNCH_ENV, ROOT, make_data, script, train_args, write_config
from paddleseg.utils.checkpoint import find_latest_checkpoint, load_checkpoint

HELPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'helpers')
RECORD_EXIT = os.path.join(HELPERS, 'record_exit.py')
FAULT_DRIVER = os.path.join(HELPERS, 'dist_fault_driver.py')
LAUNCHER_GRACE = 30
"""Seconds paddle's launcher waits for the ranks after it forwarded a
SIGTERM, before it kills them."""


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('dist')
    root = make_data(base / 'cs', n_train=8, n_val=60)
    return {'base': base, 'cfg': write_config(base / 'tiny.yml', root, iters=400)}


def _launch(tiny, name, *extra, fault=None, out=None):
    """train.py on 2 processes, each through record_exit.py (statuses in
    ``<log_dir>/status/exit_<rank>``), with ``fault`` through
    tests/helpers/dist_fault_driver.py (its marks in ``<log_dir>/status``);
    the launcher's output goes to ``<log_dir>/launcher.txt`` (see
    :func:`_launcher_output`). ``out``: the save_dir (default: ``name``)."""
    log_dir = tiny['base'] / (name + '_log')
    out = out or tiny['base'] / name
    (log_dir / 'status').mkdir(parents=True)
    entry = [script('train.py')] if fault is None else [
        FAULT_DRIVER, fault, str(log_dir / 'status')]
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), RECORD_EXIT, str(log_dir / 'status')] + entry + \
        train_args(tiny['cfg'], out, '--save_interval', 3, '--keep_checkpoint_max', 2, *extra)
    with open(log_dir / 'launcher.txt', 'w') as launcher_out:  # the child keeps its copy
        proc = subprocess.Popen(cmd, cwd=ROOT, env=LAUNCH_ENV, stdout=launcher_out,
                                stderr=subprocess.STDOUT, text=True)
    return proc, log_dir, out


def _launcher_output(log_dir):
    return (log_dir / 'launcher.txt').read_text(errors='replace')


def _rank_status(log_dir, rank):
    """The exit status rank ``rank`` recorded, None if it recorded none."""
    path = log_dir / 'status' / 'exit_{}'.format(rank)
    return int(path.read_text()) if path.exists() else None


def _worker_log(log_dir, rank):
    path = log_dir / 'workerlog.{}'.format(rank)
    return open(path, errors='replace').read() if path.exists() else ''


def _wait_for_iter(proc, log_dir, it, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if '[TRAIN] iter: {}/'.format(it) in _worker_log(log_dir, 0):
            return
        assert proc.poll() is None, _launcher_output(log_dir)[-3000:]
        time.sleep(0.1)
    raise AssertionError('iteration {} not reached'.format(it))


def _rank_pid(launcher, rank):
    """The pid of the training process of ``rank`` started by ``launcher``."""
    out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(launcher.pid)],
                         capture_output=True, text=True).stdout.split()
    for pid in out:
        try:
            environ = open('/proc/{}/environ'.format(pid), 'rb').read().split(b'\0')
        except OSError:
            continue
        if 'PADDLE_TRAINER_ID={}'.format(rank).encode() in environ:
            return int(pid)
    raise AssertionError('no process of rank {} among {}'.format(rank, out))


def _ends_within(proc, seconds):
    start = time.monotonic()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError('the job was still running {} s later'.format(seconds))
    return time.monotonic() - start


def _assert_checkpoints_complete(out):
    latest = find_latest_checkpoint(str(out))
    assert latest is not None
    states, meta = load_checkpoint(latest)
    assert len(states['model.pdparams']) > 100 and meta['nranks'] == 2
    for name in os.listdir(out):
        if re.fullmatch(r'iter_\d+', name):
            assert os.path.isfile(out / name / 'meta.json'), name


def test_killing_one_rank_ends_the_job(tiny):
    proc, log_dir, out = _launch(tiny, 'killed')
    _wait_for_iter(proc, log_dir, 4)
    os.kill(_rank_pid(proc, 1), signal.SIGKILL)
    took = _ends_within(proc, 60)
    assert proc.returncode != 0
    assert took < 60
    assert _rank_status(log_dir, 1) is None          # killed: recorded nothing
    # the launcher names the first rank it sees failed: the killed one (-9),
    # or rank 0 if its collective failed first (e.g. gloo's abort, -6)
    launcher = _launcher_output(log_dir)
    failed = re.search(r'Container rank (\d) status failed .* code (-?\d+) ', launcher)
    assert failed, launcher[-3000:]
    assert failed.group(2) == '-9' if failed.group(1) == '1' else failed.group(2) != '0'
    _assert_checkpoints_complete(out)


def test_sigterm_to_the_launcher_saves_once_at_the_same_iteration_on_every_rank(tiny):
    """The launcher forwards SIGTERM to the ranks; they agree on the
    iteration to stop at, rank 0 saves it, all exit with 143 (the launcher
    itself with 15, the signal's number)."""
    proc, log_dir, out = _launch(tiny, 'term')
    _wait_for_iter(proc, log_dir, 4)
    proc.send_signal(signal.SIGTERM)
    _ends_within(proc, 60)
    assert proc.returncode == signal.SIGTERM, _launcher_output(log_dir)[-3000:]
    assert [_rank_status(log_dir, r) for r in (0, 1)] == [143, 143], \
        _worker_log(log_dir, 0)[-2000:] + _worker_log(log_dir, 1)[-2000:]
    stops = [re.search(r'interrupted by SIGTERM after iter (\d+)', _worker_log(log_dir, r))
             for r in (0, 1)]
    assert all(stops), _worker_log(log_dir, 0)[-2000:] + _worker_log(log_dir, 1)[-2000:]
    it = stops[0].group(1)
    assert stops[1].group(1) == it
    assert 'checkpoint {} saved'.format(out / ('iter_' + it)) in _worker_log(log_dir, 0)
    assert find_latest_checkpoint(str(out)) == str(out / ('iter_' + it))
    _assert_checkpoints_complete(out)


def test_a_hung_rank_is_ended_by_the_stall_watchdog(tiny):
    proc, log_dir, out = _launch(tiny, 'hung', '--stall_timeout', 4)
    _wait_for_iter(proc, log_dir, 4)
    hung = _rank_pid(proc, 1)
    os.kill(hung, signal.SIGSTOP)
    try:
        took = _ends_within(proc, 25)  # gloo's own timeout would take 30 s
    finally:
        try:
            os.kill(hung, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = _worker_log(log_dir, 0)
    assert re.search(r'rank 0: no progress for 4 s in iter \d+ .*exiting with status 124', log), \
        log[-3000:]
    # rank 0's watchdog ended it with 124 (os._exit: nothing recorded), which
    # the launcher reports and exits with
    launcher = _launcher_output(log_dir)
    assert re.search(r'Container rank 0 status failed .* code 124 ', launcher), launcher[-3000:]
    assert proc.returncode == 124, launcher[-3000:]
    assert _rank_status(log_dir, 0) is None
    assert took < 25
    _assert_checkpoints_complete(out)


def _logs(log_dir):
    return _worker_log(log_dir, 0)[-3000:] + _worker_log(log_dir, 1)[-3000:]


def _assert_resumes(tiny, name, out, it, iters):
    """``--resume_model auto`` in ``out`` starts at ``it`` and trains to ``iters``."""
    proc, log_dir, _ = _launch(tiny, name, '--iters', iters, '--resume_model', 'auto', out=out)
    _ends_within(proc, 120)
    assert proc.returncode == 0, _logs(log_dir)
    assert 'Resumed from {} at iter {}'.format(out / 'iter_{}'.format(it), it) in \
        _worker_log(log_dir, 0)
    assert load_checkpoint(str(out / 'iter_{}'.format(iters)))[1]['iter'] == iters


@pytest.mark.parametrize('workers', [0, 1])
def test_sigterm_during_a_long_evaluation_ends_the_job_in_time_with_its_checkpoint(
        tiny, workers):
    """The launcher gets SIGTERM while the evaluation of iter 3 runs (each
    image takes 1.1 s: the whole one would take 33 s, longer than the
    launcher waits). iter_3 was saved before the evaluation; the ranks agree
    to abandon it within a few images (without loader workers too, where
    nothing ends the evaluation from outside), all stop at iter 3, well
    within the launcher's grace, and a resume continues from iter_3."""
    name = 'evalterm{}'.format(workers)
    proc, log_dir, out = _launch(tiny, name, '--iters', 6, '--do_eval', '--num_workers',
                                 workers, fault='eval_sigterm:2:1.1')
    _ends_within(proc, 120)
    ended = time.time()
    sent = float((log_dir / 'status' / 'sigterm_sent').read_text())
    assert ended - sent < LAUNCHER_GRACE - 5, _logs(log_dir)
    assert [_rank_status(log_dir, r) for r in (0, 1)] == [143, 143], _logs(log_dir)
    for rank in (0, 1):
        assert 'interrupted by SIGTERM after iter 3' in _worker_log(log_dir, rank), \
            _logs(log_dir)
    assert 'Evaluation at iter 3 abandoned: stopping' in _worker_log(log_dir, 0)
    assert 'checkpoint {} saved'.format(out / 'iter_3') in _worker_log(log_dir, 0)
    assert find_latest_checkpoint(str(out)) == str(out / 'iter_3')
    _assert_checkpoints_complete(out)
    _assert_resumes(tiny, name + '_resume', out, 3, 4)


@pytest.mark.parametrize('own_signal', [True, False])
def test_one_ranks_loader_dying_first_stops_every_rank_with_a_checkpoint(tiny, own_signal):
    """Rank 1's loader workers end and its fetch for iter 5 fails while rank
    0 waits in the step's agreement. Both ranks save iter_4 and stop
    together: with SIGTERM to rank 1's process group (its workers exit
    quietly; rank 0 never got the signal) as interrupted, 143 each; with
    the workers killed and no signal (paddle's SIGCHLD handler would raise
    anywhere), with the loader's error. A resume continues."""
    name = 'lost_{}'.format('term' if own_signal else 'killed')
    fault = 'kill_workers:5:' + ('sigterm' if own_signal else 'sigkill')
    proc, log_dir, out = _launch(tiny, name, '--iters', 6, '--save_interval', 1000,
                                 '--num_workers', 2, fault=fault)
    _ends_within(proc, 60)
    logs = _logs(log_dir)
    if own_signal:
        assert [_rank_status(log_dir, r) for r in (0, 1)] == [143, 143], logs
        for rank in (0, 1):
            assert 'interrupted by SIGTERM after iter 4' in _worker_log(log_dir, rank), logs
        assert 'checkpoint {} saved'.format(out / 'iter_4') in _worker_log(log_dir, 0)
    else:
        # rank 1: the dead workers' one line with the shared-memory fix (exit 2,
        # paddleseg.core.loader.worker_death_message); rank 0: LoaderFailed
        assert [_rank_status(log_dir, r) for r in (0, 1)] == [1, 2], logs
        assert re.search(r'train.py: error: the training data loader stopped: .*(Blocking queue '
                         r'is killed|exited unexpectedly).*--shm-size', _worker_log(log_dir, 1)), logs
        assert ('LoaderFailed: training stopped at iter 5: the data loader of another '
                'process failed (see its log); checkpoint {} holds iter 4 (resume with '
                '--resume_model auto)'.format(out / 'iter_4')) in _worker_log(log_dir, 0), logs
    assert find_latest_checkpoint(str(out)) == str(out / 'iter_4')
    _assert_checkpoints_complete(out)
    if own_signal:
        _assert_resumes(tiny, name + '_resume', out, 4, 6)
