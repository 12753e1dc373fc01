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

RECORD_EXIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'helpers', 'record_exit.py')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('dist')
    root = make_data(base / 'cs', n_train=8)
    return {'base': base, 'cfg': write_config(base / 'tiny.yml', root, iters=400)}


def _launch(tiny, name, *extra):
    """train.py on 2 processes, each through record_exit.py (statuses in
    ``<log_dir>/status/exit_<rank>``); the launcher's output goes to
    ``<log_dir>/launcher.txt`` (see :func:`_launcher_output`)."""
    log_dir = tiny['base'] / (name + '_log')
    out = tiny['base'] / name
    (log_dir / 'status').mkdir(parents=True)
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), RECORD_EXIT, str(log_dir / 'status'),
           script('train.py')] + train_args(
               tiny['cfg'], out, '--save_interval', 3, '--keep_checkpoint_max', 2, *extra)
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
