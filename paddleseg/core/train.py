"""The training loop: step, log, evaluate-and-checkpoint.

``train`` runs on one device or, under ``python -m paddle.distributed.launch``,
on several: the model is wrapped in ``paddle.DataParallel``, BatchNorm becomes
``SyncBatchNorm`` on GPUs, each rank reads its own shard, and only rank 0
logs and writes checkpoints.

Randomness is a function of ``(seed, iteration)``: the batch order and each
sample's augmentation come from :class:`ResumableBatchSampler`, and paddle's
generator (PointRend's point sampling, dropout) is re-seeded at every
iteration. A run resumed from ``iter_N`` therefore continues exactly as the
uninterrupted run would have.

How a run stops early (every rank takes the same decision at the same
iteration: the flags are all-reduced once before and once after the forward
pass when there are several processes):

* SIGINT (Ctrl-C) or SIGTERM: the step in progress finishes (an evaluation in
  progress is abandoned after its current image on a single process, and
  finishes on several), ``iter_<it>`` is saved and
  :class:`TrainingInterrupted` is raised (entry scripts exit with 130 / 143).
  A second Ctrl-C stops at once, without saving; more SIGTERMs change
  nothing (``paddle.distributed.launch`` sends several, 0.2 s apart).
* A sample that cannot be loaded (:class:`~paddleseg.errors.DatasetError`):
  the state after the last finished iteration is saved, then the error is
  raised naming the file; fix it and resume with ``--resume_model auto``.
* A NaN/inf loss: ``nan_policy='stop'`` raises :class:`NonFiniteLossError`
  (the last regular checkpoint stays, nothing is saved);
  ``'skip'`` drops the update (the lr schedule still advances) and stops only
  after :data:`MAX_SKIPPED_STEPS` non-finite losses in a row.
* No progress for ``stall_timeout`` seconds inside a training step (e.g. a
  collective waiting for a process that died): a watchdog thread logs it and
  ends the process with status :data:`EXIT_STALLED`. Evaluation and saving
  are not timed.
"""

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque

import cv2
import numpy as np
import paddle

from paddleseg.core.infer import inference
from paddleseg.core.sampler import (LOAD_ERROR, LOAD_TRACEBACK, ResumableBatchSampler,
                                    SeededDataset, collate_batch, worker_init)
from paddleseg.core.val import evaluate
from paddleseg.errors import CheckpointError, ConfigError, DatasetError, SegError
from paddleseg.utils import logger
from paddleseg.utils.env import idle_threads_sleep, init_distributed, tune_host_allocator
from paddleseg.utils.visualize import get_palette, overlay
from paddleseg.utils.checkpoint import (find_latest_checkpoint, load_checkpoint,
                                        prune_checkpoints, save_checkpoint)


MAX_SKIPPED_STEPS = 10
"""With ``nan_policy='skip'``, training stops after this many non-finite
losses in a row."""

EXIT_STALLED = 124
"""Exit status when the stall watchdog fires (as timeout(1))."""


class NonFiniteLossError(SegError):
    """The loss became NaN or infinite."""


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


class _EvalAborted(Exception):
    """A stop signal arrived during an evaluation."""


class _StopSignals:
    """Records SIGINT/SIGTERM instead of dying, while training runs.

    The first signal sets :attr:`signum`. After a SIGINT, SIGINT gets its
    previous handler back, so a second Ctrl-C acts at once; further SIGTERMs
    are only recorded. Signals that were ignored when training started stay
    ignored; outside the main thread nothing is installed.

    Processes forked meanwhile (the evaluation's DataLoader workers) inherit
    the handler: there SIGINT is ignored and SIGTERM ends the process
    quietly, as in the training loader's workers
    (:func:`paddleseg.core.sampler.worker_init`). After the first signal,
    paddle's SIGCHLD handler is off until training returns.

    A signal sent to the whole process group also ends the workers, and a
    DataLoader's reader thread may then fail (a batch whose shared memory is
    gone). Such a thread failure within :attr:`GRACE` seconds of a stop
    signal (before or after it: the thread can fail before the main thread
    runs the handler) is logged in one line instead of a traceback; any
    other keeps the usual report, :attr:`GRACE` seconds late at most.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    GRACE = 5.0

    def __init__(self):
        self.signum = None
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
        logger.warning('after {}: thread {} stopped: {}: {}'.format(
            signal.Signals(self.signum).name,
            args.thread.name if args.thread is not None else '?',
            args.exc_type.__name__, str(args.exc_value).strip().splitlines()[0]
            if str(args.exc_value).strip() else ''))

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked DataLoader worker
            if signum == signal.SIGTERM:
                os._exit(0)
            return
        if signum == signal.SIGINT:
            signal.signal(signum, self._previous.pop(signum))
        if self.signum is None:
            self.signum = signum
            # the signal may have ended DataLoader workers too; paddle's
            # SIGCHLD handler would raise that at any point (in the middle
            # of saving the checkpoint); the loaders still report a dead
            # worker when they are next used
            if threading.current_thread() is threading.main_thread():
                self._previous.setdefault(signal.SIGCHLD,
                                          signal.signal(signal.SIGCHLD, _no_op))
            logger.warning('Got {}: saving a checkpoint after the current step, then '
                           'stopping{}'.format(signal.Signals(signum).name,
                                               ' (Ctrl-C again stops at once, without '
                                               'saving)' if signum == signal.SIGINT
                                               else ''))

    def check(self, *args):
        """Raise :class:`_EvalAborted` if a signal came (an ``on_prediction``
        callback of :func:`paddleseg.core.evaluate`)."""
        if self.signum is not None:
            raise _EvalAborted()


def _no_op(signum, frame):
    """A Python-level handler that does nothing (SIG_DFL in its place would
    make Python report an already pending signal as 'ignored due to race
    condition')."""


class _Watchdog:
    """Ends the process when a guarded block runs longer than ``timeout`` s.

    A stuck collective (a process of the job died or hangs) blocks forever
    inside paddle; this thread notices, logs one line naming the iteration
    and exits with :data:`EXIT_STALLED` (``os._exit``: the blocked main
    thread cannot be interrupted). ``timeout`` 0 or None disables it.
    """

    def __init__(self, timeout, rank):
        self.timeout = timeout or 0
        self.rank = rank
        self.deadline = None
        self.what = ''
        self._stop = threading.Event()
        self._thread = None
        if self.timeout > 0:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name='paddleseg-watchdog')
            self._thread.start()

    @contextlib.contextmanager
    def guard(self, what):
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
                message = ('rank {}: no progress for {:g} s in {} (a stuck collective? '
                           'did another process of the job die?); exiting with status '
                           '{}'.format(self.rank, self.timeout, self.what, EXIT_STALLED))
                logger.error(message)
                print('train: error: ' + message, file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(EXIT_STALLED)

    def close(self):
        self._stop.set()


def compute_losses(logits_list, label, losses):
    """Weighted loss terms, one per model output.

    Args:
        logits_list (list): The model's training outputs.
        label (Tensor): ``[N, H, W]`` int64.
        losses (dict): ``{'types': [loss layers], 'coef': [floats]}``, the
            i-th loss applied to the i-th output.

    Returns:
        list[Tensor]: ``coef[i] * types[i](logits_list[i], label)``.
    """
    if len(losses['types']) != len(logits_list):
        raise ConfigError('loss.types has {} losses for the model\'s {} training '
                          'outputs'.format(len(losses['types']), len(logits_list)))
    return [coef * loss(logits, label) for logits, loss, coef in
            zip(logits_list, losses['types'], losses['coef'])]


STRUCTURED = '@structured_param_names'


def _rename_keys(state, mapping):
    """Rename keys that start with ``old + '_'`` (accumulators) or equal
    ``old`` (master weights) for each ``old -> new`` in ``mapping``."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _rename_keys(value, mapping)
            continue
        head = max((old for old in mapping
                    if key == old or key.startswith(old + '_')),
                   key=len, default=None)
        out[key if head is None else mapping[head] + key[len(head):]] = value
    return out


def optimizer_state(optimizer, model):
    """``optimizer.state_dict()`` keyed by the model's structured parameter
    names (``backbone.conv1_1._conv.weight_velocity_0``) instead of paddle's
    per-process ones (``conv2d_78.w_0_velocity_0``), so that it can be
    restored into a model built in any process, e.g. a notebook that
    already built others."""
    state = _rename_keys(optimizer.state_dict(),
                         {p.name: n for n, p in model.named_parameters()})
    state[STRUCTURED] = True
    return state


def load_optimizer_state(optimizer, model, state):
    """Inverse of :func:`optimizer_state`; a state saved by PaddleSeg (paddle's
    own names) is passed through as it is."""
    state = dict(state)
    if state.pop(STRUCTURED, False):
        state = _rename_keys(state, {n: p.name for n, p in model.named_parameters()})
    optimizer.set_state_dict(state)


def _step_seed(seed, it, rank):
    return int(np.random.default_rng([seed, it, rank, 7]).integers(2 ** 31))


def _shared_seed(seed):
    """``seed``, or a fresh random one agreed by every rank (rank 0's)."""
    if seed is not None:
        return seed
    seed = int(np.random.SeedSequence().entropy % (2 ** 31))
    if paddle.distributed.get_world_size() > 1:
        t = paddle.to_tensor([seed], dtype='int64')
        paddle.distributed.broadcast(t, src=0)
        seed = int(t.numpy()[0])
    return seed


class _Trainer:
    """State of one training run; ``train`` is its public face."""

    def __init__(self, model, train_dataset, losses, optimizer, iters,
                 batch_size, val_dataset, save_dir, save_interval, log_iters,
                 num_workers, use_vdl, keep_checkpoint_max, do_eval, precision,
                 amp_level, seed, nan_policy, eval_kwargs, eval_interval=None,
                 stall_timeout=None):
        self.net = model
        self.train_dataset = train_dataset
        self.losses = losses
        self.optimizer = optimizer
        self.iters = iters
        self.batch_size = batch_size
        self.val_dataset = val_dataset
        self.save_dir = save_dir
        self.save_interval = save_interval
        self.eval_interval = eval_interval or save_interval
        self.stall_timeout = stall_timeout
        self.log_iters = log_iters
        self.num_workers = num_workers
        self.keep_checkpoint_max = keep_checkpoint_max
        self.do_eval = do_eval and val_dataset is not None
        self.seed = seed
        self.nan_policy = nan_policy
        self.eval_kwargs = eval_kwargs or {}
        self.rank = paddle.distributed.get_rank()
        self.nranks = paddle.distributed.get_world_size()
        self.use_fp16 = precision == 'fp16'
        self.amp_level = amp_level
        self.scaler = paddle.amp.GradScaler(enable=self.use_fp16,
                                            init_loss_scaling=1024)
        self.start_iter = 0
        self.last_saved = (None, None)  # (iteration, folder) of the newest checkpoint
        self.skipped = 0        # non-finite losses in a row
        self.signals = _StopSignals()
        self.best = {'miou': -1.0, 'iter': -1}
        self.vdl = self._vdl_writer() if use_vdl and self.rank == 0 else None
        self.model = self._wrap(model)

    # -- setup ---------------------------------------------------------------
    def _wrap(self, model):
        if self.nranks == 1:
            return model
        if paddle.get_device().startswith('gpu'):
            model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return paddle.DataParallel(model)

    def _vdl_writer(self):
        from visualdl import LogWriter
        return LogWriter(os.path.join(self.save_dir, 'vdl'))

    def resume(self, ckpt_dir):
        """Restore model, optimizer (with its lr schedule), iteration, seed
        and best result from a checkpoint folder written by this loop."""
        states, meta = load_checkpoint(ckpt_dir)
        if 'model.pdparams' not in states or 'model.pdopt' not in states:
            raise CheckpointError('{} lacks model.pdparams or model.pdopt'.format(
                ckpt_dir))
        self.net.set_state_dict(states['model.pdparams'])
        load_optimizer_state(self.optimizer, self.net, states['model.pdopt'])
        if 'scaler.pdstate' in states:
            self.scaler.load_state_dict(states['scaler.pdstate'])
        self.start_iter = int(meta['iter'])
        self.last_saved = (self.start_iter, ckpt_dir)
        self.seed = int(meta.get('seed', self.seed))
        self.best = meta.get('best', self.best)
        logger.info('Resumed from {} at iter {}'.format(ckpt_dir, self.start_iter))

    def _loader(self):
        sampler = ResumableBatchSampler(
            len(self.train_dataset), self.batch_size, self.seed, self.rank,
            self.nranks, shuffle=True, start_iter=self.start_iter)
        loader = paddle.io.DataLoader(
            SeededDataset(self.train_dataset), batch_sampler=sampler,
            num_workers=self.num_workers, return_list=True,
            collate_fn=collate_batch, worker_init_fn=worker_init,
            persistent_workers=False)
        return sampler, loader

    def _agree(self, values):
        """Each value (a non-negative int or bool) maxed over the ranks (one
        all-reduce of a tiny tensor); a single process keeps its own."""
        values = [int(v) for v in values]
        if self.nranks == 1:
            return values
        t = paddle.to_tensor(values, dtype='int32')
        paddle.distributed.all_reduce(t, op=paddle.distributed.ReduceOp.MAX)
        return [int(v) for v in t.numpy().tolist()]

    # -- the loop --------------------------------------------------------------
    def run(self):
        watchdog = _Watchdog(self.stall_timeout, self.rank)
        try:
            with self.signals:
                return self._run(watchdog)
        finally:
            watchdog.close()

    def _run(self, watchdog):
        _, loader = self._loader()
        batches = _endless(loader)
        try:
            return self._loop(watchdog, batches)
        finally:
            batches.close()  # stop the loader's workers on every way out

    def _next_batch(self, batches, it):
        try:
            return next(batches)
        except Exception:
            # a signal to the whole process group can end the loader's
            # workers before this process acts on it
            if self.signals.signum is not None and self.nranks == 1:
                self._interrupted(it - 1, self.signals.signum)
            raise

    def _loop(self, watchdog, batches):
        it = self.start_iter
        meter = _Meter(self.log_iters)
        self.model.train()
        tic = time.time()
        while it < self.iters:
            it += 1
            with watchdog.guard('iter {}'.format(it)):
                batch = self._next_batch(batches, it)
                reader_cost = time.time() - tic
                load_error = batch.get(LOAD_ERROR)
                failed, stop = self._agree([load_error is not None,
                                            self.signals.signum or 0])
                if failed:
                    self._data_error(it, load_error, batch.get(LOAD_TRACEBACK))
                terms = self.step(batch, it)
            meter.update(terms, reader_cost, time.time() - tic,
                         batch['img'].shape[0])
            if it % self.log_iters == 0 or it == self.iters:
                self.log(it, meter)
            if it % self.save_interval == 0 or it % self.eval_interval == 0 \
                    or it == self.iters:
                self.evaluate_and_checkpoint(it)
                self.model.train()
            # one process acts on its own flag at once; several wait until
            # they agreed on it (at the start of the next step at the latest)
            if self.nranks == 1:
                stop = self.signals.signum
            if stop:
                self._interrupted(it, stop)
            tic = time.time()
        return self.best

    def step(self, batch, it):
        """One optimisation step; returns the loss terms as floats."""
        paddle.seed(_step_seed(self.seed, it, self.rank))
        images = batch['img']
        labels = batch['label'].astype('int64')
        if labels.ndim == 4:
            labels = labels.squeeze(1)
        # a skipped step must leave no trace: the forward pass already
        # updated BatchNorm's running statistics, which may now be NaN
        before = _forward_state(self.net) if self.nan_policy == 'skip' else None
        with paddle.amp.auto_cast(enable=self.use_fp16, level=self.amp_level):
            logits_list = self.model(images)
            terms = compute_losses(logits_list, labels, self.losses)
            loss = paddle.add_n(terms) if len(terms) > 1 else terms[0]
        values = [float(t) for t in terms]
        finite = bool(np.isfinite(values).all())
        if self._agree([not finite])[0]:
            self._non_finite(it, values, finite)
            self.optimizer.clear_grad()
            for tensor, value in before or ():
                tensor.set_value(value)
        else:
            self.skipped = 0
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.clear_grad()
        lr_sched = self.optimizer._learning_rate
        if isinstance(lr_sched, paddle.optimizer.lr.LRScheduler):
            lr_sched.step()
        return values

    def _non_finite(self, it, values, finite):
        message = 'non-finite loss at iter {}: terms {}'.format(
            it, ', '.join('{:.4g}'.format(v) for v in values))
        if finite:  # finite here, not on another rank
            message = ('non-finite loss at iter {} on another process (here: terms {})'
                       .format(it, ', '.join('{:.4g}'.format(v) for v in values)))
        self.skipped += 1
        if self.nan_policy == 'skip' and self.skipped < MAX_SKIPPED_STEPS:
            logger.warning(message + '; step skipped (--nan_policy skip)')
            return
        if self.nan_policy == 'skip':
            message += '; {} in a row'.format(self.skipped)
        last = find_latest_checkpoint(self.save_dir)
        raise NonFiniteLossError(message + '; stopped. Last good checkpoint: {}'
                                 .format(last or 'none'))

    def _save_now(self, it):
        """Save ``iter_<it>`` (rank 0) unless it is already on disk; return
        the checkpoint holding iteration ``it`` (None on other ranks)."""
        if self.rank != 0:
            return None
        if self.last_saved[0] != it:
            path = os.path.join(self.save_dir, 'iter_{}'.format(it))
            save_checkpoint(self._states(), path, meta=self._meta(it))
            prune_checkpoints(self.save_dir, self.keep_checkpoint_max)
            self.last_saved = (it, path)
            logger.info('Saved {}'.format(path))
        return self.last_saved[1]

    def _interrupted(self, it, signum):
        raise TrainingInterrupted(signum, it, self._save_now(it) if it > 0 else None)

    def _data_error(self, it, message, load_traceback=None):
        """A sample of iteration ``it`` could not be loaded (here or on
        another rank): keep the progress made so far, then stop."""
        done = it - 1
        saved = self._save_now(done) if done > 0 else None
        where = ('training stopped at iter {}; checkpoint {} holds iter {}: fix the data '
                 'and resume with --resume_model auto'.format(it, saved, done)
                 if saved else 'training stopped at iter {}'.format(it))
        if message is None:
            message = 'another process could not load its batch (see its log)'
        error = DatasetError('{}; {}'.format(message, where))
        error.worker_traceback = load_traceback
        raise error

    def log(self, it, meter):
        if self.rank != 0:
            return
        avg = meter.averages()
        lr = self.optimizer.get_lr()
        eta = _format_eta((self.iters - it) * avg['batch_cost'])
        terms = ', '.join('{:.4f}'.format(v) for v in avg['terms'])
        logger.info(
            '[TRAIN] iter: {}/{}, loss: {:.4f} ({}), lr: {:.6f}, batch_cost: '
            '{:.4f}, reader_cost: {:.5f}, ips: {:.4f} samples/sec | ETA {}'.format(
                it, self.iters, avg['loss'], terms, lr, avg['batch_cost'],
                avg['reader_cost'], avg['ips'], eta))
        if self.vdl is not None:
            self.vdl.add_scalar('Train/loss', avg['loss'], it)
            for i, value in enumerate(avg['terms']):
                self.vdl.add_scalar('Train/loss_{}'.format(i), value, it)
            self.vdl.add_scalar('Train/lr', lr, it)
            self.vdl.add_scalar('Train/batch_cost', avg['batch_cost'], it)
            self.vdl.add_scalar('Train/reader_cost', avg['reader_cost'], it)

    def evaluate_and_checkpoint(self, it):
        """Evaluate if asked and due (keep ``best_model``), then save
        ``iter_<it>`` if due.

        A stop signal during the evaluation of a single process abandons it
        (between two images); several processes finish it together.
        """
        result = None
        if self.do_eval and (it % self.eval_interval == 0 or it == self.iters):
            single = self.nranks == 1
            try:
                if single:
                    self.signals.check()
                result = evaluate(self.net, self.val_dataset, num_workers=self.num_workers,
                                  on_prediction=self.signals.check if single else None,
                                  **self.eval_kwargs)
            except Exception as exc:
                # a signal to the whole process group also ends the
                # evaluation's DataLoader workers, which paddle reports by
                # raising in this process
                if self.signals.signum is None:
                    raise
                if not isinstance(exc, _EvalAborted):
                    logger.warning('Evaluation at iter {} failed after {}: {}'.format(
                        it, signal.Signals(self.signals.signum).name,
                        str(exc).strip().splitlines()[0]))
                logger.warning('Evaluation at iter {} abandoned: stopping'.format(it))
            self.model.train()
        if self.rank != 0:
            return
        if result is not None:
            self._record_eval(result, it)
        if it % self.save_interval == 0 or it == self.iters:
            self._save_now(it)

    def _record_eval(self, result, it):
        if result['miou'] > self.best['miou']:
            self.best = {'miou': result['miou'], 'iter': it}
            save_checkpoint({'model.pdparams': self.net.state_dict()},
                            os.path.join(self.save_dir, 'best_model'),
                            meta={'iter': it, 'miou': result['miou']})
        logger.info('[EVAL] The model with the best validation mIoU ({:.4f}) '
                    'was saved at iter {}.'.format(self.best['miou'],
                                                    self.best['iter']))
        if self.vdl is not None:
            self.vdl.add_scalar('Evaluate/mIoU', result['miou'], it)
            self.vdl.add_scalar('Evaluate/Acc', result['acc'], it)
            self.vdl.add_scalar('Evaluate/Kappa', result['kappa'], it)
            self._vdl_predictions(it)

    def _vdl_predictions(self, it, count=3):
        """Overlays of the first ``count`` val predictions, as VisualDL images."""
        palette = get_palette(self.val_dataset.num_classes)
        self.net.eval()
        with paddle.no_grad():
            for i in range(min(count, len(self.val_dataset))):
                item = self.val_dataset[i]
                logits = inference(self.net, paddle.to_tensor(item['img'][None]),
                                   item.get('trans_info'))
                pred = paddle.argmax(logits, axis=1)[0].numpy()
                image = cv2.imread(item['img_path'], cv2.IMREAD_COLOR)
                if image is None or image.shape[:2] != pred.shape:
                    continue
                self.vdl.add_image('Evaluate/prediction_{}'.format(i),
                                   overlay(image, pred, palette)[:, :, ::-1], it)

    def _states(self):
        states = {'model.pdparams': self.net.state_dict(),
                  'model.pdopt': optimizer_state(self.optimizer, self.net)}
        if self.use_fp16:
            states['scaler.pdstate'] = self.scaler.state_dict()
        return states

    def _meta(self, it):
        return {'iter': it, 'seed': self.seed, 'best': self.best,
                'iters': self.iters, 'batch_size': self.batch_size,
                'nranks': self.nranks}


class _Meter:
    """Running averages over the last ``window`` iterations."""

    def __init__(self, window):
        self.items = deque(maxlen=window)

    def update(self, terms, reader_cost, batch_cost, samples):
        self.items.append((terms, reader_cost, batch_cost, samples))

    def averages(self):
        terms = np.mean([t for t, _, _, _ in self.items], axis=0)
        batch_cost = float(np.mean([b for _, _, b, _ in self.items]))
        samples = float(np.mean([s for _, _, _, s in self.items]))
        return {'terms': terms.tolist(), 'loss': float(terms.sum()),
                'reader_cost': float(np.mean([r for _, r, _, _ in self.items])),
                'batch_cost': batch_cost,
                'ips': samples / batch_cost if batch_cost > 0 else 0.0}


def _check_save_dir(save_dir):
    """Fail now, not at the first checkpoint, when ``save_dir`` cannot be written."""
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError('--save_dir {}: cannot create it: {}'.format(save_dir, exc)) from exc
    if not os.access(save_dir, os.W_OK | os.X_OK):
        raise ConfigError('--save_dir {}: no permission to write in it'.format(save_dir))


def _forward_state(model):
    """``(tensor, copy)`` of what a training forward pass changes: the
    non-trainable parameters (BatchNorm's running mean and variance) and
    the buffers."""
    tensors = [p for p in model.parameters() if not p.trainable]
    tensors += list(model.buffers())
    return [(t, t.clone()) for t in tensors]


def _endless(loader):
    """The loader's batches, epoch after epoch; closing it shuts the current
    epoch's loader iterator (and its worker processes) down."""
    while True:
        batches = iter(loader)
        try:
            yield from batches
        finally:
            shutdown = getattr(batches, '_try_shutdown_all', None)
            if shutdown is not None:
                shutdown()


def _format_eta(seconds):
    seconds = int(seconds)
    return '{:d}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60,
                                       seconds % 60)


def train(model, train_dataset, losses, optimizer, iters, batch_size,
          val_dataset=None, save_dir='output', save_interval=1000, log_iters=10,
          num_workers=0, use_vdl=False, keep_checkpoint_max=5, do_eval=False,
          resume_model=None, precision='fp32', amp_level='O1', seed=None,
          nan_policy='stop', eval_kwargs=None, eval_interval=None,
          stall_timeout=1800):
    """Train ``model`` for ``iters`` iterations (PaddleSeg's ``core.train``).

    Args:
        model (nn.Layer): The model; its training outputs pair with ``losses``.
        train_dataset (Dataset): Items are dicts with ``img`` ``[3, H, W]``
            float32 and ``label`` ``[H, W]`` integer.
        losses (dict): ``{'types': [...], 'coef': [...]}`` (config ``loss``).
        optimizer (paddle.optimizer.Optimizer): With its lr scheduler.
        iters (int): Total iterations (including those before a resume).
        batch_size (int): Per process.
        val_dataset (Dataset, optional): Evaluated when ``do_eval``. Default: None.
        save_dir (str, optional): Output folder. Default: 'output'.
        save_interval (int, optional): Checkpoint period. Default: 1000.
        log_iters (int, optional): Logging period. Default: 10.
        num_workers (int, optional): Data loader workers. Default: 0.
        use_vdl (bool, optional): Write VisualDL scalars to ``save_dir/vdl``.
            Default: False.
        keep_checkpoint_max (int, optional): ``iter_N`` folders kept. Default: 5.
        do_eval (bool, optional): Evaluate at each checkpoint and keep
            ``best_model``. Default: False.
        resume_model (str, optional): A checkpoint folder, or ``'auto'`` for
            the newest complete one in ``save_dir``. Default: None.
        precision (str, optional): 'fp32' or 'fp16' (GPU). Default: 'fp32'.
        amp_level (str, optional): 'O1' or 'O2' with fp16. Default: 'O1'.
        seed (int, optional): Seed of every random choice; random if None
            (and recorded in the checkpoints). Default: None.
        nan_policy (str, optional): 'stop' or 'skip' a non-finite loss. Default: 'stop'.
        eval_kwargs (dict, optional): Passed to :func:`paddleseg.core.evaluate`.
        eval_interval (int, optional): Evaluation period with ``do_eval``.
            Default: ``save_interval``.
        stall_timeout (float, optional): Seconds a training step may last
            before the watchdog ends the process (see the module doc); 0 or
            None: never. Default: 1800.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM, after saving a checkpoint.
        DatasetError: a training sample cannot be loaded (after saving the
            progress made).
        NonFiniteLossError: see ``nan_policy``.

    Returns:
        dict: ``{'miou': best mIoU or -1, 'iter': its iteration or -1}``.
    """
    if precision == 'fp16' and not paddle.get_device().startswith('gpu'):
        logger.warning('fp16 needs a GPU; training in fp32 on {}'.format(
            paddle.get_device()))
        precision = 'fp32'
    if not paddle.get_device().startswith('gpu'):
        tune_host_allocator()  # SEG_MMAP_THRESHOLD, else 4 MiB
        idle_threads_sleep()
    init_distributed()
    seed = _shared_seed(seed)
    if paddle.distributed.get_rank() == 0:
        _check_save_dir(save_dir)
    if nan_policy not in ('stop', 'skip'):
        raise ConfigError("nan_policy must be 'stop' or 'skip', got {!r}".format(nan_policy))
    for name, value in (('save_interval', save_interval), ('log_iters', log_iters),
                        ('eval_interval', eval_interval or 1),
                        ('keep_checkpoint_max', keep_checkpoint_max)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError('--{} must be a positive integer, got {!r}'.format(name, value))
    trainer = _Trainer(model, train_dataset, losses, optimizer, iters,
                       batch_size, val_dataset, save_dir, save_interval,
                       log_iters, num_workers, use_vdl, keep_checkpoint_max,
                       do_eval, precision, amp_level, seed, nan_policy,
                       eval_kwargs, eval_interval, stall_timeout)
    if resume_model == 'auto':
        resume_model = find_latest_checkpoint(save_dir)
        if resume_model is None:
            logger.info('No checkpoint in {} to resume from; starting at iter 0'
                        .format(save_dir))
    if resume_model:
        trainer.resume(resume_model)
    try:
        return trainer.run()
    finally:
        if trainer.vdl is not None:
            trainer.vdl.close()
