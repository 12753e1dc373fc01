"""What the training loop does around its steps, one hook per concern.

The contract. A hook subclasses :class:`HookBase` and overrides what it
needs of ``before_train``, ``before_step``, ``after_step`` and
``after_train`` (this one runs however the run ends). The
:class:`~paddleseg.core.trainer.Trainer` running it sets ``hook.trainer``,
through which the hook reaches the run's objects (``net``, the model;
``model``, the same or its DataParallel wrapper; ``optimizer``,
``lr_scheduler``, ``precision``, ``opts``, a
:class:`~paddleseg.core.options.TrainOptions`; ``checkpointer``); what
changes while training runs (the iteration, the step's outputs, the best
result, the stop signal) and what hooks tell each other is in
``hook.state``, a :class:`~paddleseg.core.state.TrainState`. A hook with a
state of its own that must survive a resume defines ``state_dict()`` (a
dict of JSON values, stored in the checkpoint's ``meta.json``) and
``load_state_dict(meta)`` (see :class:`~paddleseg.core.checkpointer.Checkpointer`).

The trainer runs :class:`NanPolicyHook` (the whole NaN policy) first, then
the hooks it is given, in order; :func:`default_hooks` gives logging
(:class:`LogHook`), evaluation (:class:`EvalHook`, which publishes its
result as ``state.storage['eval']``), ``best_model``
(:class:`BestModelHook`), VisualDL (:class:`VisualDLHook`) and the periodic
checkpoint (:class:`CheckpointHook`). ``paddleseg.core.train(hooks=[...])``
adds hooks after those, before the checkpoint (docs/training_hooks.md).
"""

import os
import signal
from collections import deque

import cv2
import numpy as np
import paddle

from paddleseg.core import amp
from paddleseg.core.infer import inference
from paddleseg.core.stop import EvalAborted
from paddleseg.core.val import evaluate_details
from paddleseg.errors import SegError, first_line
from paddleseg.utils import dist, logger
from paddleseg.utils.visualize import get_palette, overlay

MAX_SKIPPED_STEPS = 10
"""With ``nan_policy='skip'``, training stops after this many non-finite
losses in a row."""

MAX_SCALER_SKIPS = 20
"""Under an fp16 loss scaler, training stops (whatever the NaN policy) after
this many steps in a row that the scaler skipped: each halves the loss
scale, and after 20 halvings (1024 -> 2**-10) the scale no longer makes
gradients overflow: the loss itself is not finite."""

EVAL_WORKERS = 2
"""At most this many DataLoader workers for the evaluations during training."""


class NonFiniteLossError(SegError):
    """The loss became NaN or infinite."""


class HookBase:
    """Does nothing; subclasses override what they need (see the module doc).
    ``trainer`` is set by the trainer that runs the hook."""

    trainer = None

    @property
    def state(self):
        """The run's :class:`~paddleseg.core.state.TrainState`."""
        return self.trainer.state

    def before_train(self):
        pass

    def after_train(self):
        """Runs however the run ends (an exception included)."""

    def before_step(self):
        pass

    def after_step(self):
        pass


def due(it, period, iters):
    """Whether a periodic action runs at iteration ``it`` (and always at the last)."""
    return it % period == 0 or it == iters


def save_due(opts, it):
    """Whether the periodic checkpoint ``iter_<it>`` is saved at ``it``
    (``opts``: the run's :class:`~paddleseg.core.options.TrainOptions`)."""
    return due(it, opts.save_interval, opts.iters)


def _forward_state(model):
    """``(tensor, copy)`` of what a training forward pass changes: the
    non-trainable parameters (BatchNorm's statistics) and the buffers."""
    tensors = [p for p in model.parameters() if not p.trainable] + list(model.buffers())
    return [(t, t.clone()) for t in tensors]


class NanPolicyHook(HookBase):
    """The whole policy for a non-finite loss (NaN or inf, on any rank).

    The trainer's step asks it: :meth:`before_forward` keeps what the
    forward pass changes (BatchNorm's statistics) when a skipped step must
    leave no trace; :meth:`judge` tells, the same on every rank, whether the
    step is skipped, and then puts that back. After the step it decides
    what follows.

    fp32 (and any run without an enabled loss scaler): a non-finite loss on
    any rank skips the step and is the policy's event: ``'stop'`` raises
    :class:`NonFiniteLossError` naming the last checkpoint; ``'skip'`` logs
    it and goes on, up to :data:`MAX_SKIPPED_STEPS` in a row.

    fp16 (an enabled ``GradScaler``): a step whose gradients are not finite
    (fp16 overflow) is the scaler's to skip, as in PaddleSeg: it lowers the
    loss scale and the run goes on, whatever the policy; the step leaves no
    trace (BatchNorm's statistics are put back). Only
    :data:`MAX_SCALER_SKIPS` such steps in a row stop the run.
    """

    def __init__(self, policy):
        self.policy = policy
        self.in_a_row = 0
        self.scaler_in_a_row = 0
        self.by_scaler = False
        self._kept = None

    def before_forward(self, net, scaler=None):
        scaling = scaler is not None and scaler.is_enable()
        self._kept = _forward_state(net) if self.policy == 'skip' or scaling else None

    def judge(self, loss, scaler=None):
        """``(skipped, finite_here)`` of a step whose ``loss`` (a scalar
        tensor, still on the device) has been backpropagated; a skipped
        step leaves no trace. A collective: every rank calls it.

        Without an enabled ``scaler`` call it before the optimizer's step
        (skipped: do not step): the loss's finiteness flag is read (the
        step's one wait for the device) and maxed over the ranks. With one,
        call it after ``scaler.step`` and ``scaler.update``: the scaler
        decided (:func:`paddleseg.core.amp.step_skipped`), its verdict is
        maxed over the ranks; the loss is read only when it skipped.
        """
        scaling = scaler is not None and scaler.is_enable()
        if scaling:
            overflow = amp.step_skipped(scaler)
            finite = bool(paddle.isfinite(loss).all()) if overflow else True
            skipped = bool(dist.max_over_ranks([overflow])[0])
        else:
            finite = bool(paddle.isfinite(loss).all())
            skipped = bool(dist.max_over_ranks([not finite])[0])
        self.by_scaler = scaling and skipped
        if skipped:
            for tensor, value in self._kept or ():
                tensor.set_value(value)
        self._kept = None
        return skipped, finite

    def after_step(self):
        state = self.state
        step = state.step_info
        if not step['skipped']:
            self.in_a_row = self.scaler_in_a_row = 0
            return
        if self.by_scaler:
            self._scaler_skipped()
            return
        terms = ', '.join('{:.4g}'.format(v) for v in step['terms'])
        message = 'non-finite loss at iter {}: terms {}'.format(state.iteration, terms)
        if step['finite_here']:
            message = 'non-finite loss at iter {} on another process (here: terms {})'.format(
                state.iteration, terms)
        self.in_a_row += 1
        if self.policy == 'skip' and self.in_a_row < MAX_SKIPPED_STEPS:
            logger.warning(message + '; step skipped (--nan_policy skip)')
            return
        if self.policy == 'skip':
            message += '; {} in a row'.format(self.in_a_row)
        self._stop(message)

    def _scaler_skipped(self):
        state = self.state
        self.scaler_in_a_row += 1
        if self.scaler_in_a_row < MAX_SCALER_SKIPS:
            if state.rank == 0:
                logger.info('fp16: non-finite gradients at iter {}; the loss scaler skipped '
                            'the step and lowered its scale'.format(state.iteration))
            return
        self._stop('the fp16 loss scaler skipped {} steps in a row (iter {}, loss terms {}): '
                   'the loss is not finite'.format(
                       self.scaler_in_a_row, state.iteration,
                       ', '.join('{:.4g}'.format(v) for v in state.step_info['terms'])))

    def _stop(self, message):
        last = self.trainer.checkpointer.latest()
        raise NonFiniteLossError(message + '; stopped. Last good checkpoint: {}'
                                 .format(last or 'none'))


class _Meter:
    """Running averages over the last ``window`` iterations."""

    def __init__(self, window):
        self.items = deque(maxlen=window)

    def update(self, terms, reader_cost, batch_cost, samples):
        self.items.append((terms, reader_cost, batch_cost, samples))

    def averages(self):
        tensors = [getattr(t, 'tensor', None) for t, _, _, _ in self.items]
        if all(t is not None for t in tensors):  # LossTerms: one copy from the device
            terms = paddle.stack(tensors).mean(axis=0).numpy().astype(np.float64)
        else:
            terms = np.mean([np.asarray(t, dtype=np.float64) for t, _, _, _ in self.items],
                            axis=0)
        batch_cost = float(np.mean([b for _, _, b, _ in self.items]))
        samples = float(np.mean([s for _, _, _, s in self.items]))
        return {'terms': terms.tolist(), 'loss': float(terms.sum()),
                'reader_cost': float(np.mean([r for _, r, _, _ in self.items])),
                'batch_cost': batch_cost,
                'ips': samples / batch_cost if batch_cost > 0 else 0.0}


def _format_eta(seconds):
    seconds = int(seconds)
    return '{:d}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60, seconds % 60)


class LogHook(HookBase):
    """The ``[TRAIN]`` line every ``log_iters`` (rank 0); publishes what it
    shows as ``state.storage['train_log']`` (``loss``, ``terms``, ``lr``,
    ``batch_cost``, ``reader_cost``, ``ips``)."""

    def before_train(self):
        self.meter = _Meter(self.trainer.opts.log_iters)

    def after_step(self):
        opts, state = self.trainer.opts, self.state
        step = state.step_info
        self.meter.update(step['terms'], step['reader_cost'], step['batch_cost'],
                          step['samples'])
        if state.rank != 0 or not due(state.iteration, opts.log_iters, opts.iters):
            return
        avg = dict(self.meter.averages(), lr=self.trainer.optimizer.get_lr())
        logger.info(
            '[TRAIN] iter: {}/{}, loss: {:.4f} ({}), lr: {:.6f}, batch_cost: '
            '{:.4f}, reader_cost: {:.5f}, ips: {:.4f} samples/sec | ETA {}'.format(
                state.iteration, opts.iters, avg['loss'],
                ', '.join('{:.4f}'.format(v) for v in avg['terms']), avg['lr'],
                avg['batch_cost'], avg['reader_cost'], avg['ips'],
                _format_eta((opts.iters - state.iteration) * avg['batch_cost'])))
        state.publish('train_log', avg)


class EvalHook(HookBase):
    """Evaluate every ``eval_interval`` iterations (and at the last) in the
    run's precision, on every rank; publish the metrics
    (:func:`paddleseg.core.evaluate_details`' result) as
    ``state.storage['eval']``.

    When the periodic checkpoint is due at the same iteration, it is saved
    first (:func:`save_due`), so that a stop during a long evaluation loses
    nothing; :class:`CheckpointHook` then only brings its ``meta.json`` up
    to date. A stop signal abandons the evaluation: the ranks agree on it
    every few images (``stop_requested``), and after an agreed stop none is
    started.
    """

    def __init__(self, val_dataset):
        self.val_dataset = val_dataset

    def after_step(self):
        t, state = self.trainer, self.state
        if not due(state.iteration, t.opts.eval_interval, t.opts.iters):
            return
        if save_due(t.opts, state.iteration):
            t.checkpointer.save(state.iteration)
        result = self._evaluate()
        t.model.train()
        if result is not None:
            state.publish('eval', result)

    def _stop(self):
        """The stop signal this rank acts on now: its own with one process,
        the one every rank knows of with several."""
        signals = self.state.signals
        return signals.signum if self.state.nranks == 1 else signals.agreed

    def _evaluate(self):
        t, state = self.trainer, self.state
        signals = state.signals
        kwargs = dict(t.opts.eval_kwargs, precision=t.precision, amp_level=t.opts.amp_level)
        try:
            if self._stop():
                raise EvalAborted(self._stop())
            return evaluate_details(t.net, self.val_dataset,
                                    num_workers=min(t.opts.num_workers, EVAL_WORKERS),
                                    stop_requested=lambda: signals.signum or 0, **kwargs)
        except Exception as exc:
            # a signal to the whole process group also ends the evaluation's
            # DataLoader workers, which paddle reports by raising here
            if isinstance(exc, EvalAborted):
                signals.agree(exc.signum)
            elif signals.signum is None:
                raise
            cause = exc.__cause__ if isinstance(exc, EvalAborted) else exc
            if cause is not None:
                logger.warning('Evaluation at iter {} failed after {}: {}'.format(
                    state.iteration, signal.Signals(signals.agreed or signals.signum).name,
                    first_line(cause)))
            logger.warning('Evaluation at iter {} abandoned: stopping'.format(state.iteration))
        return None


class BestModelHook(HookBase):
    """Keeps ``save_dir/best_model`` (rank 0): the weights of the best mIoU
    that :class:`EvalHook` published, and logs the best so far after each
    evaluation. Its state (``best``: ``{'miou', 'iter'}``, also
    ``state.best``) is saved in the checkpoints' ``meta.json``."""

    def __init__(self):
        self.best = {'miou': -1.0, 'iter': -1}

    def state_dict(self):
        return {'best': dict(self.best)}

    def load_state_dict(self, meta):
        self.best = dict(meta.get('best', self.best))
        self.state.best = self.best

    def after_step(self):
        state = self.state
        result = state.fresh('eval')
        if result is None:
            return
        if result['miou'] > self.best['miou']:
            self.best = {'miou': result['miou'], 'iter': state.iteration}
            if state.rank == 0:
                self.trainer.checkpointer.save_weights(
                    'best_model', meta={'iter': state.iteration, 'miou': result['miou']})
        state.best = self.best
        if state.rank == 0:
            logger.info('[EVAL] The model with the best validation mIoU ({:.4f}) '
                        'was saved at iter {}.'.format(self.best['miou'], self.best['iter']))


class VisualDLHook(HookBase):
    """With ``use_vdl``, rank 0 writes to ``save_dir/vdl``: the scalars of
    each ``[TRAIN]`` line (``Train/loss``, ``Train/loss_<i>``, ``Train/lr``,
    ``Train/batch_cost``, ``Train/reader_cost``, from
    ``state.storage['train_log']``), those of each evaluation
    (``Evaluate/mIoU``, ``Evaluate/Acc``, ``Evaluate/Kappa``, from
    ``state.storage['eval']``) and overlays of the first ``count`` val
    predictions (``Evaluate/prediction_<i>``)."""

    def __init__(self, val_dataset=None, count=3):
        self.val_dataset, self.count = val_dataset, count
        self.writer = None

    def before_train(self):
        t = self.trainer
        if t.opts.use_vdl and self.state.rank == 0:
            from visualdl import LogWriter
            self.writer = LogWriter(os.path.join(t.opts.save_dir, 'vdl'))

    def after_train(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def after_step(self):
        if self.writer is None:
            return
        it, log = self.state.iteration, self.state.fresh('train_log')
        if log is not None:
            self.writer.add_scalar('Train/loss', log['loss'], it)
            for i, value in enumerate(log['terms']):
                self.writer.add_scalar('Train/loss_{}'.format(i), value, it)
            for name in ('lr', 'batch_cost', 'reader_cost'):
                self.writer.add_scalar('Train/' + name, log[name], it)
        result = self.state.fresh('eval')
        if result is not None:
            self.writer.add_scalar('Evaluate/mIoU', result['miou'], it)
            self.writer.add_scalar('Evaluate/Acc', result['acc'], it)
            self.writer.add_scalar('Evaluate/Kappa', result['kappa'], it)
            if self.val_dataset is not None:
                self._predictions()

    def _predictions(self):
        """Overlays of the first ``count`` val predictions, as VisualDL images."""
        t, it = self.trainer, self.state.iteration
        palette = get_palette(self.val_dataset.num_classes)
        t.net.eval()
        with paddle.no_grad():
            for i in range(min(self.count, len(self.val_dataset))):
                item = self.val_dataset[i]
                with amp.autocast(t.precision, t.opts.amp_level):
                    logits = inference(t.net, paddle.to_tensor(item['img'][None]),
                                       item.get('trans_info'))
                pred = paddle.argmax(logits, axis=1)[0].numpy()
                image = cv2.imread(item['img_path'], cv2.IMREAD_COLOR)
                if image is None or image.shape[:2] != pred.shape:
                    continue
                self.writer.add_image('Evaluate/prediction_{}'.format(i),
                                      overlay(image, pred, palette)[:, :, ::-1], it)
        t.model.train()


class CheckpointHook(HookBase):
    """``iter_<N>`` every ``save_interval`` iterations (and at the last),
    through the trainer's :class:`~paddleseg.core.checkpointer.Checkpointer`.
    Runs last, so that ``meta.json`` holds every hook's state after the
    step (when :class:`EvalHook` saved the iteration before evaluating, the
    save here rewrites that ``meta.json`` alone)."""

    def after_step(self):
        t, it = self.trainer, self.state.iteration
        if save_due(t.opts, it):
            t.checkpointer.save(it)


def default_hooks(opts, val_dataset=None, extra=()):
    """The hooks of a run with these :class:`~paddleseg.core.options.TrainOptions`
    (besides :class:`NanPolicyHook`, which the trainer always runs first),
    with the hooks ``extra`` before the periodic checkpoint (so that it holds
    their state after the step)."""
    evaluating = opts.do_eval and val_dataset is not None
    hooks = [LogHook()]
    if evaluating:
        hooks.append(EvalHook(val_dataset))
    return hooks + [BestModelHook(), VisualDLHook(val_dataset if evaluating else None),
                    *extra, CheckpointHook()]
