"""Run-time environment: device, CPU threads and random seeds."""

import os
import random

import numpy as np
import paddle

from paddleseg.errors import ConfigError

THREADS_ENV = 'SEG_CPU_THREADS'


def get_device():
    """Return ``'gpu'`` when paddle's current device is a GPU, else ``'cpu'``."""
    return 'gpu' if paddle.device.get_device().startswith('gpu') else 'cpu'


def usable_cpu_count():
    """Return how many CPU cores this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _threads_from_env():
    """Return the positive int in ``SEG_CPU_THREADS``, or None when it is unset."""
    value = os.environ.get(THREADS_ENV, '').strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f'{THREADS_ENV} must be a positive integer, got {value!r}')
    return int(value)


def set_cpu_threads(n=None):
    """Set how many threads paddle's CPU kernels use and return that number.

    The count is ``n`` if given, else the ``SEG_CPU_THREADS`` environment
    variable if set, else every usable core when paddle runs on the CPU
    (divided among the ``PADDLE_LOCAL_SIZE`` processes that
    ``paddle.distributed.launch`` starts on one machine). On a
    GPU with neither ``n`` nor the variable, nothing changes and None is
    returned.

    Paddle sets ``OMP_NUM_THREADS=1`` when imported, and changing that
    variable later has no effect once a kernel has run, so this calls
    ``paddle.base.core.set_num_threads``, which works at any time. Call it
    from the main thread before the first paddle operation runs in any other
    thread.
    """
    if n is None:
        n = _threads_from_env()
    if n is None:
        if get_device() != 'cpu':
            return None
        # processes launched side by side on one machine share its cores
        local = int(os.environ.get('PADDLE_LOCAL_SIZE', '1') or 1)
        n = max(1, usable_cpu_count() // max(local, 1))
    if n < 1:
        raise ConfigError(f'The number of CPU threads must be at least 1, got {n}')
    paddle.base.core.set_num_threads(n)
    return n


def seed_everything(seed):
    """Seed python's ``random``, numpy's global generator and paddle with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def init_distributed():
    """Start paddle's collective runtime when launched on several processes.

    Returns:
        tuple(int, int): ``(rank, world_size)``; ``(0, 1)`` for a single process.
    """
    world = paddle.distributed.get_world_size()
    if world > 1 and not paddle.distributed.is_initialized():
        paddle.distributed.init_parallel_env()
    return paddle.distributed.get_rank(), world
