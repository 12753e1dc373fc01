"""What the training loop does around its steps, one hook per concern.

A hook sees the :class:`~paddleseg.core.trainer.Trainer` as ``self.trainer``
and may act before and after the run and each step. The trainer runs them
in the order :func:`default_hooks` gives: the NaN policy first (it may stop
the run before anything is logged or saved), then logging, evaluation (with
``best_model``), and the periodic checkpoint.
"""

import os
import signal
from collections import deque

import cv2
import numpy as np
import paddle

from paddleseg.core import amp
from paddleseg.core.infer import inference
from paddleseg.core.optim_state import optimizer_state, param_names
from paddleseg.core.stop import EvalAborted
from paddleseg.core.val import evaluate_details
from paddleseg.errors import SegError
from paddleseg.utils import logger
from paddleseg.utils.checkpoint import find_latest_checkpoint, prune_checkpoints, save_checkpoint
from paddleseg.utils.visualize import get_palette, overlay

MAX_SKIPPED_STEPS = 10
"""With ``nan_policy='skip'``, training stops after this many non-finite
losses in a row."""

EVAL_WORKERS = 2
"""At most this many DataLoader workers for the evaluations during training."""


class NonFiniteLossError(SegError):
    """The loss became NaN or infinite."""


class HookBase:
    """Does nothing; subclasses override what they need. ``trainer`` is set
    by the trainer that runs the hook."""

    trainer = None

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


class NanPolicy(HookBase):
    """After a step whose loss was not finite (on any rank), which the trainer
    did not apply: ``'stop'`` raises :class:`NonFiniteLossError` naming the
    last checkpoint; ``'skip'`` logs it and goes on, up to
    :data:`MAX_SKIPPED_STEPS` in a row."""

    def __init__(self, policy):
        self.policy = policy
        self.in_a_row = 0

    def after_step(self):
        t = self.trainer
        step = t.step_info
        if not step['skipped']:
            self.in_a_row = 0
            return
        terms = ', '.join('{:.4g}'.format(v) for v in step['terms'])
        message = 'non-finite loss at iter {}: terms {}'.format(t.it, terms)
        if step['finite_here']:
            message = 'non-finite loss at iter {} on another process (here: terms {})'.format(
                t.it, terms)
        self.in_a_row += 1
        if self.policy == 'skip' and self.in_a_row < MAX_SKIPPED_STEPS:
            logger.warning(message + '; step skipped (--nan_policy skip)')
            return
        if self.policy == 'skip':
            message += '; {} in a row'.format(self.in_a_row)
        last = find_latest_checkpoint(t.opts.save_dir)
        raise NonFiniteLossError(message + '; stopped. Last good checkpoint: {}'
                                 .format(last or 'none'))


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


def _format_eta(seconds):
    seconds = int(seconds)
    return '{:d}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60, seconds % 60)


class LogHook(HookBase):
    """The ``[TRAIN]`` line every ``log_iters`` (rank 0) and VisualDL's scalars."""

    def before_train(self):
        self.meter = _Meter(self.trainer.opts.log_iters)

    def after_step(self):
        t = self.trainer
        step = t.step_info
        self.meter.update(step['terms'], step['reader_cost'], step['batch_cost'],
                          step['samples'])
        if t.rank != 0 or not due(t.it, t.opts.log_iters, t.opts.iters):
            return
        avg = self.meter.averages()
        lr = t.optimizer.get_lr()
        logger.info(
            '[TRAIN] iter: {}/{}, loss: {:.4f} ({}), lr: {:.6f}, batch_cost: '
            '{:.4f}, reader_cost: {:.5f}, ips: {:.4f} samples/sec | ETA {}'.format(
                t.it, t.opts.iters, avg['loss'],
                ', '.join('{:.4f}'.format(v) for v in avg['terms']), lr,
                avg['batch_cost'], avg['reader_cost'], avg['ips'],
                _format_eta((t.opts.iters - t.it) * avg['batch_cost'])))
        if t.vdl is not None:
            t.vdl.add_scalar('Train/loss', avg['loss'], t.it)
            for i, value in enumerate(avg['terms']):
                t.vdl.add_scalar('Train/loss_{}'.format(i), value, t.it)
            t.vdl.add_scalar('Train/lr', lr, t.it)
            t.vdl.add_scalar('Train/batch_cost', avg['batch_cost'], t.it)
            t.vdl.add_scalar('Train/reader_cost', avg['reader_cost'], t.it)


class EvalHook(HookBase):
    """Evaluate every ``eval_interval`` iterations (and at the last) in the
    run's precision; rank 0 keeps ``best_model`` by mIoU and sends the
    metrics and a few predictions to VisualDL.

    A stop signal during the evaluation of a single process abandons it
    (between two images); several processes finish it together.
    """

    def __init__(self, val_dataset):
        self.val_dataset = val_dataset

    def after_step(self):
        t = self.trainer
        if not due(t.it, t.opts.eval_interval, t.opts.iters):
            return
        result = self._evaluate()
        t.model.train()
        if result is not None and t.rank == 0:
            self._record(result)

    def _evaluate(self):
        t = self.trainer
        single = t.nranks == 1
        kwargs = dict(t.opts.eval_kwargs, precision=t.precision, amp_level=t.opts.amp_level)
        try:
            if single:
                t.signals.check()
            return evaluate_details(t.net, self.val_dataset,
                                    num_workers=min(t.opts.num_workers, EVAL_WORKERS),
                                    on_prediction=t.signals.check if single else None,
                                    **kwargs)
        except Exception as exc:
            # a signal to the whole process group also ends the evaluation's
            # DataLoader workers, which paddle reports by raising here
            if t.signals.signum is None:
                raise
            if not isinstance(exc, EvalAborted):
                logger.warning('Evaluation at iter {} failed after {}: {}'.format(
                    t.it, signal.Signals(t.signals.signum).name,
                    str(exc).strip().splitlines()[0]))
            logger.warning('Evaluation at iter {} abandoned: stopping'.format(t.it))
        return None

    def _record(self, result):
        t = self.trainer
        if result['miou'] > t.best['miou']:
            t.best = {'miou': result['miou'], 'iter': t.it}
            save_checkpoint({'model.pdparams': t.net.state_dict()},
                            os.path.join(t.opts.save_dir, 'best_model'),
                            meta={'iter': t.it, 'miou': result['miou']})
        logger.info('[EVAL] The model with the best validation mIoU ({:.4f}) '
                    'was saved at iter {}.'.format(t.best['miou'], t.best['iter']))
        if t.vdl is not None:
            t.vdl.add_scalar('Evaluate/mIoU', result['miou'], t.it)
            t.vdl.add_scalar('Evaluate/Acc', result['acc'], t.it)
            t.vdl.add_scalar('Evaluate/Kappa', result['kappa'], t.it)
            self._vdl_predictions()

    def _vdl_predictions(self, count=3):
        """Overlays of the first ``count`` val predictions, as VisualDL images."""
        t = self.trainer
        palette = get_palette(self.val_dataset.num_classes)
        t.net.eval()
        with paddle.no_grad():
            for i in range(min(count, len(self.val_dataset))):
                item = self.val_dataset[i]
                with amp.autocast(t.precision, t.opts.amp_level):
                    logits = inference(t.net, paddle.to_tensor(item['img'][None]),
                                       item.get('trans_info'))
                pred = paddle.argmax(logits, axis=1)[0].numpy()
                image = cv2.imread(item['img_path'], cv2.IMREAD_COLOR)
                if image is None or image.shape[:2] != pred.shape:
                    continue
                t.vdl.add_image('Evaluate/prediction_{}'.format(i),
                                overlay(image, pred, palette)[:, :, ::-1], t.it)
        t.model.train()


class CheckpointHook(HookBase):
    """``iter_<N>`` every ``save_interval`` iterations (and at the last), on
    rank 0, keeping ``keep_checkpoint_max``; :meth:`save_now` for the loop's
    early stops."""

    def after_step(self):
        t = self.trainer
        if due(t.it, t.opts.save_interval, t.opts.iters):
            self.save_now(t.it)

    def save_now(self, it):
        """Save ``iter_<it>`` (rank 0) unless it is already on disk; return
        the checkpoint holding iteration ``it`` (None on other ranks)."""
        t = self.trainer
        if t.rank != 0:
            return None
        if t.last_saved[0] != it:
            path = os.path.join(t.opts.save_dir, 'iter_{}'.format(it))
            save_checkpoint(self.states(), path, meta=self.meta(it))
            prune_checkpoints(t.opts.save_dir, t.opts.keep_checkpoint_max)
            t.last_saved = (it, path)
            logger.info('Saved {}'.format(path))
        return t.last_saved[1]

    def states(self):
        t = self.trainer
        states = {'model.pdparams': t.net.state_dict(),
                  'model.pdopt': optimizer_state(t.optimizer, t.net)}
        if t.use_fp16:
            states['scaler.pdstate'] = amp.scaler_state(t.scaler)
        return states

    def meta(self, it):
        t = self.trainer
        # model.pdopt is keyed by canonical names (PaddleSeg reads it); the
        # structured name of each makes our resume exact in any process
        return {'iter': it, 'seed': t.seed, 'best': t.best, 'iters': t.opts.iters,
                'batch_size': t.opts.batch_size, 'nranks': t.nranks,
                'optimizer_params': param_names(t.net)}


def default_hooks(opts, val_dataset=None):
    """The hooks of a run with these :class:`~paddleseg.core.trainer.TrainOptions`."""
    hooks = [NanPolicy(opts.nan_policy), LogHook()]
    if opts.do_eval and val_dataset is not None:
        hooks.append(EvalHook(val_dataset))
    return hooks + [CheckpointHook()]
