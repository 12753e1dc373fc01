"""Reading weights into models and writing training checkpoints.

A training checkpoint is a folder ``<save_dir>/iter_<N>/`` holding one file per
saved state dict (e.g. ``model.pdparams`` and ``model.pdopt``) and the file
``meta.json``, which is written last and lists those files plus any extra
values such as ``iter``. :func:`save_checkpoint` builds the folder under a
hidden temporary name and renames it into place, and
:func:`prune_checkpoints` renames a folder to a hidden name before deleting
it, so a folder named ``iter_<N>`` is always complete, whenever the process
is killed. The hidden folders a killed process leaves behind are removed by
the next save (or prune) in the same folder.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import warnings

import numpy as np
import paddle
import safetensors.paddle

from paddleseg.errors import CheckpointError, first_line
from paddleseg.utils import logger
from paddleseg.utils.download import fetch_pretrained

META_FILE = 'meta.json'
_ITER_DIR = re.compile(r'iter_(\d+)')
# what interrupted saves and prunes of iter_N folders leave behind
_ITER_LEFTOVER = re.compile(r'\.iter_\d+\.(new-.*|deleted)')
_SHOWN_KEYS = 5


@dataclasses.dataclass
class LoadResult:
    """What loading a weights file into a model did.

    Attributes:
        source: the URL or path the weights came from.
        loaded: how many tensors were copied into the model.
        total: how many tensors the model's state dict has.
        missing: model keys absent from the file.
        unexpected: file keys the model does not have.
        mismatched: ``(key, file shape, model shape)`` for keys present in
            both whose shapes differ; these are not loaded.
    """

    source: str
    loaded: int
    total: int
    missing: list
    unexpected: list
    mismatched: list

    @property
    def complete(self):
        """True when every key matched in both directions with equal shapes."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self):
        """Describe the missing, unexpected and mismatched keys in one line."""
        mismatches = [f'{key} (checkpoint {list(ckpt)} vs model {list(own)})'
                      for key, ckpt, own in self.mismatched]
        return '; '.join([
            _count_and_list(self.missing, 'missing'),
            _count_and_list(self.unexpected, 'unexpected'),
            _count_and_list(mismatches, 'shape mismatches'),
        ])

    def summary(self, model_name):
        """Return ``'Loaded L/T tensors into <model_name> from <source>; ...'``."""
        return (f'Loaded {self.loaded}/{self.total} tensors into {model_name} '
                f'from {self.source}; {self.problems()}')


def _count_and_list(items, label):
    """Return ``'<n> <label>'`` followed by the first few items."""
    text = f'{len(items)} {label}'
    if not items:
        return text
    shown = ', '.join(str(item) for item in items[:_SHOWN_KEYS])
    more = ', ...' if len(items) > _SHOWN_KEYS else ''
    return f'{text}: {shown}{more}'


def _read(path):
    """Return what ``path`` holds: safetensors by suffix, else ``paddle.load``."""
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint file not found: {path}')
    try:
        if str(path).endswith('.safetensors'):
            return safetensors.paddle.load_file(path)
        return paddle.load(path)
    except Exception as exc:  # both loaders raise many unrelated types
        raise CheckpointError(f'Cannot read checkpoint {path} (truncated, corrupt or not '
                              f'a weights file): {first_line(exc)}') from exc


def load_state_file(path):
    """Return the ``{name: tensor}`` dict stored in ``path``.

    ``.safetensors`` files are read with the safetensors package, anything
    else (normally ``.pdparams``) with ``paddle.load``.

    Raises:
        CheckpointError: the file is missing, unreadable, or does not hold a
            dict of tensors; the message names the file.
    """
    state = _read(path)
    if not isinstance(state, dict):
        raise CheckpointError(
            f'{path} holds a {type(state).__name__}, not a dict of tensors')
    for key, value in state.items():
        if not isinstance(value, (paddle.Tensor, np.ndarray)):
            raise CheckpointError(
                f'{path} is not a dict of tensors: {key!r} is a {type(value).__name__}')
    return state


def _match(model, state, source):
    """Split ``state`` against ``model``; return the loadable dict and a LoadResult."""
    own = model.state_dict()
    to_load, missing, mismatched = {}, [], []
    for key, param in own.items():
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(param.shape):
            mismatched.append((key, tuple(state[key].shape), tuple(param.shape)))
        else:
            to_load[key] = cast_to(state[key], param.dtype)
    unexpected = [key for key in state if key not in own]
    result = LoadResult(str(source), len(to_load), len(own), missing, unexpected, mismatched)
    return to_load, result


def cast_to(value, dtype):
    """``value`` (Tensor or numpy array, kept so) cast to the paddle ``dtype``."""
    if isinstance(value, paddle.Tensor):
        return value if value.dtype == dtype else value.astype(dtype)
    wanted = str(dtype).split('.')[-1].lower()  # paddle.float16 -> 'float16'
    return value if str(value.dtype) == wanted else value.astype(wanted)


def _set_state(model, to_load):
    """Copy ``to_load`` into ``model`` without paddle's per-key skip warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Skip loading for')
        model.set_state_dict(to_load)


def load_pretrained_model(model, pretrained):
    """Copy the tensors of ``pretrained`` whose key and shape match into ``model``.

    ``pretrained`` is a local file or a URL (see
    :func:`paddleseg.utils.download.fetch_pretrained`). Everything else is
    skipped and reported: one summary line is logged (INFO when every key
    matched, WARNING otherwise) and the :class:`LoadResult` is returned.

    Raises:
        CheckpointError: the weights cannot be fetched or read.
    """
    state = load_state_file(fetch_pretrained(pretrained))
    to_load, result = _match(model, state, pretrained)
    _set_state(model, to_load)
    log = logger.info if result.complete else logger.warning
    log(result.summary(type(model).__name__))
    return result


def load_entire_model(model, path, strict=True):
    """Load the weights file ``path`` (a trained model) into ``model``.

    With ``strict=True`` (the default) any missing key, unexpected key or
    shape mismatch raises before anything is copied; with ``strict=False``
    this behaves like :func:`load_pretrained_model`. Returns the LoadResult.

    Raises:
        CheckpointError: ``'<path> does not fit <Model>: <n> missing: a, b;
            <n> unexpected: ...; <n> shape mismatches: ...'`` or a read error.
    """
    state = load_state_file(fetch_pretrained(path))
    to_load, result = _match(model, state, path)
    name = type(model).__name__
    if strict and not result.complete:
        raise CheckpointError(f'{path} does not fit {name}: {result.problems()}')
    _set_state(model, to_load)
    log = logger.info if result.complete else logger.warning
    log(result.summary(name))
    return result


def save_checkpoint(state_dicts, dest_dir, meta=None):
    """Write a checkpoint folder ``dest_dir`` atomically and return its path.

    ``state_dicts`` maps file names (e.g. ``'model.pdparams'``,
    ``'model.pdopt'``) to the objects to ``paddle.save``. ``meta`` (default
    None) is a dict of JSON values, e.g. ``{'iter': 1000}``, stored in
    ``meta.json`` together with ``'files'``, the sorted file names.

    Everything is written to a hidden folder next to ``dest_dir`` and renamed
    into place. An existing ``dest_dir`` is first renamed away and deleted
    only after the new one is in place, so a killed process leaves either the
    old or the new complete checkpoint (possibly plus a hidden leftover,
    which the next save of ``dest_dir`` removes: see
    :func:`_tidy_leftovers`).

    Raises:
        CheckpointError: the folder cannot be written (no space, no
            permission); the message names it. What was there stays.
    """
    for name in state_dicts:
        if not name or name == META_FILE or os.path.basename(name) != name:
            raise ValueError(f'Checkpoint file name must be a plain file name, got {name!r}')
    dest_dir = os.path.abspath(dest_dir)
    parent, base = os.path.split(dest_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        _tidy_leftovers(dest_dir)
        tmp_dir = tempfile.mkdtemp(dir=parent, prefix=f'.{base}.new-')
    except OSError as exc:
        raise CheckpointError(f'Cannot write checkpoint {dest_dir}: {exc}') from exc
    try:
        _write_files(state_dicts, dict(meta or {}), tmp_dir)
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f'Cannot write checkpoint {dest_dir}: {exc}') from exc
        raise
    _swap_in(tmp_dir, dest_dir)
    return dest_dir


def _tidy_leftovers(dest_dir):
    """Clean up after a killed :func:`save_checkpoint` of ``dest_dir``.

    Its hidden ``.<name>.new-*`` folders are deleted, except in one case: a
    save killed between the two renames of :func:`_swap_in` leaves no
    ``dest_dir`` but a complete new folder, which is renamed into place
    first (the newest, if several).
    """
    parent, base = os.path.split(dest_dir)
    prefix = f'.{base}.new-'
    leftovers = [entry.path for entry in os.scandir(parent)
                 if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False)]
    if not os.path.exists(dest_dir):
        complete = [path for path in leftovers if not path.endswith('.old')
                    and os.path.isfile(os.path.join(path, META_FILE))]
        if complete:
            newest = max(complete, key=lambda p: os.path.getmtime(os.path.join(p, META_FILE)))
            os.rename(newest, dest_dir)
            leftovers.remove(newest)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _write_files(state_dicts, meta, folder):
    """Save every state dict into ``folder``, then ``meta.json`` last."""
    for name, state in state_dicts.items():
        path = os.path.join(folder, name)
        with warnings.catch_warnings():  # e.g. the empty state of a plain SGD
            warnings.filterwarnings('ignore', message='The input state dict is empty')
            paddle.save(state, path)
        _fsync(path)
    meta['files'] = sorted(state_dicts)
    meta_path = os.path.join(folder, META_FILE)
    with open(meta_path, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    _fsync(meta_path)


def _fsync(path):
    """Flush the file ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(new_dir, dest_dir):
    """Rename ``new_dir`` to ``dest_dir``, replacing an existing one safely."""
    if not os.path.exists(dest_dir):
        os.rename(new_dir, dest_dir)
        return
    old_dir = new_dir + '.old'
    os.rename(dest_dir, old_dir)
    os.rename(new_dir, dest_dir)
    shutil.rmtree(old_dir)


PADDLESEG_FILES = ('model.pdopt', 'model.pdparams')
"""What PaddleSeg 2.8's training loop writes in ``iter_<N>/``."""


def paddleseg_meta(ckpt_dir):
    """The meta of a checkpoint folder written by PaddleSeg 2.8, or None.

    PaddleSeg writes ``iter_<N>/model.pdparams`` and ``model.pdopt`` and
    nothing else; its iteration is the folder's name. Returns ``{'iter': N,
    'files': [...], 'format': 'paddleseg'}`` for such a folder (one without
    ``meta.json``), else None.
    """
    match = _ITER_DIR.fullmatch(os.path.basename(os.path.normpath(ckpt_dir)))
    if (match is None or os.path.exists(os.path.join(ckpt_dir, META_FILE))
            or not all(os.path.isfile(os.path.join(ckpt_dir, f)) for f in PADDLESEG_FILES)):
        return None
    return {'iter': int(match.group(1)), 'files': list(PADDLESEG_FILES), 'format': 'paddleseg'}


def read_meta(ckpt_dir):
    """Return the dict in ``<ckpt_dir>/meta.json``, or for a folder PaddleSeg
    2.8 wrote (no ``meta.json``) the one :func:`paddleseg_meta` makes.

    Raises:
        CheckpointError: the file is missing (and the folder is not
            PaddleSeg's) or not valid JSON.
    """
    path = os.path.join(ckpt_dir, META_FILE)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        meta = paddleseg_meta(ckpt_dir) if isinstance(exc, FileNotFoundError) else None
        if meta is not None:
            return meta
        raise CheckpointError(
            f'{ckpt_dir} is not a complete checkpoint: cannot read {META_FILE} ({exc}); '
            f'nor is it a PaddleSeg checkpoint (iter_<N>/ with '
            f'{" and ".join(PADDLESEG_FILES)})') from exc


def load_checkpoint(ckpt_dir):
    """Return ``(state_dicts, meta)`` of a folder written by :func:`save_checkpoint`
    (or by PaddleSeg 2.8: see :func:`read_meta`).

    ``state_dicts`` maps each file name listed in ``meta['files']`` to what
    ``paddle.load`` returns for it.

    Raises:
        CheckpointError: ``meta.json`` or a listed file is missing or unreadable.
    """
    meta = read_meta(ckpt_dir)
    states = {name: _read(os.path.join(ckpt_dir, name)) for name in meta.get('files', [])}
    return states, meta


def _complete_iter_dirs(save_dir):
    """Return ``[(N, path)]`` of the ``iter_N`` folders with a meta file, by N."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for entry in os.scandir(save_dir):
        match = _ITER_DIR.fullmatch(entry.name)
        if match and os.path.isfile(os.path.join(entry.path, META_FILE)):
            found.append((int(match.group(1)), entry.path))
    return sorted(found)


def find_latest_checkpoint(save_dir):
    """Return the complete ``iter_N`` folder of ``save_dir`` with the largest N.

    Folders without ``meta.json`` are skipped. Returns None when there is none
    (including when ``save_dir`` does not exist).
    """
    found = _complete_iter_dirs(save_dir)
    return found[-1][1] if found else None


def prune_checkpoints(save_dir, keep_max):
    """Delete all but the ``keep_max`` newest complete ``iter_N`` folders.

    Each folder is renamed to a hidden ``.iter_N.deleted`` first, so a
    deletion cut short never leaves a half-deleted ``iter_N``. Hidden
    leftovers of killed saves and prunes of ``iter_N`` folders
    (``.iter_N.new-*``, ``.iter_N.deleted``) are deleted too. Other entries
    (``best_model``, incomplete folders) are kept. Returns the paths removed,
    oldest first (leftovers not included).
    """
    if keep_max < 1:
        raise ValueError(f'keep_max must be at least 1, got {keep_max}')
    doomed = [path for _, path in _complete_iter_dirs(save_dir)[:-keep_max]]
    for path in doomed:
        parent, base = os.path.split(path)
        hidden = os.path.join(parent, f'.{base}.deleted')
        shutil.rmtree(hidden, ignore_errors=True)
        os.rename(path, hidden)
        shutil.rmtree(hidden)
    if os.path.isdir(save_dir):
        for entry in os.scandir(save_dir):
            if _ITER_LEFTOVER.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
    return doomed


def _write_atomically(path, write):
    """Call ``write(tmp_path)`` and rename the result to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.')
    os.close(fd)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


def save_safetensors(state_dict, path):
    """Write the ``{name: tensor or ndarray}`` dict to the safetensors file ``path``.

    The file appears atomically (written under a temporary name first).
    """
    tensors = {key: paddle.to_tensor(value) if isinstance(value, np.ndarray) else value
               for key, value in state_dict.items()}
    _write_atomically(path, lambda tmp: safetensors.paddle.save_file(tensors, tmp))
    return path


def convert(src, dst):
    """Convert the weights file ``src`` to ``dst``; the suffixes pick the formats.

    One of them must end in ``.pdparams`` and the other in ``.safetensors``.
    Returns ``dst``.

    Raises:
        CheckpointError: other suffixes, or ``src`` is missing or unreadable.
    """
    kinds = (_weights_kind(src), _weights_kind(dst))
    if set(kinds) != {'.pdparams', '.safetensors'}:
        raise CheckpointError(
            f'Cannot convert {src} to {dst}: expected one .pdparams and one .safetensors file')
    state = load_state_file(src)
    if kinds[1] == '.safetensors':
        return save_safetensors(state, dst)
    _write_atomically(dst, lambda tmp: paddle.save(state, tmp))
    return dst


def _weights_kind(path):
    """Return the suffix ``.pdparams`` or ``.safetensors`` of ``path``, else None."""
    suffix = os.path.splitext(str(path))[1]
    return suffix if suffix in ('.pdparams', '.safetensors') else None
