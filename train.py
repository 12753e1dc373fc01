"""Train a segmentation model from a config.

    python train.py --config configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512×1024_80k.yml \
        --do_eval --use_vdl --save_interval 1000 --save_dir output

Multi-GPU: ``python -m paddle.distributed.launch train.py --config ...``
(``bash run.sh`` runs the reference 4-GPU recipe).

Exit status: 0 done; 2 a user error (one line on stderr naming the file or
key; ``--debug`` adds the traceback); 124 no progress for
``--stall_timeout`` seconds; 130 / 143 stopped by SIGINT / SIGTERM after
saving ``<save_dir>/iter_<N>`` (resume with ``--resume_model auto``).
"""

import argparse
import os
import sys

from paddleseg.cli.args import (add_common_args, add_precision_args, hide_known_warnings,
                                precision_of, str2bool, user_errors)

hide_known_warnings()

EXIT_STALLED = 124
"""Exit status when a training step makes no progress for --stall_timeout
seconds (as timeout(1))."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='train.py', description='Train a PointRend-Paddle model.')
    add_common_args(p)
    p.add_argument('--iters', type=int, default=None, help='Total iterations.')
    p.add_argument('--batch_size', type=int, default=None,
                   help='Images per device and iteration.')
    p.add_argument('--learning_rate', type=float, default=None,
                   help='Peak learning rate (lr_scheduler.learning_rate).')
    p.add_argument('--save_interval', type=int, default=1000,
                   help='Save (and evaluate, with --do_eval) every N iterations.')
    p.add_argument('--eval_interval', type=int, default=None,
                   help='With --do_eval, evaluate every N iterations instead '
                        '(default: --save_interval).')
    p.add_argument('--resume_model', default=None,
                   help="A checkpoint folder (output/iter_N) or 'auto'.")
    p.add_argument('--save_dir', default='./output', help='Output folder.')
    p.add_argument('--keep_checkpoint_max', type=int, default=5,
                   help='How many iter_N folders to keep.')
    p.add_argument('--num_workers', type=int, default=0,
                   help='Data loader worker processes.')
    p.add_argument('--do_eval', action='store_true',
                   help='Evaluate at every save and keep best_model/.')
    p.add_argument('--log_iters', type=int, default=10, help='Log every N iterations.')
    p.add_argument('--use_vdl', action='store_true',
                   help='Write VisualDL logs to <save_dir>/vdl.')
    p.add_argument('--seed', type=int, default=None, help='Random seed.')
    add_precision_args(p)
    p.add_argument('--data_format', choices=['NCHW', 'NHWC'], default='NCHW',
                   help='Only NCHW is supported by PointRend.')
    p.add_argument('--warmup', type=str2bool, default=None, metavar='BOOL',
                   help='Force linear warmup on (true) or off (false); '
                        'default: as the config says.')
    p.add_argument('--warmup_steps', type=int, default=None,
                   help='Warmup iterations (lr_scheduler.warmup_iters); '
                        '1000 when --warmup true and the config has none.')
    p.add_argument('--nan_policy', choices=['stop', 'skip'], default='stop',
                   help='On a NaN/inf loss: stop (the last checkpoint stays), or '
                        'skip the update (stops after 10 in a row). With fp16 the '
                        'loss scaler skips steps that overflow first.')
    p.add_argument('--stall_timeout', type=float, default=1800, metavar='SECONDS',
                   help='Exit with status 124 when one training step takes longer '
                        '(e.g. a collective waiting for a dead process); 0: never.')
    return p.parse_args(argv)


def warmup_opts(args):
    """The --warmup/--warmup_steps flags as --opts overrides."""
    if args.warmup is False:
        return ['lr_scheduler.warmup_iters=0']
    if args.warmup_steps is not None:
        return ['lr_scheduler.warmup_iters={}'.format(args.warmup_steps)]
    if args.warmup:
        return ['lr_scheduler.warmup_iters=1000']
    return []


def stall_watchdog(timeout, rank):
    """A :class:`~paddleseg.core.stop.StallWatchdog` that ends this process
    with :data:`EXIT_STALLED` when a training step makes no progress for
    ``timeout`` seconds (``os._exit``: the main thread is blocked inside
    paddle, e.g. in a collective waiting for a process that died)."""
    from paddleseg.core.stop import StallWatchdog
    from paddleseg.utils import logger

    def exit_stalled(seconds, what):
        message = ('rank {}: no progress for {:g} s in {} (a stuck collective? did another '
                   'process of the job die?); exiting with status {}'.format(
                       rank, seconds, what, EXIT_STALLED))
        logger.error(message)
        print('train: error: ' + message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_STALLED)
    return StallWatchdog(timeout, on_stall=exit_stalled)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(args.debug, 'train.py'):
        run(args)


def run(args):
    import paddleseg  # noqa: F401  (registers the components)
    from paddleseg.cli.build import config_from_args, setup_device
    from paddleseg.core import train
    from paddleseg.cvlibs import SegBuilder
    from paddleseg.errors import ConfigError
    from paddleseg.utils.dist import init_distributed
    from paddleseg.utils.env import seed_everything, tune_process

    if args.data_format != 'NCHW':
        raise ConfigError('--data_format: PointRend supports only NCHW')
    cfg = config_from_args(args, for_training=True, opts=warmup_opts(args))
    builder = SegBuilder(cfg)
    setup_device(args.device, args.cpu_threads)
    # before the first kernel: MKL's code path, OpenMP's idle threads, malloc
    tune_process(training=True)
    rank, _ = init_distributed()
    if args.seed is not None:  # the initial weights too
        seed_everything(args.seed)
    model = builder.model
    train_dataset = builder.train_dataset
    # --do_eval without a val_dataset trains without evaluating, as before
    val_dataset = builder.val_dataset if args.do_eval and cfg.val_dataset_cfg else None
    losses, optimizer = builder.loss, builder.optimizer
    with stall_watchdog(args.stall_timeout, rank) as watchdog:
        train(model, train_dataset, losses=losses, optimizer=optimizer,
              iters=cfg.iters, batch_size=cfg.batch_size,
              val_dataset=val_dataset, save_dir=args.save_dir,
              save_interval=args.save_interval, log_iters=args.log_iters,
              num_workers=args.num_workers, use_vdl=args.use_vdl,
              keep_checkpoint_max=args.keep_checkpoint_max, do_eval=args.do_eval,
              resume_model=args.resume_model,
              precision=precision_of(args),
              amp_level=args.amp_level, seed=args.seed, nan_policy=args.nan_policy,
              eval_kwargs=cfg.test_config,
              eval_interval=args.eval_interval, watchdog=watchdog)


if __name__ == '__main__':
    main()
