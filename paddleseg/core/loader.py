"""The training data loader: what its workers send, how much shared memory
that takes, and the ``paddle.io.DataLoader`` built from them.

Compact batches. A dataset that offers a ``compact_view()``
(:meth:`paddleseg.datasets.Dataset.compact_view`: its transforms end with
``Normalize``) is loaded without that last Normalize: the workers send
``img`` as ``uint8 [N, C, H, W]`` and ``label`` as ``uint8 [N, H, W]``
(2 MB for a 512x1024 sample instead of 10 MB of float32 and int64), and
:func:`to_device_batch` applies the Normalize to the batch where the loader
put it (the GPU in GPU training) with the same ``[256, C]`` table the
``uint8`` path of :func:`paddleseg.transforms.functional.normalize` uses:
the result is bit for bit what the workers computed before, except where
the image was float before Normalize (padding with 127.5 without a colour
transform after it, ``RandomNoise``, ``RandomRotation``'s fill), which is
rounded to the nearest integer: at most ``0.5 / 255 / std`` off
(0.0039 with the default mean/std 0.5). Labels stay exact (ids and the
ignore index fit ``uint8``; otherwise the dataset keeps int64). Other
datasets are loaded as before (their items normalised by the workers).

Shared memory. Each worker process passes its batches to the training
process through ``/dev/shm``; about ``prefetch_factor x num_workers + 2``
batches are in flight per process (:func:`shm_needed`), and every process
of the machine shares the one ``/dev/shm`` (Docker gives a container 64 MB
unless started with ``--shm-size`` or ``--ipc=host``). :func:`shm_shortage`
compares that with the free space and says, in one line, what to change;
the trainer raises it as a :class:`~paddleseg.errors.ConfigError` before any
worker starts (``train.py`` prints it and exits with status 2). When a
worker dies later, paddle says so in the training process wherever that
process is (its SIGCHLD handler), or only that its queue was killed;
:func:`loader_failure` turns either into one line with the same fix (the
trainer's ``run``).

Epochs. :func:`endless_batches` runs the loader epoch after epoch; with
persistent workers a dead worker is found between epochs (paddle's own
loader would wait for it for ever).
"""

import os
import random

import cv2
import numpy as np
import paddle

from paddleseg.core.sampler import (LOAD_ERROR, LoadFailure, ResumableBatchSampler,
                                    SeededDataset, collate_batch, worker_init)
from paddleseg.errors import ConfigError, first_line
from paddleseg.transforms import functional as F

SHM_PATH = '/dev/shm'
PREFETCH_FACTOR = 2
"""Batches each worker loads ahead (paddle's default)."""
_MB = 2 ** 20
_MORE_SHM = 'give the container more shared memory (docker run --shm-size=2g, or --ipc=host)'


class DeviceNormalize:
    """A deferred ``Normalize`` applied to a ``uint8 [N, C, H, W]`` batch
    tensor where the tensor is: a lookup in
    :func:`paddleseg.transforms.functional.normalize_table`, so each value
    is exactly what the ``uint8`` Normalize of a worker gives. On a GPU (or
    another accelerator) a ``paddle.gather``; on the CPU OpenCV's lookup
    (about 4 times faster there than paddle's gather).

    Args:
        mean, std (sequence): The Normalize's (1 value or 1 per channel).
    """

    def __init__(self, mean, std):
        self.mean, self.std = tuple(mean), tuple(std)
        self._tables = {}  # (channels, place) -> flat [C * 256] float32 tensor

    def _table(self, channels, place):
        key = (channels, str(place))
        if key not in self._tables:
            table = F.normalize_table(self.mean, self.std, channels).T.reshape(-1)
            self._tables[key] = paddle.to_tensor(table, place=place)
        return self._tables[key]

    def _on_host(self, img):
        x = img.numpy()
        n, channels, h, w = x.shape
        table = F.normalize_table(self.mean, self.std, channels)
        out = np.empty(x.shape, np.float32)
        for c in range(channels):
            plane = np.ascontiguousarray(x[:, c]).reshape(n * h, w)
            out[:, c] = cv2.LUT(plane, np.ascontiguousarray(table[:, c])).reshape(n, h, w)
        return paddle.to_tensor(out, place=img.place)

    def _gathered(self, img):
        channels = img.shape[1]
        table = self._table(channels, img.place)
        offsets = paddle.arange(channels, dtype='int32').reshape([1, channels, 1, 1]) * 256
        index = img.astype('int32') + offsets
        return paddle.gather(table, index.reshape([-1])).reshape(img.shape)

    def __call__(self, img):
        """``float32 [N, C, H, W]`` from ``uint8 [N, C, H, W]``."""
        return self._on_host(img) if img.place.is_cpu_place() else self._gathered(img)


def compact_dataset(dataset):
    """``(dataset to load, DeviceNormalize or None)``: the dataset's compact
    view and its deferred Normalize when it has one, else the dataset as
    it is and None."""
    view = getattr(dataset, 'compact_view', None)
    split = view() if view is not None else None
    if split is None:
        return dataset, None
    compact, normalize = split
    return compact, DeviceNormalize(normalize.mean, normalize.std)


def to_device_batch(batch, normalize):
    """The batch the training step takes: ``img`` normalised by
    ``normalize`` (a :class:`DeviceNormalize`, or None: the workers did it).
    A batch that reports a load error passes as it is."""
    if normalize is None or LOAD_ERROR in batch:
        return batch
    batch = dict(batch)
    batch['img'] = normalize(batch['img'])
    return batch


def sample_nbytes(sample):
    """Bytes of the arrays in a dataset item (a dict), as collation stacks them."""
    return sum(v.nbytes for v in sample.values() if isinstance(v, np.ndarray))


def probe_sample_nbytes(dataset, seed):
    """Bytes of one item of ``dataset`` (item 0 loaded here, with the
    augmentation seed ``seed``; the ``random`` and ``numpy.random`` states
    are put back), or None when it cannot be loaded (the loop reports that)."""
    states = random.getstate(), np.random.get_state()
    try:
        sample = SeededDataset(dataset)[(0, seed)]
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    if isinstance(sample, LoadFailure) or not isinstance(sample, dict):
        return None
    return sample_nbytes(sample)


def batches_in_flight(num_workers, prefetch_factor=PREFETCH_FACTOR):
    """Batches one training process holds in shared memory at most: each
    worker's ``prefetch_factor``, and two the reader passes on."""
    return prefetch_factor * num_workers + 2 if num_workers > 0 else 0


def shm_needed(batch_bytes, num_workers, processes=1, prefetch_factor=PREFETCH_FACTOR):
    """Shared memory ``processes`` training processes on a machine need."""
    return batch_bytes * batches_in_flight(num_workers, prefetch_factor) * processes


def shm_free(path=SHM_PATH, statvfs=None):
    """Free bytes of the filesystem at ``path`` (``statvfs``, default
    ``os.statvfs``), None when it does not exist."""
    try:
        st = (statvfs or os.statvfs)(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def shm_shortage(batch_bytes, num_workers, processes=1, path=SHM_PATH,
                 statvfs=None, prefetch_factor=PREFETCH_FACTOR):
    """One line saying that ``path`` is too small for the loader and what
    to do, or None when it has room (or no workers, or no such path)."""
    needed = shm_needed(batch_bytes, num_workers, processes, prefetch_factor)
    free = shm_free(path, statvfs)
    if not needed or free is None or needed <= free:
        return None
    per_worker = batch_bytes * prefetch_factor * processes
    fit = max(0, int((free - 2 * batch_bytes * processes) // per_worker)) if per_worker else 0
    return ('{} has {:.0f} MB free but the training data loader needs about {:.0f} MB '
            '({} process{} x {} batches of {:.1f} MB in flight with --num_workers {}): '
            'pass --num_workers {}{}, or {}'.format(
                path, free / _MB, needed / _MB, processes, 'es' if processes > 1 else '',
                batches_in_flight(num_workers, prefetch_factor), batch_bytes / _MB,
                num_workers, fit, ' or fewer' if fit else '', _MORE_SHM))


_LOADER_DIED = ('Blocking queue is killed', 'exited unexpectedly', 'is killed by signal',
                'BUS error', 'Bus error')
"""What paddle says when a loader worker died (a bus error when ``/dev/shm``
ran full, the OOM killer) or its reader thread failed: in the reader, or
from paddle's SIGCHLD handler wherever the training process happens to be."""


def worker_death_message(exc, path=SHM_PATH, statvfs=None):
    """For paddle's error when a training loader worker died or failed: one
    line saying so, with the free shared memory and the fix; None for
    other errors."""
    text = str(exc).strip()
    if not any(mark in text for mark in _LOADER_DIED):
        return None
    free = shm_free(path, statvfs)
    room = '' if free is None else '{} has {:.0f} MB free now'.format(path, free / _MB)
    fix = 'pass fewer --num_workers or ' + _MORE_SHM
    if 'bus error' in text.lower():
        return ('the training data loader stopped: a worker died of a bus error, shared '
                'memory ran out ({}): {}'.format(room or path, fix))
    return ('the training data loader stopped: {}. If a worker died of a "BUS error" '
            '(shared memory ran out{}), {}; otherwise see the error printed above'.format(
                first_line(exc).rstrip('.'), '; ' + room if room else '', fix))


def loader_failure(exc):
    """``exc`` (a RuntimeError or SystemError raised while training) as a
    :class:`~paddleseg.errors.ConfigError` with :func:`worker_death_message`'s
    line when it reports a dead loader worker, else None."""
    message = worker_death_message(exc)
    return None if message is None else ConfigError(message)


def build_train_loader(dataset, batch_size, num_workers, state, processes=1, agree=None):
    """The training ``paddle.io.DataLoader`` and its :class:`DeviceNormalize`
    (None when the workers normalise).

    Args:
        dataset: The training dataset.
        batch_size (int): Per process.
        num_workers (int): Worker processes (0: load in this process).
        state (TrainState): ``seed``, ``rank``, ``nranks``, ``start_iter``.
        processes (int, optional): Training processes on this machine
            (they share ``/dev/shm``). Default: 1.
        agree (callable, optional): Maps this process's "shared memory is
            short" flag to the ranks' verdict (``dist.max_over_ranks``), so
            that every rank stops or none. Default: this process's own.

    Raises:
        ConfigError: ``/dev/shm`` is too small (:func:`shm_shortage`).
    """
    dataset, normalize = compact_dataset(dataset)
    sampler = ResumableBatchSampler(
        len(dataset), batch_size, state.seed, state.rank,
        state.nranks, shuffle=True, start_iter=state.start_iter)
    shortage = None
    if num_workers > 0:
        nbytes = probe_sample_nbytes(dataset, state.seed)
        if nbytes:
            shortage = shm_shortage(nbytes * batch_size, num_workers, processes)
    short = agree([shortage is not None])[0] if agree is not None else shortage is not None
    if short:
        raise ConfigError(shortage or 'another training process of the job found '
                          '{} too small for its data loader (see its log)'.format(SHM_PATH))
    loader = paddle.io.DataLoader(
        SeededDataset(dataset), batch_sampler=sampler,
        num_workers=num_workers, return_list=True,
        collate_fn=collate_batch, worker_init_fn=worker_init,
        prefetch_factor=PREFETCH_FACTOR, persistent_workers=num_workers > 0)
    return loader, normalize


def endless_batches(loader):
    """The loader's batches, epoch after epoch (with persistent workers, the
    same worker processes every epoch); closing it shuts the loader
    iterator (and its workers) down. A persistent loader whose workers died
    raises at the next epoch (paddle's would wait for them for ever)."""
    batches = None
    try:
        while True:
            _check_workers(batches)
            batches = iter(loader)
            yield from batches
    finally:
        shutdown = getattr(batches, '_try_shutdown_all', None)
        if shutdown is not None:
            shutdown()


def _check_workers(batches):
    """Raise if the worker processes of ``batches`` (a loader iterator, or
    None) are not all alive."""
    dead = [w.pid for w in getattr(batches, '_workers', None) or () if not w.is_alive()]
    if dead:
        raise RuntimeError('DataLoader worker processes exited unexpectedly (pids {}) '
                           'before the next epoch'.format(', '.join(map(str, dead))))
