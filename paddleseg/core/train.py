"""``train``: PaddleSeg's training entry point, a library function.

It runs on one device or, under ``python -m paddle.distributed.launch``, on
several: the model is wrapped in ``paddle.DataParallel``, BatchNorm becomes
``SyncBatchNorm`` on GPUs, each rank reads its own shard, and only rank 0
logs and writes checkpoints. The loop is :class:`paddleseg.core.trainer.Trainer`,
what happens around its steps :mod:`paddleseg.core.hooks` (``hooks=`` adds
yours: docs/training_hooks.md).

It leaves the calling process as it found it: the SIGINT/SIGTERM (and
SIGCHLD) handlers and ``threading.excepthook`` it installs while running
are put back, it sets no environment variable and no allocator or OpenMP
setting (an entry script does that with
:func:`paddleseg.utils.env.tune_process`), and it never ends the process.

How a run stops early:

* SIGINT (Ctrl-C) or SIGTERM: the step in progress finishes (an evaluation
  in progress is abandoned after its current image on a single process, and
  finishes on several), ``iter_<it>`` is saved and :class:`TrainingInterrupted`
  is raised (``train.py`` exits with 130 / 143). A second Ctrl-C stops at
  once, without saving; more SIGTERMs change nothing
  (``paddle.distributed.launch`` sends several, 0.2 s apart).
* A sample that cannot be loaded (:class:`~paddleseg.errors.DatasetError`):
  the state after the last finished iteration is saved, then the error is
  raised naming the file; fix it and resume with ``--resume_model auto``.
* A NaN/inf loss: ``nan_policy='stop'`` raises :class:`NonFiniteLossError`
  (the last regular checkpoint stays, nothing is saved); ``'skip'`` drops
  the update (the lr schedule still advances) and stops only after
  :data:`MAX_SKIPPED_STEPS` non-finite losses in a row. In fp16 the loss
  scaler skips steps whose gradients are not finite, whatever the policy,
  and only :data:`~paddleseg.core.hooks.MAX_SCALER_SKIPS` in a row stop the
  run (:class:`~paddleseg.core.hooks.NanPolicyHook`).
* A step that makes no progress (e.g. a collective waiting for a process
  that died): only a ``watchdog`` notices (see :func:`train`); ``train.py``
  passes one that ends the process with status 124.
"""

import dataclasses
import os

from paddleseg.core import amp
from paddleseg.core.hooks import MAX_SKIPPED_STEPS, NonFiniteLossError, default_hooks  # noqa: F401
from paddleseg.core.options import TrainOptions
from paddleseg.core.stop import StallWatchdog, StopSignals, TrainingInterrupted  # noqa: F401
from paddleseg.core.trainer import Trainer, compute_losses  # noqa: F401
from paddleseg.core.val import details_kwargs
from paddleseg.errors import ConfigError
from paddleseg.utils import dist


def _check_save_dir(save_dir):
    """Fail now, not at the first checkpoint, when ``save_dir`` cannot be written."""
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError('--save_dir {}: cannot create it: {}'.format(save_dir, exc)) from exc
    if not os.access(save_dir, os.W_OK | os.X_OK):
        raise ConfigError('--save_dir {}: no permission to write in it'.format(save_dir))


_UNSUPPORTED = {  # PaddleSeg 2.8 keywords accepted only at their default
    'use_ema': (False, 'an EMA copy of the model is not kept'),
    'profiler_options': (None, "paddle's profiler is not wired in"),
    'to_static_training': (False, 'training runs in dynamic mode only'),
}


def _check_unsupported(**given):
    for name, value in given.items():
        default, why = _UNSUPPORTED[name]
        if value != default:
            raise ConfigError('train: {}={!r} is not supported ({}); leave it at {!r}'.format(
                name, value, why, default))


def train(model, train_dataset, val_dataset=None, optimizer=None, save_dir='output',
          iters=10000, batch_size=2, resume_model=None, save_interval=1000, log_iters=10,
          num_workers=0, use_vdl=False, use_ema=False, losses=None, keep_checkpoint_max=5,
          test_config=None, precision='fp32', amp_level='O1', profiler_options=None,
          to_static_training=False, *, do_eval=None, seed=None, nan_policy='stop',
          eval_kwargs=None, eval_interval=None, stall_timeout=None, watchdog=None,
          hooks=None, lr_scheduler=None):
    """Train ``model`` for ``iters`` iterations: PaddleSeg 2.8's ``core.train``.

    The arguments up to ``to_static_training`` are PaddleSeg 2.8's, in its
    order; the rest are this repository's and keyword-only.

    Args:
        model (nn.Layer): The model; its training outputs pair with ``losses``.
        train_dataset (Dataset): Items are dicts with ``img`` ``[3, H, W]``
            float32 and ``label`` ``[H, W]`` integer.
        val_dataset (Dataset, optional): Evaluated every ``eval_interval``
            iterations (and at the last), keeping ``best_model``, unless
            ``do_eval=False``. Default: None.
        optimizer (paddle.optimizer.Optimizer): With its lr scheduler. Required.
        save_dir (str, optional): Output folder. Default: 'output'.
        iters (int, optional): Total iterations (including those before a
            resume). Default: 10000.
        batch_size (int, optional): Per process. Default: 2.
        resume_model (str, optional): A checkpoint folder (ours, or an
            ``iter_N`` PaddleSeg 2.8 wrote), or ``'auto'`` for the newest
            complete one of ours in ``save_dir``. Default: None.
        save_interval (int, optional): Checkpoint period. Default: 1000.
        log_iters (int, optional): Logging period. Default: 10.
        num_workers (int, optional): Training data loader workers (the
            evaluations use at most 2). Default: 0.
        use_vdl (bool, optional): Write VisualDL scalars to ``save_dir/vdl``.
            Default: False.
        use_ema (bool, optional): PaddleSeg's; only False. Default: False.
        losses (dict): ``{'types': [...], 'coef': [...]}`` (config ``loss``,
            ``SegBuilder.loss``). Required.
        keep_checkpoint_max (int, optional): ``iter_N`` folders kept. Default: 5.
        test_config (dict, optional): Keyword arguments of
            :func:`paddleseg.core.evaluate` for the evaluations (config
            ``test_config``; ``auc_roc`` is refused). Default: None.
        precision (str, optional): 'fp32' or 'fp16' (GPU; training and its
            evaluations). Default: 'fp32'.
        amp_level (str, optional): 'O1' or 'O2' with fp16. Default: 'O1'.
        profiler_options (str, optional): PaddleSeg's; only None.
        to_static_training (bool, optional): PaddleSeg's; only False.
        do_eval (bool, optional): Evaluate ``val_dataset``; None (default):
            when ``val_dataset`` is given, as PaddleSeg does.
        seed (int, optional): Seed of every random choice; random if None
            (and recorded in the checkpoints). Default: None.
        nan_policy (str, optional): 'stop' or 'skip' a non-finite loss (fp16:
            the loss scaler skips overflowing steps first). Default: 'stop'.
        eval_kwargs (dict, optional): Another name for ``test_config``
            (give one of them). Default: None.
        eval_interval (int, optional): Evaluation period. Default:
            ``save_interval``.
        stall_timeout (float, optional): Without ``watchdog``: log an error
            when a training step lasts longer than this many seconds (the
            run goes on waiting). 0 or None: no watchdog. Default: None.
        watchdog (optional): Times every training step with its
            ``guard('iter N')`` context manager, e.g. a
            :class:`~paddleseg.core.stop.StallWatchdog` whose callback ends
            the process (what ``train.py`` passes). Default: None.
        hooks (list, optional): Your hooks
            (:class:`paddleseg.core.hooks.HookBase`), run after the default
            ones (logging, evaluation, best model, VisualDL) and before the
            periodic checkpoint; see docs/training_hooks.md. Default: None.
        lr_scheduler (paddle.optimizer.lr.LRScheduler, optional): The
            optimizer's scheduler, stepped once per iteration. Default: the
            one ``optimizer`` was built with.

    Raises:
        ConfigError: a missing ``optimizer`` or ``losses``, a PaddleSeg
            option that is not supported set, a bad option.
        TrainingInterrupted: SIGINT/SIGTERM, after saving a checkpoint.
        DatasetError: a training sample cannot be loaded (after saving the
            progress made).
        NonFiniteLossError: see ``nan_policy``.

    Returns:
        dict: ``{'miou': best mIoU or -1, 'iter': its iteration or -1}``
        (PaddleSeg's returns None).
    """
    _check_unsupported(use_ema=use_ema, profiler_options=profiler_options,
                       to_static_training=to_static_training)
    for name, value in (('optimizer', optimizer), ('losses', losses)):
        if value is None:
            raise ConfigError('train: {} is required (SegBuilder(cfg).{})'.format(
                name, 'loss' if name == 'losses' else name))
    if test_config is not None and eval_kwargs is not None:
        raise ConfigError('train: give test_config or eval_kwargs, not both '
                          '(they are the same thing)')
    eval_kwargs = details_kwargs(test_config if eval_kwargs is None else eval_kwargs)
    if do_eval is None:
        do_eval = val_dataset is not None
    opts = TrainOptions(
        iters=iters, batch_size=batch_size, save_dir=save_dir,
        save_interval=save_interval, eval_interval=eval_interval, log_iters=log_iters,
        num_workers=num_workers, use_vdl=use_vdl, keep_checkpoint_max=keep_checkpoint_max,
        do_eval=do_eval, resume_model=resume_model, precision=precision,
        amp_level=amp_level, seed=seed, nan_policy=nan_policy, eval_kwargs=eval_kwargs)
    return run_training(model, train_dataset, losses, optimizer, opts,
                        val_dataset=val_dataset, stall_timeout=stall_timeout,
                        watchdog=watchdog, hooks=hooks, lr_scheduler=lr_scheduler)


def run_training(model, train_dataset, losses, optimizer, opts, val_dataset=None,
                 stall_timeout=None, watchdog=None, hooks=None, lr_scheduler=None):
    """:func:`train` with its options as a :class:`TrainOptions`; ``hooks``
    are added to :func:`~paddleseg.core.hooks.default_hooks`."""
    precision, amp_level = amp.resolve_precision(opts.precision, opts.amp_level)
    if (precision, amp_level) != (opts.precision, opts.amp_level):
        opts = dataclasses.replace(opts, precision=precision, amp_level=amp_level)
    rank, _ = dist.init_distributed()
    if rank == 0:
        _check_save_dir(opts.save_dir)
    own = StallWatchdog(stall_timeout) if watchdog is None and stall_timeout else None
    try:
        return Trainer(model, train_dataset, losses, optimizer, opts, val_dataset=val_dataset,
                       watchdog=watchdog or own,
                       hooks=default_hooks(opts, val_dataset, extra=hooks or ()),
                       lr_scheduler=lr_scheduler).run()
    finally:
        if own is not None:
            own.close()
