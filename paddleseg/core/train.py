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
"""

import os
import time
from collections import deque

import numpy as np
import paddle

from paddleseg.core.sampler import ResumableBatchSampler, SeededDataset
from paddleseg.core.val import evaluate
from paddleseg.errors import CheckpointError, ConfigError, SegError
from paddleseg.utils import logger
from paddleseg.utils.env import init_distributed
from paddleseg.utils.checkpoint import (find_latest_checkpoint, load_checkpoint,
                                        prune_checkpoints, save_checkpoint)


class NonFiniteLossError(SegError):
    """The loss became NaN or infinite."""


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
                 amp_level, seed, nan_policy, eval_kwargs):
        self.net = model
        self.train_dataset = train_dataset
        self.losses = losses
        self.optimizer = optimizer
        self.iters = iters
        self.batch_size = batch_size
        self.val_dataset = val_dataset
        self.save_dir = save_dir
        self.save_interval = save_interval
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
            persistent_workers=False)
        return sampler, loader

    # -- the loop --------------------------------------------------------------
    def run(self):
        sampler, loader = self._loader()
        it = self.start_iter
        meter = _Meter(self.log_iters)
        self.model.train()
        tic = time.time()
        while it < self.iters:
            for batch in loader:
                it += 1
                reader_cost = time.time() - tic
                terms = self.step(batch, it)
                meter.update(terms, reader_cost, time.time() - tic,
                             batch['img'].shape[0])
                if it % self.log_iters == 0 or it == self.iters:
                    self.log(it, meter)
                if it % self.save_interval == 0 or it == self.iters:
                    self.evaluate_and_checkpoint(it)
                    self.model.train()
                tic = time.time()
                if it >= self.iters:
                    break
        return self.best

    def step(self, batch, it):
        """One optimisation step; returns the loss terms as floats."""
        paddle.seed(_step_seed(self.seed, it, self.rank))
        images = batch['img']
        labels = batch['label'].astype('int64')
        if labels.ndim == 4:
            labels = labels.squeeze(1)
        with paddle.amp.auto_cast(enable=self.use_fp16, level=self.amp_level):
            logits_list = self.model(images)
            terms = compute_losses(logits_list, labels, self.losses)
            loss = paddle.add_n(terms) if len(terms) > 1 else terms[0]
        values = [float(t) for t in terms]
        if not np.isfinite(values).all():
            self._non_finite(it, values)
            self.optimizer.clear_grad()
            return values
        scaled = self.scaler.scale(loss)
        scaled.backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.clear_grad()
        lr_sched = self.optimizer._learning_rate
        if isinstance(lr_sched, paddle.optimizer.lr.LRScheduler):
            lr_sched.step()
        return values

    def _non_finite(self, it, values):
        message = 'non-finite loss at iter {}: terms {}'.format(
            it, ', '.join('{:.4g}'.format(v) for v in values))
        if self.nan_policy == 'skip':
            logger.warning(message + '; step skipped (--nan_policy skip)')
            return
        last = find_latest_checkpoint(self.save_dir)
        raise NonFiniteLossError(message + '; stopped. Last good checkpoint: {}'
                                 .format(last or 'none'))

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
        """Save ``iter_<it>``, evaluate if asked, keep ``best_model``."""
        result = None
        if self.do_eval:
            result = evaluate(self.net, self.val_dataset,
                              num_workers=self.num_workers, **self.eval_kwargs)
            self.model.train()
        if self.rank != 0:
            return
        if result is not None:
            self._record_eval(result, it)
        save_checkpoint(self._states(), os.path.join(
            self.save_dir, 'iter_{}'.format(it)), meta=self._meta(it))
        prune_checkpoints(self.save_dir, self.keep_checkpoint_max)

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


def _format_eta(seconds):
    seconds = int(seconds)
    return '{:d}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60,
                                       seconds % 60)


def train(model, train_dataset, losses, optimizer, iters, batch_size,
          val_dataset=None, save_dir='output', save_interval=1000, log_iters=10,
          num_workers=0, use_vdl=False, keep_checkpoint_max=5, do_eval=False,
          resume_model=None, precision='fp32', amp_level='O1', seed=None,
          nan_policy='stop', eval_kwargs=None):
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
        save_interval (int, optional): Checkpoint (and eval) period. Default: 1000.
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

    Returns:
        dict: ``{'miou': best mIoU or -1, 'iter': its iteration or -1}``.
    """
    if precision == 'fp16' and not paddle.get_device().startswith('gpu'):
        logger.warning('fp16 needs a GPU; training in fp32 on {}'.format(
            paddle.get_device()))
        precision = 'fp32'
    init_distributed()
    seed = _shared_seed(seed)
    trainer = _Trainer(model, train_dataset, losses, optimizer, iters,
                       batch_size, val_dataset, save_dir, save_interval,
                       log_iters, num_workers, use_vdl, keep_checkpoint_max,
                       do_eval, precision, amp_level, seed, nan_policy,
                       eval_kwargs)
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
