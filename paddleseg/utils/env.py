"""Run-time environment: CPU threads, random seeds, and the CPU tuning that
entry scripts ask for (:func:`tune_process`). The device's kind and the
distributed start are :mod:`paddleseg.utils.dist`'s (``init_distributed``
is importable from here too, its earlier home)."""

import ctypes
import os
import platform
import random

import numpy as np
import paddle

from paddleseg.errors import ConfigError
from paddleseg.utils.dist import device_kind
from paddleseg.mkl_dispatch import set_mkl_code_path

THREADS_ENV = 'SEG_CPU_THREADS'
MMAP_ENV = 'SEG_MMAP_THRESHOLD'
# glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def usable_cpu_count():
    """Return how many CPU cores this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_process_count(environ=None):
    """How many processes of the job run on this machine: the
    ``PADDLE_LOCAL_SIZE`` that ``paddle.distributed.launch`` sets, else 1.
    They share the machine's cores and its ``/dev/shm``."""
    value = (os.environ if environ is None else environ).get('PADDLE_LOCAL_SIZE', '')
    return max(int(value), 1) if value.strip().isdigit() else 1


def _int_from_env(name, minimum, what, environ=None):
    """The int ``>= minimum`` in environment variable ``name``, None if unset;
    otherwise a ConfigError saying ``name must be <what>``."""
    value = (os.environ if environ is None else environ).get(name, '').strip()
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
    GPU (or XPU, NPU) with neither ``n`` nor the variable, nothing changes and None is
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
        if device_kind() != 'cpu':
            return None
        # processes launched side by side on one machine share its cores
        n = max(1, usable_cpu_count() // local_process_count())
    if n < 1:
        raise ConfigError(f'The number of CPU threads must be at least 1, got {n}')
    paddle.base.core.set_num_threads(n)
    return n


def idle_threads_sleep(environ=None):
    """Make OpenMP worker threads sleep as soon as a parallel region ends.

    Paddle's CPU kernels use Intel OpenMP, whose idle workers spin for 200 ms
    (``KMP_BLOCKTIME``) after every parallel region. Kernels that run outside
    OpenMP (Adam's update, for one) then share the cores with spinning
    threads: with Adam, a demo training step took 5.8 s instead of 4.0 s on
    2 cores. Inference, made of OpenMP kernels only, runs about 10% slower
    with a block time of 0 (ResNet101_vd eval), so only training asks for it
    (:func:`tune_process`). OpenMP reads ``KMP_BLOCKTIME`` when it starts,
    which ``import paddle`` already did, so this calls
    ``kmp_set_blocktime(0)``: it holds for the calling thread and the
    parallel regions it starts (as much as the variable would; measured by
    the idle workers' CPU time), so call it from the thread that trains. An
    explicit ``KMP_BLOCKTIME`` other than 0 is left alone.

    Args:
        environ (dict, optional): Where to look for ``KMP_BLOCKTIME``.
            Default: ``os.environ``.

    Returns:
        bool: Whether the block time was set.
    """
    environ = os.environ if environ is None else environ
    if environ.get('KMP_BLOCKTIME', '0') != '0':
        return False
    try:
        omp = ctypes.CDLL('libiomp5.so', mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        omp.kmp_set_blocktime(0)
    except (OSError, AttributeError):
        return False  # not Intel OpenMP, or not loaded
    return True


DEFAULT_MMAP_THRESHOLD = 4 << 20
"""Bytes; the mmap threshold that :func:`tune_host_allocator` sets by default."""


def tune_host_allocator(threshold=None, environ=None):
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
    measurable (peak -12%), hence the default. :func:`tune_process` calls
    this for CPU training; GPU memory is paddle's own allocator's and
    unaffected.

    Args:
        threshold (int, optional): Bytes, 0 for glibc's own behaviour.
            Default: the ``SEG_MMAP_THRESHOLD`` environment variable if set
            (0: glibc's own), else :data:`DEFAULT_MMAP_THRESHOLD`.
        environ (dict, optional): Where to read ``SEG_MMAP_THRESHOLD``.
            Default: ``os.environ``.

    Returns:
        int: The threshold set, 0 when nothing was changed (0 asked, or not
        glibc).
    """
    if threshold is None:
        threshold = _int_from_env(MMAP_ENV, 0, 'a number of bytes (0: glibc\'s own)', environ)
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


def tune_process(training, environ=None, cpuinfo='/proc/cpuinfo'):
    """Tune this process for paddle's CPU kernels: for programs, not libraries.

    ``import paddleseg`` and :func:`paddleseg.core.train` change nothing of
    the process they run in; ``train.py``, ``val.py``, ``predict.py`` and
    ``export.py`` call this, and so may a notebook or script of yours that
    owns its process. Call it from the main thread after the device is
    chosen and before paddle's first matrix product (model building
    included; importing paddle is fine). It sets:

    * ``MKL_DEBUG_CPU_TYPE`` on AMD and Hygon CPUs (unless set, empty
      included): MKL's AVX-512 or AVX2 code path instead of its generic one,
      matrix products and convolutions 2-3x faster, an eval pass about 2x
      (:mod:`paddleseg.mkl_dispatch`). MKL reads it at its first product, so
      it is set in ``environ`` and stays there.
    * ``training`` only: OpenMP's idle threads sleep at once
      (``KMP_BLOCKTIME=0`` in ``environ`` unless set, and
      :func:`idle_threads_sleep` for this thread, as OpenMP already started).
    * ``training`` on CPU only: a fixed mmap threshold for host memory
      (:func:`tune_host_allocator`: ``SEG_MMAP_THRESHOLD`` or 4 MiB).

    Inference keeps OpenMP's and glibc's defaults (both measured faster there).

    Args:
        training (bool): For a training run.
        environ (dict, optional): The environment to read and change.
            Default: ``os.environ``. The OpenMP and allocator settings are
            made in this process whatever it is.
        cpuinfo (str, optional): Where to read the CPU's vendor and flags.

    Returns:
        dict: What is in force: ``mkl_cpu_type`` (str or None),
        ``kmp_blocktime_0`` (bool) and ``mmap_threshold`` (bytes, 0: glibc's own).

    Raises:
        ConfigError: ``SEG_MMAP_THRESHOLD`` is not a number of bytes.
    """
    environ = os.environ if environ is None else environ
    done = {'mkl_cpu_type': set_mkl_code_path(environ, cpuinfo),
            'kmp_blocktime_0': False, 'mmap_threshold': 0}
    if training:
        if device_kind() == 'cpu':
            done['mmap_threshold'] = tune_host_allocator(environ=environ)
        environ.setdefault('KMP_BLOCKTIME', '0')
        done['kmp_blocktime_0'] = idle_threads_sleep(environ)
    return done


def seed_everything(seed):
    """Seed python's ``random``, numpy's global generator and paddle with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
