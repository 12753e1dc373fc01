"""Small data, a small config and CLI runners for the robustness tests
(test_bad_inputs, test_interrupts, test_distributed_failures, test_soak).

Images are 32x64 (see tiny_data.py), crops 32x32, batch 1 and a narrow
ResNet18_vd PointRendFPN, so a training iteration takes a fraction of a
second on one CPU thread. The runs are on CPU (:data:`ENV`); their stderr
is read with :func:`own_lines` / :func:`one_error_line`, which leave out what
paddle itself prints there (glog lines, its OMP_NUM_THREADS warning).
"""

import os
import re
import signal
import subprocess
import sys
import time

from tiny_data import make_tiny_cityscapes, write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a narrow head: a training iteration is a fraction of a second on one thread
NARROW_MODEL = {'fpn_outplanes': 64, 'PFN_in_channels': [64, 64, 64, 64],
                'PFN_channels': 32, 'point_in_channels': [64],
                'point_out_channels': 64, 'point_num_points': 16,
                'point_subdivision_num_points': 256}

# one CPU thread per process: the tests share the machine's cores; on CPU
# also with a GPU build of paddle (no visible CUDA device). The GPU suite
# (tests/gpu) must not use this environment for its own runs.
ENV = dict(os.environ, SEG_CPU_THREADS='1', PYTHONUNBUFFERED='1', CUDA_VISIBLE_DEVICES='')

# for `python -m paddle.distributed.launch` on CPU: the launcher reads a set
# CUDA_VISIBLE_DEVICES (ENV's '') as a list of GPUs, one with an empty name,
# too few for 2 processes; unset, it finds no GPU on a CPU build
LAUNCH_ENV = {k: v for k, v in ENV.items() if k != 'CUDA_VISIBLE_DEVICES'}


def make_data(root, n_train=4, n_val=1):
    """A Cityscapes-layout folder of 32x64 images; returns ``root``."""
    return make_tiny_cityscapes(str(root), n_train=n_train, n_val=n_val, h=32, w=64)


def write_config(path, dataset_root, iters=4, extra=''):
    """A small, narrow PointRendFPN config on ``dataset_root`` (batch 1,
    32x32 crops); ``extra`` is YAML appended at the top level."""
    return str(write_tiny_config(path, dataset_root, iters=iters, batch_size=1,
                                 crop=32, model=NARROW_MODEL, extra=extra))


def train_args(cfg, save_dir, *extra):
    """train.py arguments of the tests' runs."""
    return ['--config', str(cfg), '--save_dir', str(save_dir), '--seed', '3',
            '--log_iters', '1', '--device', 'cpu', '--cpu_threads', '1'] + [
                str(e) for e in extra]


def script(name):
    return os.path.join(ROOT, name)


def run_cli(name, *args, timeout=180, env=None):
    """Run ``python <name> args...`` to the end; return the CompletedProcess.
    ``env``: variables to set on top of :data:`ENV` (a value of ``None``
    removes that variable)."""
    environ = dict(ENV)
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.run([sys.executable, script(name)] + [str(a) for a in args],
                          cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def _sigint_as_in_a_terminal():
    """A job started from a terminal takes Ctrl-C. A shell that started the
    test run in the background (``cmd &``) left SIGINT ignored, which
    children inherit and train.py rightly keeps ignoring (as under nohup):
    the script under test gets SIGINT's default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(name, *args, stdout_path=None, new_session=False):
    """Start ``python <name> args...``; stdout goes to ``stdout_path`` (read
    it with :func:`wait_for_line`), stderr to a pipe. ``new_session``: in a
    process group of its own (like a job of a terminal). SIGINT is not
    ignored in it, whatever the test run's own disposition."""
    out = open(stdout_path, 'w') if stdout_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, script(name)] + [str(a) for a in args],
                            cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session,
                            preexec_fn=_sigint_as_in_a_terminal)
    proc.stdout_path = stdout_path
    return proc


def wait_for_line(proc, text, timeout=120):
    """Wait until ``text`` appears in the stdout file of ``proc``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(proc.stdout_path) as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            raise AssertionError('process ended ({}) before printing {!r}:\n{}'.format(
                proc.returncode, text, proc.stderr.read()[-3000:]))
        time.sleep(0.05)
    raise AssertionError('no {!r} within {} s'.format(text, timeout))


def kill_and_wait(proc, sig=signal.SIGKILL, timeout=60):
    """Send ``sig``; return the exit status and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


# What paddle itself writes on stderr, whatever the script does:
# glog lines of its C++ core, ``<I|W|E|F>[yyyy]<mmdd> <hh:mm:ss.micro> <thread>
# <file>:<line>] ...`` (e.g. device and allocator notes of GPU builds) ...
_GLOG_LINE = re.compile(r'[IWEF](?:\d{4})?\d{4} \d\d:\d\d:\d\d\.\d{6}\s+\d+ [^\s:\]]+:\d+\] ')
# ... and the two lines `import paddle` prints when OMP_NUM_THREADS > 1
_PADDLE_OMP_WARNING = re.compile(
    r'WARNING: OMP_NUM_THREADS set to \d+, not 1\. The computation speed will not be '
    r'optimized if you use data parallel\. .*$|PLEASE USE OMP_NUM_THREADS WISELY\.$')


def own_lines(text):
    """The non-blank lines of ``text`` (a process's stderr; ``\\r`` also ends
    a line) that are not paddle's own noise, as a list of strings.

    Dropped: glog-prefixed lines (``I1202 11:31:17.123456 4242 file.cc:42]
    ...``, from paddle's C++ core) and the two-line warning that importing
    paddle prints when ``OMP_NUM_THREADS`` is above 1. Everything else,
    including tracebacks, Python warnings and progress bars, is kept."""
    return [line for line in text.splitlines()
            if line.strip() and not _GLOG_LINE.match(line)
            and not _PADDLE_OMP_WARNING.match(line)]


def _is_progress_bar(line):
    return '%|' in line  # tqdm's, e.g. of a download


def one_error_line(err, prog):
    """The stderr of a failed run is exactly one line ``<prog>: error: ...``
    (besides progress bars and paddle's own noise, see :func:`own_lines`);
    return it."""
    lines = [line for line in own_lines(err) if not _is_progress_bar(line)]
    assert 'Traceback' not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(prog + ': error: '), err
    return lines[0]
