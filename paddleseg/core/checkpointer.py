"""The training checkpoints of a run, written and read in one place:
:class:`Checkpointer`.

A checkpoint is a folder ``<save_dir>/iter_<N>/`` (written atomically by
:func:`paddleseg.utils.checkpoint.save_checkpoint`) holding

* ``model.pdparams``: the model's state dict (float32, also under O2);
* ``model.pdopt``: the optimizer's state keyed by canonical parameter names,
  which PaddleSeg 2.8 reads too (:func:`paddleseg.core.optim_state.optimizer_state`);
* ``scaler.pdstate``: the fp16 loss scaler's state (fp16 runs only);
* ``meta.json``: ``iter``, ``seed``, ``iters``, ``batch_size``, ``nranks``,
  ``optimizer_params`` (the structured name of each canonical one), the
  state of each hook that has one (``best``: the best-model hook's), and
  ``files``.

It resumes from such a folder, or from one PaddleSeg 2.8 wrote (``iter_<N>/``
with only ``model.pdparams`` and ``model.pdopt``): its optimizer state is
matched to the model's parameters by order
(:func:`paddleseg.core.optim_state.match_by_order`).

Hooks with a state take part: a hook that defines ``state_dict()``
(returning a dict of JSON values) has it merged into ``meta.json`` at every
save, and its ``load_state_dict(meta)`` called with the checkpoint's meta
when the run resumes.
"""

import json
import os

from paddleseg.core import amp
from paddleseg.core.optim_state import load_optimizer_state, optimizer_state, param_names
from paddleseg.errors import CheckpointError
from paddleseg.utils import logger
from paddleseg.utils.checkpoint import (META_FILE, PADDLESEG_FILES, _write_atomically,
                                        find_latest_checkpoint, load_checkpoint,
                                        prune_checkpoints, read_meta, save_checkpoint)


def _update_meta(ckpt_dir, meta):
    """Replace the ``meta.json`` of the complete checkpoint ``ckpt_dir`` by
    ``meta`` (its ``'files'`` kept) atomically: a killed process leaves the
    old or the new file, never a partial one.

    Raises:
        CheckpointError: the file cannot be written; the message names it.
    """
    meta = dict(meta, files=read_meta(ckpt_dir)['files'])
    path = os.path.join(ckpt_dir, META_FILE)

    def write(tmp_path):
        with open(tmp_path, 'w', encoding='utf-8') as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
    try:
        _write_atomically(path, write)
    except OSError as exc:
        raise CheckpointError('Cannot write {}: {}'.format(path, exc)) from exc


class Checkpointer:
    """Saves and resumes the training checkpoints of ``trainer``'s run.

    ``trainer`` is a :class:`~paddleseg.core.trainer.Trainer`: its ``net``
    (the model, not DataParallel), ``optimizer``, ``scaler``, ``precision``,
    ``opts`` (``save_dir``, ``keep_checkpoint_max``, ``iters``,
    ``batch_size``), ``hooks`` and ``state`` (a
    :class:`~paddleseg.core.state.TrainState`, whose ``iteration``,
    ``start_iter``, ``seed`` and ``last_saved`` it updates) are read when
    saving or resuming. Only rank 0 writes.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self._optimizer_state = None
        self._written = None  # (iteration, meta as JSON) of this run's last save

    @property
    def save_dir(self):
        return self.trainer.opts.save_dir

    def latest(self):
        """The newest complete ``iter_N`` folder of ``save_dir``, or None."""
        return find_latest_checkpoint(self.save_dir)

    def _stateful(self):
        return [h for h in self.trainer.hooks if callable(getattr(h, 'state_dict', None))]

    # -- saving --------------------------------------------------------------
    def save(self, it):
        """Save ``iter_<it>`` (rank 0) unless it is on disk already, keep
        the ``keep_checkpoint_max`` newest; return the checkpoint holding
        iteration ``it`` (None on other ranks). Saved again at the same
        iteration (e.g. before and after an evaluation), only its
        ``meta.json`` is rewritten, if the hooks' states changed."""
        t, state = self.trainer, self.trainer.state
        if state.rank != 0:
            return None
        if state.last_saved[0] != it:
            path = os.path.join(self.save_dir, 'iter_{}'.format(it))
            meta = self.meta(it)
            save_checkpoint(self.states(), path, meta=meta)
            prune_checkpoints(self.save_dir, t.opts.keep_checkpoint_max)
            state.last_saved, self._written = (it, path), (it, json.dumps(meta, sort_keys=True))
            logger.info('Saved {}'.format(path))
        elif self._written is not None and self._written[0] == it:
            meta = self.meta(it)
            text = json.dumps(meta, sort_keys=True)
            if text != self._written[1]:
                _update_meta(state.last_saved[1], meta)
                self._written = (it, text)
        return state.last_saved[1]

    def save_weights(self, name, meta):
        """Write the model's weights alone as ``save_dir/<name>``
        (``model.pdparams`` and ``meta.json`` with ``meta``), e.g. ``best_model``."""
        return save_checkpoint({'model.pdparams': self.trainer.net.state_dict()},
                               os.path.join(self.save_dir, name), meta=meta)

    def states(self):
        """The files of a checkpoint: ``{file name: state dict}``."""
        t = self.trainer
        states = {'model.pdparams': t.net.state_dict(),
                  'model.pdopt': optimizer_state(t.optimizer, t.net)}
        if t.precision == 'fp16':
            states['scaler.pdstate'] = amp.scaler_state(t.scaler)
        return states

    def meta(self, it):
        """``meta.json`` of ``iter_<it>``, the hooks' states included."""
        t = self.trainer
        # model.pdopt is keyed by canonical names (PaddleSeg reads it); the
        # structured name of each makes our resume exact in any process
        meta = {'iter': it, 'seed': t.state.seed, 'iters': t.opts.iters,
                'batch_size': t.opts.batch_size, 'nranks': t.state.nranks,
                'optimizer_params': param_names(t.net)}
        for hook in self._stateful():
            own = hook.state_dict()
            clash = sorted(set(own) & (set(meta) | {'files'}))
            if clash:
                raise ValueError('{}.state_dict() uses the checkpoint meta key(s) {}'.format(
                    type(hook).__name__, ', '.join(clash)))
            meta.update(own)
        return meta

    # -- resuming ------------------------------------------------------------
    def resume(self, ckpt_dir):
        """Restore model, iteration, seed and the hooks' states from the
        folder ``ckpt_dir``; return the loss scaler's state (None if it has
        none), which the trainer restores once its scaler exists. The
        optimizer's state (with its lr schedule) follows in
        :meth:`restore_optimizer`, once the optimizer is prepared for the
        run's precision.

        A PaddleSeg 2.8 folder resumes at iteration N + 1 of ``iter_<N>``;
        its random state is unknown, so the run is not bit-exact (one
        warning line).

        Raises:
            CheckpointError: the folder is not a checkpoint, lacks
                ``model.pdparams`` or ``model.pdopt``, or does not fit the model.
        """
        t, state = self.trainer, self.trainer.state
        states, meta = load_checkpoint(ckpt_dir)
        if any(name not in states for name in PADDLESEG_FILES):  # what every one holds
            raise CheckpointError('{} lacks model.pdparams or model.pdopt'.format(ckpt_dir))
        t.net.set_state_dict(states['model.pdparams'])
        self._optimizer_state = dict(state=states['model.pdopt'], weights=states['model.pdparams'],
                                     names=meta.get('optimizer_params'),
                                     source=os.path.join(ckpt_dir, 'model.pdopt'))
        state.start_iter = state.iteration = int(meta['iter'])
        state.last_saved = (state.start_iter, ckpt_dir)
        state.seed = int(meta.get('seed', state.seed))
        for hook in self._stateful():
            hook.load_state_dict(meta)
        if meta.get('format') == 'paddleseg':
            logger.warning('{} is a PaddleSeg checkpoint: its random state is unknown, so '
                           'this run is not bit-exact with one that never stopped'.format(
                               ckpt_dir))
        logger.info('Resumed from {} at iter {}'.format(ckpt_dir, state.start_iter))
        return states.get('scaler.pdstate')

    def restore_optimizer(self):
        """Load the optimizer state of the checkpoint :meth:`resume` read
        into the trainer's optimizer as :func:`paddleseg.core.amp.prepare`
        left it (the names of its state depend on the precision: see
        :mod:`paddleseg.core.optim_state`); nothing when not resuming.

        Raises:
            CheckpointError: the state does not fit the model.
        """
        pending, self._optimizer_state = self._optimizer_state, None
        if pending is not None:
            load_optimizer_state(self.trainer.optimizer, self.trainer.net, **pending)
