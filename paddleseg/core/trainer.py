"""The training loop: setup (resume, AMP, DataParallel), steps, hook calls.

Randomness is a function of ``(seed, iteration)``: the batch order and each
sample's augmentation come from :class:`ResumableBatchSampler`, and paddle's
generator (PointRend's point sampling, dropout) is re-seeded at every
iteration (:func:`paddleseg.utils.dist.derive_seed`), so a run resumed from
``iter_N`` continues exactly as the uninterrupted run would have.

Every rank takes the same decision at the same iteration: the stop flags
(a signal, a loader that failed, a sample that could not be loaded, a
non-finite loss) are maxed over the ranks when there are several processes
(:func:`paddleseg.utils.dist.max_over_ranks`); a rank whose loader raised
joins that all-reduce too, so that all save and stop together. What happens around the
steps (logging, evaluation, checkpoints, the NaN policy) is in
:mod:`paddleseg.core.hooks`; what changes while the run goes is its
:class:`~paddleseg.core.state.TrainState`; the checkpoints are the
:class:`~paddleseg.core.checkpointer.Checkpointer`'s.
"""

import contextlib
import signal
import time

import paddle

from paddleseg.core import amp
from paddleseg.core.checkpointer import Checkpointer
from paddleseg.core.hooks import NanPolicyHook, default_hooks
from paddleseg.core.loader import (build_train_loader, endless_batches, loader_failure,
                                   to_device_batch)
from paddleseg.core.optim_state import lr_scheduler_of
from paddleseg.core.options import TrainOptions  # noqa: F401
from paddleseg.core.sampler import LOAD_ERROR, LOAD_TRACEBACK
from paddleseg.core.state import LossTerms, TrainState
from paddleseg.core.stop import LoaderFailed, StopSignals, TrainingInterrupted
from paddleseg.errors import ConfigError, DatasetError, first_line
from paddleseg.utils import dist, logger
from paddleseg.utils.env import local_process_count


def compute_losses(logits_list, label, losses):
    """``coef[i] * types[i](logits_list[i], label)`` for each model output,
    ``losses`` being ``{'types': [loss layers], 'coef': [floats]}``."""
    if len(losses['types']) != len(logits_list):
        raise ConfigError('loss.types has {} losses for the model\'s {} training '
                          'outputs'.format(len(losses['types']), len(logits_list)))
    return [coef * loss(logits, label) for logits, loss, coef in
            zip(logits_list, losses['types'], losses['coef'])]


LOADER_FAILURE = 'loader_failure'
"""The key of the batch :meth:`Trainer._next_batch` returns when the loader
raised (the exception)."""


class Trainer:
    """One training run.

    Args:
        model, train_dataset, losses, optimizer: as
            :func:`paddleseg.core.train` takes them.
        opts (TrainOptions): How to train.
        val_dataset (Dataset, optional): For the evaluation hook.
        watchdog (optional): An object whose ``guard(what)`` context manager
            times each step, e.g. :class:`paddleseg.core.stop.StallWatchdog`;
            it stays the caller's.
        hooks (list, optional): The hooks to run after the NaN policy
            (:class:`~paddleseg.core.hooks.NanPolicyHook`, always first).
            Default: :func:`~paddleseg.core.hooks.default_hooks`; to add
            yours to them pass ``default_hooks(opts, val_dataset, extra=[...])``
            (what ``paddleseg.core.train(hooks=...)`` does).
        lr_scheduler (paddle.optimizer.lr.LRScheduler, optional): The
            optimizer's scheduler, stepped once per iteration. Default: the
            one the optimizer was built with
            (:func:`paddleseg.core.optim_state.lr_scheduler_of`).

    ``state`` is the run's :class:`~paddleseg.core.state.TrainState`;
    ``checkpointer`` its :class:`~paddleseg.core.checkpointer.Checkpointer`.
    """

    def __init__(self, model, train_dataset, losses, optimizer, opts,
                 val_dataset=None, watchdog=None, hooks=None, *, lr_scheduler=None):
        self.net, self.optimizer, self.opts = model, optimizer, opts
        self.lr_scheduler = lr_scheduler if lr_scheduler is not None \
            else lr_scheduler_of(optimizer)
        self.train_dataset, self.losses = train_dataset, losses
        self.watchdog = watchdog
        self.normalize = None  # the loader's deferred Normalize (set by _loader)
        self.precision = opts.precision
        self.state = TrainState(rank=dist.rank(), nranks=dist.world_size(),
                                seed=dist.shared_seed(opts.seed), signals=StopSignals())
        self.nan_policy = NanPolicyHook(opts.nan_policy)
        self.hooks = [self.nan_policy] + list(
            default_hooks(opts, val_dataset) if hooks is None else hooks)
        for hook in self.hooks:
            hook.trainer = self
        self.checkpointer = Checkpointer(self)
        # the weights first: DataParallel broadcasts rank 0's when it is built
        ckpt = dist.resolve_resume(opts.save_dir, opts.resume_model)
        scaler_state = self.checkpointer.resume(ckpt) if ckpt else None
        self.prepare_amp(scaler_state)
        self.model = self._wrap(self.net)

    # the run's state under the names of earlier versions (read-only)
    it = property(lambda self: self.state.iteration)
    start_iter = property(lambda self: self.state.start_iter)
    seed = property(lambda self: self.state.seed)
    rank = property(lambda self: self.state.rank)
    nranks = property(lambda self: self.state.nranks)
    step_info = property(lambda self: self.state.step_info)

    # -- setup -------------------------------------------------------------
    def prepare_amp(self, scaler_state=None):
        """Make model and optimizer ready for the run's precision
        (:func:`paddleseg.core.amp.prepare`: fp16 weights with fp32 master
        weights under O2, nothing otherwise), restore the resumed
        checkpoint's optimizer state into it (whatever precision saved it:
        :meth:`~paddleseg.core.checkpointer.Checkpointer.restore_optimizer`)
        and build the loss scaler (fp16), restored from ``scaler_state`` when
        resuming. Runs after the checkpoint's fp32 weights are loaded and
        before DataParallel."""
        self.net, self.optimizer = amp.prepare(self.net, self.optimizer, self.precision,
                                               self.opts.amp_level)
        self.checkpointer.restore_optimizer()
        self.scaler = amp.make_grad_scaler(self.precision)
        amp.load_scaler_state(self.scaler, scaler_state)

    def _wrap(self, model):
        if self.state.nranks == 1:
            return model
        if dist.device_kind() == 'gpu':
            model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return paddle.DataParallel(model)

    def _loader(self):
        """The training DataLoader (:func:`paddleseg.core.loader.build_train_loader`:
        compact uint8 batches when the dataset allows, persistent workers,
        the shared-memory check); its deferred Normalize goes to
        ``self.normalize`` for :func:`~paddleseg.core.loader.to_device_batch`."""
        loader, self.normalize = build_train_loader(
            self.train_dataset, self.opts.batch_size, self.opts.num_workers, self.state,
            processes=min(local_process_count(), self.state.nranks),
            agree=dist.max_over_ranks)
        return loader

    # -- the loop ----------------------------------------------------------
    def run(self):
        """Train to ``opts.iters``; return ``{'miou', 'iter'}`` of the best model."""
        with self.state.signals:
            batches = endless_batches(self._loader())
            try:
                self._call('before_train')
                self._loop(batches)
            except LoaderFailed as exc:  # every rank saved; a dead worker: the shm fix
                failure = loader_failure(exc.__cause__) if exc.__cause__ else None
                if failure is None:
                    raise
                raise ConfigError('{}{}'.format(failure, exc.where)) from exc.__cause__
            except (RuntimeError, SystemError) as exc:
                failure = loader_failure(exc)  # a dead loader worker: the shm fix
                if failure is None:
                    raise
                raise failure from exc
            finally:
                batches.close()  # stop the loader's workers on every way out
                self._call('after_train')
        return self.state.best

    def _call(self, event):
        for hook in self.hooks:
            getattr(hook, event)()

    def _loop(self, batches):
        state = self.state
        self.model.train()
        tic = time.time()
        while state.iteration < self.opts.iters:
            state.iteration += 1
            self._call('before_step')
            guard = self.watchdog.guard('iter {}'.format(state.iteration)) if self.watchdog \
                else contextlib.nullcontext()
            with guard:
                batch = self._next_batch(batches)
                reader_cost = time.time() - tic
                self._agree(batch)  # a failed fetch or sample stops every rank here
                batch = to_device_batch(batch, self.normalize)
                state.step_info = self.step(batch)
            state.step_info.update(reader_cost=reader_cost, batch_cost=time.time() - tic,
                                   samples=batch['img'].shape[0])
            self._call('after_step')
            # one process acts on its own flag at once; several on the one
            # they agreed on (before this step, or during its evaluation)
            stop = state.signals.signum if state.nranks == 1 else state.signals.agreed
            if stop:
                self._interrupted(state.iteration, stop)
            tic = time.time()

    def _next_batch(self, batches):
        """The next batch, or ``{LOADER_FAILURE: exception}`` when the loader
        raised (e.g. its workers died: a signal to the whole process group
        ends them too): this rank still joins :meth:`_agree`. A worker's
        death is learnt of here only (paddle's SIGCHLD handler, installed
        with the first workers, is muted:
        :meth:`~paddleseg.core.stop.StopSignals.mute_child_exits`)."""
        try:
            batch = next(batches)
        except Exception as exc:
            return {LOADER_FAILURE: exc}
        self.state.signals.mute_child_exits()
        return batch

    def _agree(self, batch):
        """What every rank saw before this step, maxed over the ranks in one
        all-reduce (every rank calls it, also one whose loader failed): a
        loader that failed, a sample that could not be loaded, a stop
        signal; every rank then acts on the same flags."""
        signals = self.state.signals
        failure, load_error = batch.get(LOADER_FAILURE), batch.get(LOAD_ERROR)
        lost, failed, stop = dist.max_over_ranks(
            [failure is not None, load_error is not None, signals.signum or 0])
        signals.agree(stop)
        if lost:
            self._loader_failed(failure, signals.agreed)
        if failed:
            self._data_error(load_error, batch.get(LOAD_TRACEBACK))

    def step(self, batch):
        """One optimisation step: forward, backward, then the update unless
        it is skipped, the same on every rank
        (:meth:`~paddleseg.core.hooks.NanPolicyHook.judge`): in fp16 the
        loss scaler skips a step whose gradients are not finite (and lowers
        its scale); otherwise a non-finite loss on any rank skips it. The lr
        scheduler steps either way. The loss terms stay on the device; the
        step waits for it once, for the finiteness flag.
        Returns ``{'terms': LossTerms, 'skipped': bool, 'finite_here': bool}``."""
        state = self.state
        paddle.seed(dist.derive_seed(state.seed, state.iteration, state.rank, 7))
        labels = batch['label'].astype('int64')
        if labels.ndim == 4:
            labels = labels.squeeze(1)
        self.nan_policy.before_forward(self.net, self.scaler)
        with amp.autocast(self.precision, self.opts.amp_level):
            terms = compute_losses(self.model(batch['img']), labels, self.losses)
            loss = paddle.add_n(terms) if len(terms) > 1 else terms[0]
        self.scaler.scale(loss).backward()
        if self.scaler.is_enable():  # the scaler skips non-finite gradients
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped, finite = self.nan_policy.judge(loss, self.scaler)
        else:
            skipped, finite = self.nan_policy.judge(loss)
            if not skipped:
                self.optimizer.step()
        self.optimizer.clear_grad()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        values = paddle.concat([t.detach().astype('float32').reshape([1]) for t in terms])
        return {'terms': LossTerms(values), 'skipped': skipped, 'finite_here': finite}

    def _interrupted(self, it, signum):
        raise TrainingInterrupted(signum, it, self.checkpointer.save(it) if it > 0 else None)

    def _loader_failed(self, failure, signum):
        """The loader of this rank (``failure``, its exception) or of another
        one (``failure`` None) failed before this iteration's step: every
        rank keeps the last finished iteration and stops, as after a stop
        signal if one came (on any rank: e.g. the signal that also ended
        the workers), else with :class:`LoaderFailed`."""
        done = self.state.iteration - 1
        if signum:
            if failure is not None:
                logger.warning('the data loader failed after {}: {}'.format(
                    signal.Signals(signum).name, first_line(failure, with_type=True)))
            self._interrupted(done, signum)
        saved = self.checkpointer.save(done) if done > 0 else None
        what = ('the data loader failed: {}'.format(first_line(failure, with_type=True))
                if failure is not None else
                'the data loader of another process failed (see its log)')
        raise LoaderFailed('training stopped at iter {}: {}'.format(
            self.state.iteration, what), done, saved) from failure

    def _data_error(self, message, load_traceback=None):
        """A sample of this iteration could not be loaded (here or on
        another rank): keep the progress made so far, then stop."""
        it = self.state.iteration
        done = it - 1
        saved = self.checkpointer.save(done) if done > 0 else None
        where = ('training stopped at iter {}; checkpoint {} holds iter {}: fix the data '
                 'and resume with --resume_model auto'.format(it, saved, done)
                 if saved else 'training stopped at iter {}'.format(it))
        if message is None:
            message = 'another process could not load its batch (see its log)'
        error = DatasetError('{}; {}'.format(message, where))
        error.worker_traceback = load_traceback
        raise error
