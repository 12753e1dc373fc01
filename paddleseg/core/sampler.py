"""A batch sampler whose order and augmentation seeds depend only on the
iteration, so that a resumed run sees exactly the batches an uninterrupted
one would have seen; and the dataset wrapper, collate function and worker
initialisation that go with it in the training loader.

A sample that cannot be loaded (unreadable image, label of the wrong size or
with bad values: a :class:`~paddleseg.errors.SegError`) does not raise inside
the loader: its batch comes out as ``{'load_error': message}``, so that the
training loop decides, in the main process and on every rank together, how
to stop (see ``paddleseg.core.train``).
"""

import random
import signal
import traceback

import numpy as np
from paddle.io.dataloader.collate import default_collate_fn

from paddleseg.core.stop import worker_signal
from paddleseg.errors import DatasetError, SegError
from paddleseg.utils.dist import derive_seed

LOAD_ERROR = 'load_error'
LOAD_TRACEBACK = 'load_traceback'


class ResumableBatchSampler:
    """Shuffled, sharded batches of ``(index, sample seed)`` pairs.

    Epoch ``e`` is a permutation drawn from ``(seed, e)``; rank ``r`` of
    ``nranks`` takes every ``nranks``-th batch-sized slice, so ranks see
    disjoint data. Each sample carries its own seed, derived from
    ``(seed, e, position)`` (:func:`paddleseg.utils.dist.derive_seed`):
    :class:`SeededDataset` seeds the augmentation RNGs
    with it, whatever worker process loads the sample.

    Args:
        num_samples (int): Dataset length.
        batch_size (int): Samples per batch on this rank.
        seed (int): Base seed.
        rank (int, optional): This process's rank. Default: 0.
        nranks (int, optional): Number of processes. Default: 1.
        shuffle (bool, optional): Permute each epoch. Default: True.
        start_iter (int, optional): Batches already consumed (resume). Default: 0.

    Iterating yields one epoch from the current position; ``len`` is the
    number of batches of a full epoch (incomplete batches are dropped).
    """

    def __init__(self, num_samples, batch_size, seed, rank=0, nranks=1,
                 shuffle=True, start_iter=0):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.nranks = nranks
        self.shuffle = shuffle
        self.position = start_iter
        if len(self) == 0:
            raise DatasetError(
                'the dataset has {} samples, fewer than one batch of {} on each '
                'of {} processes'.format(num_samples, batch_size, nranks))

    def __len__(self):
        return self.num_samples // (self.batch_size * self.nranks)

    def _epoch_order(self, epoch):
        order = np.arange(self.num_samples)
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        return order

    def __iter__(self):
        per_epoch = len(self)
        epoch, offset = divmod(self.position, per_epoch)
        order = self._epoch_order(epoch)
        span = self.batch_size * self.nranks
        for b in range(offset, per_epoch):
            start = b * span + self.rank * self.batch_size
            batch = order[start:start + self.batch_size]
            seeds = [derive_seed(self.seed, epoch, b * span + self.rank *
                                 self.batch_size + i) for i in range(len(batch))]
            self.position += 1
            yield [(int(i), s) for i, s in zip(batch, seeds)]


class SeededDataset:
    """Wraps a dataset so that ``ds[(index, seed)]`` seeds ``random`` and
    ``numpy.random`` with ``seed`` before loading ``index``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.dataset[index]
        except SegError as exc:
            return LoadFailure(str(exc), traceback.format_exc())


class LoadFailure:
    """Stands for a sample that could not be loaded; ``message`` says why,
    ``where`` is the traceback (shown by ``--debug``)."""

    def __init__(self, message, where=''):
        self.message = message
        self.where = where


def collate_batch(samples):
    """paddle's default collation, or ``{'load_error': message, 'failed':
    array}`` when a sample of the batch is a :class:`LoadFailure` (the loader
    needs at least one array in a batch: without one, it takes the batch
    for the end of the data)."""
    for sample in samples:
        if isinstance(sample, LoadFailure):
            return {LOAD_ERROR: sample.message, LOAD_TRACEBACK: sample.where,
                    'failed': np.ones([1], np.int32)}
    return default_collate_fn(samples)


def worker_init(worker_id):
    """Signals in a DataLoader worker: SIGINT ignored, SIGTERM ends it
    quietly (:func:`paddleseg.core.stop.worker_signal`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, worker_signal)
