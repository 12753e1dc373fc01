"""How a training run is stopped from outside: stop signals and stalls.

* :class:`StopSignals` turns SIGINT/SIGTERM into a flag that the training
  loop reads between steps (it then saves ``iter_<N>`` and raises
  :class:`TrainingInterrupted`), and restores every handler it replaced.
* Under ``paddle.distributed.launch`` the ranks stop together: what one of
  them saw (a signal, a data loader that failed) is maxed over the ranks
  at fixed points (the training loop before each step, the evaluation every
  few images), and :attr:`StopSignals.agreed` holds the signal every rank
  knows of. A rank whose loader failed still joins that agreement, so that
  every rank saves and stops (:class:`LoaderFailed`) instead of the others
  waiting for it in a collective.
* :class:`StallWatchdog` is a thread that notices a step lasting longer than
  a timeout (e.g. a collective waiting for a dead process) and calls back.
  What to do then is the caller's choice: ``train.py`` logs and ends the
  process with status 124; :func:`paddleseg.core.train` never ends the
  process, and without a watchdog runs none.
"""

import contextlib
import os
import signal
import threading
import time

from paddleseg.utils import logger
from paddleseg.errors import first_line


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint.

    Attributes:
        signum (int): The signal (``signal.SIGINT`` or ``signal.SIGTERM``).
        iteration (int): The last finished iteration.
        checkpoint (str|None): The checkpoint holding it (None on ranks > 0).
    """

    def __init__(self, signum, iteration, checkpoint):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        where = ('; checkpoint {} saved (resume with --resume_model auto)'.format(
            checkpoint) if checkpoint else '')
        super().__init__('interrupted by {} after iter {}{}'.format(
            signal.Signals(signum).name, iteration, where))


class EvalAborted(Exception):
    """A stop signal arrived during an evaluation, which was abandoned (on
    every rank together, at the same image).

    Attributes:
        signum (int|None): The signal, when known (the ranks' agreed one).
    """

    def __init__(self, signum=None):
        self.signum = signum
        super().__init__('evaluation abandoned{}'.format(
            ' after ' + signal.Signals(signum).name if signum else ''))


class LoaderFailed(RuntimeError):
    """The training data loader of this rank or of another one failed (its
    worker processes died, ...) without a stop signal; every rank saved the
    last finished iteration first.

    Attributes:
        iteration (int): The last finished iteration.
        checkpoint (str|None): The checkpoint holding it (None on ranks > 0).
    """

    def __init__(self, message, iteration, checkpoint):
        self.iteration, self.checkpoint = iteration, checkpoint
        self.where = ('; checkpoint {} holds iter {} (resume with --resume_model auto)'
                      .format(checkpoint, iteration) if checkpoint else '')
        super().__init__('{}{}'.format(message, self.where))


def worker_signal(signum, frame=None):
    """What a stop signal does in a DataLoader worker process: SIGTERM ends
    it quietly (status 0), SIGINT nothing (the main process handles Ctrl-C).

    Ctrl-C reaches every process of the terminal's process group; the main
    process saves a checkpoint, then stops the loader, and a worker that
    died of it would make the loader fail instead. SIGTERM must still end a
    worker (multiprocessing terminates its children that way at exit);
    exiting with status 0 instead of dying of the signal keeps paddle from
    raising an error in the main process at an arbitrary point (the main
    process then sees the missing worker at its next batch).
    """
    if signum == signal.SIGTERM:
        os._exit(0)


def _no_op(signum, frame):
    """A Python-level handler that does nothing (SIG_DFL in its place would
    make Python report an already pending signal as 'ignored due to race
    condition')."""


class StopSignals:
    """Records SIGINT/SIGTERM instead of dying, while training runs.

    A context manager: on entry it installs its handlers (main thread only;
    signals ignored on entry stay ignored) and ``threading.excepthook``; on
    exit it puts back every handler it replaced, SIGCHLD's included.

    The first signal sets :attr:`signum`. :attr:`agreed` is the signal
    every rank of the job knows of (set from a collective's result with
    :meth:`agree`; with one process the loop reads :attr:`signum`). After a SIGINT, SIGINT gets its
    previous handler back, so a second Ctrl-C acts at once; further SIGTERMs
    are only recorded. After the first signal paddle's SIGCHLD handler is
    off until the block ends: the signal may have ended DataLoader workers
    too, and paddle would raise that at any point (in the middle of saving).

    Processes forked meanwhile (the evaluation's DataLoader workers) inherit
    the handler: there it is :func:`worker_signal`, as in the training
    loader's workers (:func:`paddleseg.core.sampler.worker_init`).

    A signal sent to the whole process group also ends the workers, and a
    DataLoader's reader thread may then fail. Such a thread failure within
    :attr:`GRACE` seconds of a stop signal (before or after it: the thread
    can fail before the main thread runs the handler) is logged in one line
    instead of a traceback; any other keeps the usual report, :attr:`GRACE`
    seconds late at most.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    GRACE = 5.0

    def __init__(self):
        self.signum = None
        self.agreed = None
        self._previous = {}
        self._previous_hook = None
        self._pid = os.getpid()

    def __enter__(self):
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        self._previous_hook, threading.excepthook = threading.excepthook, self._thread_failed
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self._previous_hook is not None:
            threading.excepthook, self._previous_hook = self._previous_hook, None

    def _thread_failed(self, args):
        """``threading.excepthook`` while training runs (see the class doc)."""
        deadline = time.monotonic() + self.GRACE
        while self.signum is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.signum is None or os.getpid() != self._pid:
            (self._previous_hook or threading.__excepthook__)(args)
            return
        logger.warning('after {}: thread {} stopped: {}'.format(
            signal.Signals(self.signum).name,
            args.thread.name if args.thread is not None else '?',
            first_line(args.exc_value, with_type=True)))

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked DataLoader worker
            worker_signal(signum)
            return
        if signum == signal.SIGINT:
            signal.signal(signum, self._previous.pop(signum))
        if self.signum is not None:
            return
        self.signum = signum
        if threading.current_thread() is threading.main_thread():
            self._previous.setdefault(signal.SIGCHLD, signal.signal(signal.SIGCHLD, _no_op))
        logger.warning('Got {}: saving a checkpoint after the current step, then '
                       'stopping{}'.format(signal.Signals(signum).name,
                                           ' (Ctrl-C again stops at once, without '
                                           'saving)' if signum == signal.SIGINT else ''))

    def mute_child_exits(self):
        """Put a no-op in place of a Python SIGCHLD handler until the block
        ends (main thread only).

        paddle's DataLoader installs one (once per process, when it first
        starts worker processes) that raises in the main thread, wherever it
        is (in a step, in a collective), when a worker died of a signal
        (e.g. the OOM killer's). The training loop learns of dead workers
        from the loader at its next fetch instead (paddle's reader thread
        checks them every few seconds), where every rank can agree on it.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGCHLD)
        if callable(current) and current is not _no_op:
            self._previous.setdefault(signal.SIGCHLD, signal.signal(signal.SIGCHLD, _no_op))

    def agree(self, signum):
        """Record ``signum`` (0/None: none) as known to every rank: a value
        every rank got from the same collective. The first one stays."""
        if signum and self.agreed is None:
            self.agreed = int(signum)


class StallWatchdog:
    """Calls ``on_stall(timeout, what)`` once when a guarded block runs
    longer than ``timeout`` seconds.

    A stuck collective (a process of the job died or hangs) blocks forever
    inside paddle, where the main thread cannot be interrupted; this thread
    notices. ``on_stall`` runs in the watchdog's thread; by default it logs
    an error and training goes on waiting (an entry script passes one that
    ends the process). ``timeout`` 0 or None: a watchdog that never fires
    and starts no thread. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, timeout, on_stall=None):
        self.timeout = timeout or 0
        self.on_stall = on_stall or self._log_stall
        self.deadline = None
        self.what = ''
        self._stop = threading.Event()
        self._thread = None
        if self.timeout > 0:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name='paddleseg-watchdog')
            self._thread.start()

    @staticmethod
    def _log_stall(timeout, what):
        logger.error('no progress for {:g} s in {} (a stuck collective? did another '
                     'process of the job die?)'.format(timeout, what))

    @contextlib.contextmanager
    def guard(self, what):
        """Time the block; ``what`` names it in the report (``'iter 12'``)."""
        if self._thread is None:
            yield
            return
        self.what, self.deadline = what, time.monotonic() + self.timeout
        try:
            yield
        finally:
            self.deadline = None

    def _watch(self):
        period = min(1.0, self.timeout / 4)
        while not self._stop.wait(period):
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self.deadline = None  # once per stall
                self.on_stall(self.timeout, self.what)

    def close(self):
        """Stop the thread (and wait for it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
