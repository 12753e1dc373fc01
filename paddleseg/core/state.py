"""The state of a training run that hooks read and write: :class:`TrainState`.

The :class:`~paddleseg.core.trainer.Trainer` owns the objects (model,
optimizer, loss scaler, options); what changes while it runs, and what one
hook tells another, is here. A hook reads it as ``self.state``.
"""

import dataclasses

import numpy as np


class LossTerms:
    """The loss terms of a training step, one float per loss, kept on the
    device until something reads them: the step does not wait for the
    device to hand them over (the ``[TRAIN]`` line reads a window of them
    at once, in one copy).

    Reads like a list of floats (``len``, iteration, indexing, ``tolist()``,
    ``numpy.asarray``; equal to a list of the same floats); the first read
    copies them to the host, once. ``tensor``: the float32 ``[n]`` tensor on
    the device.
    """

    __hash__ = None

    def __init__(self, tensor):
        self.tensor = tensor
        self._values = None

    def tolist(self):
        if self._values is None:
            self._values = [float(v) for v in np.asarray(self.tensor.numpy()).reshape([-1])]
        return list(self._values)

    def __len__(self):
        return int(self.tensor.shape[0])

    def __iter__(self):
        return iter(self.tolist())

    def __getitem__(self, index):
        return self.tolist()[index]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.tolist(), dtype=dtype or np.float64)

    def __eq__(self, other):
        return self.tolist() == list(other)

    def __repr__(self):
        return 'LossTerms({})'.format(self.tolist())


def _no_best():
    return {'miou': -1.0, 'iter': -1}


@dataclasses.dataclass
class TrainState:
    """What a training run is at, shared by the trainer and its hooks.

    Attributes:
        rank (int): This process's rank. nranks (int): Processes of the run.
        seed (int): The run's seed (every random choice derives from it and
            the iteration; saved in the checkpoints).
        start_iter (int): The iteration the run resumed at (0: from scratch).
        iteration (int): The current iteration, counted from 1; in
            ``after_step`` the one just done.
        best (dict): ``{'miou', 'iter'}`` of the best evaluation so far
            (-1 for none); written by :class:`~paddleseg.core.hooks.BestModelHook`.
        last_saved (tuple): ``(iteration, folder)`` of the newest checkpoint
            (``(None, None)`` before any); written by the
            :class:`~paddleseg.core.checkpointer.Checkpointer`.
        step_info (dict): The last step's outputs: ``terms`` (float per
            loss, a :class:`LossTerms`: read from the device when first
            used), ``skipped``, ``finite_here``, ``reader_cost``,
            ``batch_cost`` (seconds), ``samples``.
        storage (dict): What hooks publish for others (:meth:`publish`):
            ``'eval'`` (the evaluation's metrics), ``'train_log'`` (the
            averages the ``[TRAIN]`` line shows, with ``lr``).
        signals: The run's :class:`~paddleseg.core.stop.StopSignals` (its
            ``signum`` is the stop signal received, or None).
    """

    rank: int = 0
    nranks: int = 1
    seed: int = 0
    start_iter: int = 0
    iteration: int = 0
    best: dict = dataclasses.field(default_factory=_no_best)
    last_saved: tuple = (None, None)
    step_info: dict = dataclasses.field(default_factory=dict)
    storage: dict = dataclasses.field(default_factory=dict)
    signals: object = None

    def publish(self, key, values):
        """``storage[key] = {**values, 'iter': iteration}``."""
        self.storage[key] = dict(values, iter=self.iteration)

    def fresh(self, key):
        """``storage[key]`` if it was published at this iteration, else None."""
        entry = self.storage.get(key)
        return entry if entry is not None and entry.get('iter') == self.iteration else None
