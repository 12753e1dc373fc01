"""The training loop: setup (resume, AMP, DataParallel), steps, hooks.

Randomness is a function of ``(seed, iteration)``: the batch order and each
sample's augmentation come from :class:`ResumableBatchSampler`, and paddle's
generator (PointRend's point sampling, dropout) is re-seeded at every
iteration, so a run resumed from ``iter_N`` continues exactly as the
uninterrupted run would have.

Every rank takes the same decision at the same iteration: the stop flags
(a signal, a sample that could not be loaded, a non-finite loss) are
all-reduced when there are several processes. What happens around the
steps (logging, evaluation, checkpoints, the NaN policy) is in
:mod:`paddleseg.core.hooks`.
"""

import contextlib
import os
import time

import numpy as np
import paddle

from paddleseg.core import amp
from paddleseg.core.hooks import CheckpointHook, default_hooks
from paddleseg.core.optim_state import load_optimizer_state
from paddleseg.core.options import TrainOptions  # noqa: F401
from paddleseg.core.sampler import (LOAD_ERROR, LOAD_TRACEBACK, ResumableBatchSampler,
                                    SeededDataset, collate_batch, worker_init)
from paddleseg.core.stop import StopSignals, TrainingInterrupted
from paddleseg.errors import CheckpointError, ConfigError, DatasetError
from paddleseg.utils import dist, logger
from paddleseg.utils.checkpoint import load_checkpoint


def compute_losses(logits_list, label, losses):
    """``coef[i] * types[i](logits_list[i], label)`` for each model output,
    ``losses`` being ``{'types': [loss layers], 'coef': [floats]}``."""
    if len(losses['types']) != len(logits_list):
        raise ConfigError('loss.types has {} losses for the model\'s {} training '
                          'outputs'.format(len(losses['types']), len(logits_list)))
    return [coef * loss(logits, label) for logits, loss, coef in
            zip(logits_list, losses['types'], losses['coef'])]


def _resolve_resume(save_dir, resume_model):
    """The checkpoint folder to resume from, or None: ``resume_model`` itself,
    or with ``'auto'`` the newest complete one in ``save_dir``; with several
    processes rank 0 decides and every rank checks it has that folder
    (:func:`paddleseg.utils.dist.resolve_resume`)."""
    return dist.resolve_resume(save_dir, resume_model)


def _step_seed(seed, it, rank):
    return int(np.random.default_rng([seed, it, rank, 7]).integers(2 ** 31))


def _forward_state(model):
    """``(tensor, copy)`` of what a training forward pass changes: the
    non-trainable parameters (BatchNorm's statistics) and the buffers."""
    tensors = [p for p in model.parameters() if not p.trainable] + list(model.buffers())
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


class Trainer:
    """One training run. ``watchdog`` (optional) is an object whose
    ``guard(what)`` context manager times each step, e.g.
    :class:`paddleseg.core.stop.StallWatchdog`; it stays the caller's."""

    def __init__(self, model, train_dataset, losses, optimizer, opts,
                 val_dataset=None, watchdog=None, hooks=None):
        self.net, self.optimizer, self.opts = model, optimizer, opts
        self.train_dataset, self.losses = train_dataset, losses
        self.seed = dist.shared_seed(opts.seed)
        self.watchdog = watchdog
        self.rank = paddle.distributed.get_rank()
        self.nranks = paddle.distributed.get_world_size()
        self.precision = opts.precision
        self.use_fp16 = self.precision == 'fp16'
        self.start_iter = self.it = 0
        self.last_saved = (None, None)  # (iteration, folder) of the newest checkpoint
        self.best = {'miou': -1.0, 'iter': -1}
        self.signals = StopSignals()
        self.step_info = {}
        self.vdl = None
        self.hooks = default_hooks(opts, val_dataset) if hooks is None else hooks
        for hook in self.hooks:
            hook.trainer = self
        self.checkpointer = next((h for h in self.hooks if isinstance(h, CheckpointHook)), None)
        # the weights first: DataParallel broadcasts rank 0's when it is built
        ckpt = _resolve_resume(opts.save_dir, opts.resume_model)
        scaler_state = self.resume(ckpt) if ckpt else None
        self.prepare_amp(scaler_state)
        self.model = self._wrap(self.net)

    # -- setup -------------------------------------------------------------
    def resume(self, ckpt_dir):
        """Restore model, optimizer (with its lr schedule), iteration, seed
        and best result from a checkpoint folder; return the GradScaler's
        state (None if it has none).

        A folder PaddleSeg 2.8 wrote (``iter_<N>/`` with only
        ``model.pdparams`` and ``model.pdopt``) resumes at iteration N + 1:
        its optimizer state is matched to the model's parameters by order
        (:func:`paddleseg.core.optim_state.match_by_order`); its random
        state is unknown, so the run is not bit-exact (one warning line)."""
        states, meta = load_checkpoint(ckpt_dir)
        if 'model.pdparams' not in states or 'model.pdopt' not in states:
            raise CheckpointError('{} lacks model.pdparams or model.pdopt'.format(ckpt_dir))
        self.net.set_state_dict(states['model.pdparams'])
        load_optimizer_state(self.optimizer, self.net, states['model.pdopt'],
                             names=meta.get('optimizer_params'),
                             source=os.path.join(ckpt_dir, 'model.pdopt'))
        self.start_iter = self.it = int(meta['iter'])
        self.last_saved = (self.start_iter, ckpt_dir)
        self.seed = int(meta.get('seed', self.seed))
        self.best = meta.get('best', self.best)
        if meta.get('format') == 'paddleseg':
            logger.warning('{} is a PaddleSeg checkpoint: its random state is unknown, so '
                           'this run is not bit-exact with one that never stopped'.format(
                               ckpt_dir))
        logger.info('Resumed from {} at iter {}'.format(ckpt_dir, self.start_iter))
        return states.get('scaler.pdstate')

    def prepare_amp(self, scaler_state=None):
        """Make model and optimizer ready for the run's precision
        (:func:`paddleseg.core.amp.prepare`: fp16 weights with fp32 master
        weights under O2, nothing otherwise) and build the loss scaler
        (fp16), restored from ``scaler_state`` when resuming. Runs after the
        checkpoint's fp32 weights are loaded and before DataParallel."""
        self.net, self.optimizer = amp.prepare(self.net, self.optimizer, self.precision,
                                               self.opts.amp_level)
        self.scaler = amp.make_grad_scaler(self.precision)
        amp.load_scaler_state(self.scaler, scaler_state)

    def _wrap(self, model):
        if self.nranks == 1:
            return model
        if dist.device_kind() == 'gpu':
            model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return paddle.DataParallel(model)

    def _loader(self):
        sampler = ResumableBatchSampler(
            len(self.train_dataset), self.opts.batch_size, self.seed, self.rank,
            self.nranks, shuffle=True, start_iter=self.start_iter)
        return paddle.io.DataLoader(
            SeededDataset(self.train_dataset), batch_sampler=sampler,
            num_workers=self.opts.num_workers, return_list=True,
            collate_fn=collate_batch, worker_init_fn=worker_init,
            persistent_workers=False)

    def _agree(self, values):
        """Each value (a non-negative int or bool) maxed over the ranks (one
        all-reduce of a tiny tensor); a single process keeps its own."""
        values = [int(v) for v in values]
        if self.nranks == 1:
            return values
        t = paddle.to_tensor(values, dtype='int32')
        paddle.distributed.all_reduce(t, op=paddle.distributed.ReduceOp.MAX)
        return [int(v) for v in t.numpy().tolist()]

    # -- the loop ----------------------------------------------------------
    def run(self):
        """Train to ``opts.iters``; return ``{'miou', 'iter'}`` of the best model."""
        if self.opts.use_vdl and self.rank == 0:
            from visualdl import LogWriter
            self.vdl = LogWriter(os.path.join(self.opts.save_dir, 'vdl'))
        try:
            with self.signals:
                batches = _endless(self._loader())
                try:
                    self._call('before_train')
                    self._loop(batches)
                finally:
                    batches.close()  # stop the loader's workers on every way out
                    self._call('after_train')
            return self.best
        finally:
            if self.vdl is not None:
                self.vdl.close()

    def _call(self, event):
        for hook in self.hooks:
            getattr(hook, event)()

    def _loop(self, batches):
        self.model.train()
        tic = time.time()
        while self.it < self.opts.iters:
            self.it += 1
            self._call('before_step')
            guard = self.watchdog.guard('iter {}'.format(self.it)) if self.watchdog \
                else contextlib.nullcontext()
            with guard:
                batch = self._next_batch(batches)
                reader_cost = time.time() - tic
                load_error = batch.get(LOAD_ERROR)
                failed, stop = self._agree([load_error is not None, self.signals.signum or 0])
                if failed:
                    self._data_error(load_error, batch.get(LOAD_TRACEBACK))
                self.step_info = self.step(batch)
            self.step_info.update(reader_cost=reader_cost, batch_cost=time.time() - tic,
                                  samples=batch['img'].shape[0])
            self._call('after_step')
            # one process acts on its own flag at once; several wait until
            # they agreed on it (at the start of the next step at the latest)
            if self.nranks == 1:
                stop = self.signals.signum
            if stop:
                self._interrupted(self.it, stop)
            tic = time.time()

    def _next_batch(self, batches):
        try:
            return next(batches)
        except Exception:
            # a signal to the whole process group can end the loader's
            # workers before this process acts on it
            if self.signals.signum is not None and self.nranks == 1:
                self._interrupted(self.it - 1, self.signals.signum)
            raise

    def step(self, batch):
        """One optimisation step. A non-finite loss (on any rank) is not
        applied, and leaves no trace with ``nan_policy='skip'``; the hooks
        decide what follows. Returns ``{'terms': floats, 'skipped': bool,
        'finite_here': bool}``."""
        paddle.seed(_step_seed(self.seed, self.it, self.rank))
        labels = batch['label'].astype('int64')
        if labels.ndim == 4:
            labels = labels.squeeze(1)
        # the forward pass updates BatchNorm's running statistics, which a
        # skipped step must put back (they may be NaN now)
        before = _forward_state(self.net) if self.opts.nan_policy == 'skip' else None
        with amp.autocast(self.precision, self.opts.amp_level):
            terms = compute_losses(self.model(batch['img']), labels, self.losses)
            loss = paddle.add_n(terms) if len(terms) > 1 else terms[0]
        values = [float(t) for t in terms]
        finite = bool(np.isfinite(values).all())
        skipped = bool(self._agree([not finite])[0])
        if skipped:
            self.optimizer.clear_grad()
            for tensor, value in before or ():
                tensor.set_value(value)
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.clear_grad()
        lr_sched = self.optimizer._learning_rate
        if isinstance(lr_sched, paddle.optimizer.lr.LRScheduler):
            lr_sched.step()
        return {'terms': values, 'skipped': skipped, 'finite_here': finite}

    def _save_now(self, it):
        return self.checkpointer.save_now(it) if self.checkpointer else None

    def _interrupted(self, it, signum):
        raise TrainingInterrupted(signum, it, self._save_now(it) if it > 0 else None)

    def _data_error(self, message, load_traceback=None):
        """A sample of this iteration could not be loaded (here or on
        another rank): keep the progress made so far, then stop."""
        done = self.it - 1
        saved = self._save_now(done) if done > 0 else None
        where = ('training stopped at iter {}; checkpoint {} holds iter {}: fix the data '
                 'and resume with --resume_model auto'.format(self.it, saved, done)
                 if saved else 'training stopped at iter {}'.format(self.it))
        if message is None:
            message = 'another process could not load its batch (see its log)'
        error = DatasetError('{}; {}'.format(message, where))
        error.worker_traceback = load_traceback
        raise error
