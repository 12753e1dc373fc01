"""Run-time environment: device, CPU threads and random seeds."""

import ctypes
import os
import platform
import random

import numpy as np
import paddle

from paddleseg.errors import ConfigError

THREADS_ENV = 'SEG_CPU_THREADS'
MMAP_ENV = 'SEG_MMAP_THRESHOLD'
# glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def get_device():
    """Return ``'gpu'`` when paddle's current device is a GPU, else ``'cpu'``."""
    return 'gpu' if paddle.device.get_device().startswith('gpu') else 'cpu'


def usable_cpu_count():
    """Return how many CPU cores this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _int_from_env(name, minimum, what):
    """The int ``>= minimum`` in environment variable ``name``, None if unset;
    otherwise a ConfigError saying ``name must be <what>``."""
    value = os.environ.get(name, '').strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < minimum:
        raise ConfigError(f'{name} must be {what}, got {value!r}')
    return int(value)


def _threads_from_env():
    """Return the positive int in ``SEG_CPU_THREADS``, or None when it is unset."""
    return _int_from_env(THREADS_ENV, 1, 'a positive integer')


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


def idle_threads_sleep():
    """Make OpenMP worker threads sleep as soon as a parallel region ends.

    Paddle's CPU kernels use Intel OpenMP, whose idle workers spin for 200 ms
    (``KMP_BLOCKTIME``) after every parallel region. Kernels that run outside
    OpenMP (Adam's update, for one) then share the cores with spinning
    threads: with Adam, a demo training step took 5.8 s instead of 4.0 s on
    2 cores. Inference, made of OpenMP kernels only, runs about 10% slower
    with a block time of 0 (ResNet101_vd eval), so only training asks for it:
    ``train.py`` sets ``KMP_BLOCKTIME=0`` before OpenMP starts (the stronger
    way), and :func:`paddleseg.core.train` calls this for a process where
    OpenMP started earlier (``kmp_set_blocktime(0)`` for the calling
    thread). An explicit ``KMP_BLOCKTIME`` other than 0 is left alone.

    Returns:
        bool: Whether the block time was set.
    """
    if os.environ.get('KMP_BLOCKTIME', '0') != '0':
        return False
    try:
        omp = ctypes.CDLL('libiomp5.so', mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        omp.kmp_set_blocktime(0)
    except (OSError, AttributeError):
        return False  # not Intel OpenMP, or not loaded
    return True


DEFAULT_MMAP_THRESHOLD = 4 << 20
"""Bytes; the mmap threshold that :func:`tune_host_allocator` sets by default."""


def tune_host_allocator(threshold=None):
    """Serve large host allocations with mmap so freed tensors leave the process.

    glibc raises its mmap threshold each time a large mmapped block is freed
    (up to 32 MB), after which the activations of a training step (each a
    few MB) come from the heap, whose freed pieces are kept and fragment. A
    fixed threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
    raising off) gives every allocation of at least ``threshold`` bytes its
    own mapping, returned to the system when freed. Measured on the
    training steps of ``benchmarks/`` (256x512) against glibc's default:

    ========================  =====================  =====================
    threshold                 ResNet18_vd, batch 2   ResNet101_vd, batch 1
    ========================  =====================  =====================
    1 MiB                     peak -35%, time +0-5%  peak -36%, time +13%
    4 MiB (the default)       peak -33%, time +0%    peak -26%, time +4%
    ========================  =====================  =====================

    On the demo's small images (batch 4, 96x192) 1 MiB costs 10-20% of the
    step (fresh mappings are page-faulted at every use) and 4 MiB nothing
    measurable (peak -12%), hence the default. :func:`paddleseg.core.train`
    calls this on CPU; GPU memory is paddle's own allocator's and unaffected.

    Args:
        threshold (int, optional): Bytes, 0 for glibc's own behaviour.
            Default: the ``SEG_MMAP_THRESHOLD`` environment variable if set
            (0: glibc's own), else :data:`DEFAULT_MMAP_THRESHOLD`.

    Returns:
        int: The threshold set, 0 when nothing was changed (0 asked, or not
        glibc).
    """
    if threshold is None:
        threshold = _int_from_env(MMAP_ENV, 0, 'a number of bytes (0: glibc\'s own)')
        if threshold is None:
            threshold = DEFAULT_MMAP_THRESHOLD
    if threshold <= 0 or platform.libc_ver()[0] != 'glibc':
        return 0
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))
    except (OSError, AttributeError):
        return 0
    return int(threshold) if ok == 1 else 0


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
