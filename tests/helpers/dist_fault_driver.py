"""train.py with a fault injected at a fixed point, for
tests/test_distributed_failures.py (run under ``paddle.distributed.launch``,
through record_exit.py):

    dist_fault_driver.py FAULT MARK_DIR TRAIN_ARGS...

FAULT is one of

* ``eval_sigterm:<images>:<seconds>``: every evaluated image takes
  ``seconds`` longer (a slow evaluation), and rank 0 sends SIGTERM to the
  launcher (its parent) after its ``<images>``-th image, as a cluster
  preempting the job does; the time it did so is written to
  ``MARK_DIR/sigterm_sent``.
* ``kill_workers:<iter>:sigterm`` and ``kill_workers:<iter>:sigkill``: before
  rank 1 fetches the batch of iteration ``<iter>``, it ends its training
  loader's worker processes, waits until its loader has noticed, and drops
  the batches the workers had loaded before, so that this very fetch
  fails. ``sigterm``: the workers get SIGTERM (they exit quietly, as when
  the launcher signals the rank's process group) and rank 1 sends itself
  SIGTERM too (its own signal, which rank 0 has not got); ``sigkill``: the
  workers are killed (as by the OOM killer), and nobody gets a signal.
* ``none``: train.py as it is.

Then it runs ``train.py TRAIN_ARGS...`` in this process.
"""

import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import train  # noqa: E402
from paddleseg.core import trainer as trainer_module, val as val_module  # noqa: E402


def _rank():
    return int(os.environ.get('PADDLE_TRAINER_ID', '0'))


def slow_eval_then_sigterm(images, seconds, mark_dir):
    predict = val_module.predict_class_map
    count = [0]

    def slow_predict(*args, **kwargs):
        time.sleep(seconds)
        count[0] += 1
        if _rank() == 0 and count[0] == images:
            with open(os.path.join(mark_dir, 'sigterm_sent'), 'w') as f:
                f.write(repr(time.time()))
            os.kill(os.getppid(), signal.SIGTERM)
        return predict(*args, **kwargs)
    val_module.predict_class_map = slow_predict


def _children():
    """The pids of this process's children (its loader's workers)."""
    pids = []
    for task in os.listdir('/proc/self/task'):
        with open('/proc/self/task/{}/children'.format(task)) as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def _ended(pid):
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except OSError:
        return True


def kill_workers_before(iteration, how):
    next_batch = trainer_module.Trainer._next_batch

    def fetch(self, batches):
        if _rank() == 1 and self.state.iteration == iteration:
            reader = batches.gi_frame.f_locals['batches']  # _endless's loader iterator
            workers = _children()
            assert workers, 'no loader workers to end'
            for pid in workers:
                os.kill(pid, signal.SIGKILL if how == 'sigkill' else signal.SIGTERM)
            deadline = time.monotonic() + 30
            while not all(_ended(p) for p in workers) or \
                    not reader._thread_done_event.is_set():
                assert time.monotonic() < deadline, 'the loader did not notice'
                time.sleep(0.05)
            if how == 'sigterm':
                os.kill(os.getpid(), signal.SIGTERM)
            while True:  # the batches loaded before are dropped
                batch = next_batch(self, batches)
                if getattr(trainer_module, 'LOADER_FAILURE', 'loader_failure') in batch:
                    return batch
        return next_batch(self, batches)
    trainer_module.Trainer._next_batch = fetch


def main(fault, mark_dir, argv):
    kind, *params = fault.split(':')
    if kind == 'eval_sigterm':
        slow_eval_then_sigterm(int(params[0]), float(params[1]), mark_dir)
    elif kind == 'kill_workers':
        kill_workers_before(int(params[0]), params[1])
    elif kind != 'none':
        raise SystemExit('unknown fault {}'.format(fault))
    train.main(argv)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
