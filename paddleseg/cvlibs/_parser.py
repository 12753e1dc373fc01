"""Read a YAML config with its ``_base_`` files, and apply overrides: the
reading half of :class:`paddleseg.cvlibs.Config` (private; use ``Config``).

Inheritance:

* ``_base_: path`` or ``_base_: [path, ...]`` at the top of a file names
  the files it extends, relative to the file itself. Bases are loaded
  recursively and merged in order (a later base overrides an earlier one),
  then the file overrides the result. Mappings merge key by key; any other
  value (lists included) replaces the inherited one.
* ``_inherited_: false`` inside a mapping makes that mapping replace the one
  inherited from the file's bases instead of merging with it. The marker is
  removed from the result (``_inherited_: true`` is allowed and does
  nothing).

Overrides, applied by the caller after loading:

* :func:`apply_cli_args`: ``--iters``, ``--batch_size``, ``--learning_rate``.
* :func:`apply_opts`: ``--opts key.path=value ...``.

Errors are :class:`~paddleseg.errors.ConfigError`, one line each::

    <file>: <dotted.key>: <what is wrong>[ (included from <top> -> ...)]
    <file>: line <n>: invalid YAML: <problem>
    <source>: <dotted.key>: <what is wrong>        (overrides; source is
                                                    e.g. '--opts')
"""

import os

import yaml

from paddleseg.cvlibs._keys import join_key, resolve_component, split_key
from paddleseg.cvlibs.schema import (LEGACY_LR_MESSAGE, SECTIONS,
                                     accepted_args, did_you_mean)
from paddleseg.errors import ConfigError

__all__ = ['BASE_KEY', 'INHERIT_KEY', 'load_config',
           'load_config_with_sources', 'apply_opts', 'apply_cli_args']

BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'

_MISSING = object()


# ------------------------------------------------------------------ loading

def _fail(path, key, message, includers):
    """A ConfigError about ``key`` in file ``path``; ``includers`` are the
    files whose ``_base_`` led to it, top config first."""
    via = (' (included from {})'.format(' -> '.join(includers))
           if includers else '')
    return ConfigError('{}: {}: {}{}'.format(path, key, message, via))


def _read_yaml(path, includers):
    """Parse one file, which must hold a mapping."""
    try:
        with open(path, encoding='utf-8') as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = 'line {}'.format(mark.line + 1) if mark else 'top level'
        problem = getattr(exc, 'problem', None) or str(exc)
        raise _fail(path, where, 'invalid YAML: {}'.format(problem),
                    includers) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, 'top level', 'cannot read the file: {}'.format(exc),
                    includers) from None
    if not isinstance(data, dict):
        raise _fail(path, 'top level', 'must be a mapping of config keys, got '
                    '{}'.format('an empty file' if data is None
                                else type(data).__name__), includers)
    return data


def _base_paths(value, path, includers):
    """The ``_base_`` entries of file ``path``, resolved against its folder."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(
            isinstance(item, str) for item in items):
        raise _fail(path, BASE_KEY, 'must be a path or a list of paths, got '
                    '{!r}'.format(value), includers)
    folder = os.path.dirname(path)
    return [os.path.normpath(os.path.join(folder, item)) for item in items]


def _check_base(base, path, includers):
    """``base`` (named by ``path``'s ``_base_``) exists and closes no cycle."""
    chain = includers + [path]
    real = [os.path.realpath(item) for item in chain]
    if os.path.realpath(base) in real:
        cycle = chain[real.index(os.path.realpath(base)):] + [base]
        raise _fail(path, BASE_KEY, 'inheritance cycle: {}'.format(
            ' -> '.join(cycle)), includers)
    if not os.path.isfile(base):
        raise _fail(path, BASE_KEY, 'file not found: {}'.format(base),
                    includers)


def _merge(base, child, parts, path, includers):
    """``child`` laid over ``base`` (``_MISSING`` when there is none).

    Mappings merge recursively unless the child's has ``_inherited_:
    false``; markers are removed at every depth, also inside lists.
    """
    if isinstance(child, list):
        return [_merge(_MISSING, item, parts + (index,), path, includers)
                for index, item in enumerate(child)]
    if not isinstance(child, dict):
        return child
    inherit = child.get(INHERIT_KEY, True)
    if not isinstance(inherit, bool):
        raise _fail(path, join_key(parts + (INHERIT_KEY,)), 'must be true or '
                    'false, got {!r}'.format(inherit), includers)
    merged = dict(base) if inherit and isinstance(base, dict) else {}
    for key, value in child.items():
        if key != INHERIT_KEY:
            merged[key] = _merge(merged.get(key, _MISSING), value,
                                 parts + (key,), path, includers)
    return merged


def _record(value, parts, path, sources):
    """Note ``path`` as the origin of ``value`` and of the keys inside it."""
    if parts:
        sources[join_key(parts)] = path
    if isinstance(value, dict):
        for key, item in value.items():
            if key != INHERIT_KEY:
                _record(item, parts + (key,), path, sources)


def _load(path, includers, sources):
    """Load ``path`` merged with its bases; fill ``sources``."""
    data = _read_yaml(path, includers)
    merged = {}
    for base in _base_paths(data.pop(BASE_KEY, None), path, includers):
        _check_base(base, path, includers)
        merged = _merge(merged, _load(base, includers + [path], sources),
                        (), base, includers + [path])
    _record(data, (), path, sources)
    return _merge(merged, data, (), path, includers)


def load_config_with_sources(path):
    """Load a config file and its ``_base_`` files (see the module doc).

    Returns:
        tuple: ``(cfg, sources)``: the merged dict, and a dict mapping dotted
        keys (``'model.backbone.type'``; lists count as one value) to the
        file that set them.

    Raises:
        ConfigError: the file or a base is missing or unreadable, is not
            valid YAML (the message gives the line), does not hold a mapping,
            or ``_base_`` files form a cycle (the message lists it).
    """
    path = os.path.normpath(path)
    if not os.path.isfile(path):
        raise ConfigError('{}: config file not found'.format(path))
    sources = {}
    return _load(path, [], sources), sources


def load_config(path):
    """The merged config dict of ``path``; see
    :func:`load_config_with_sources`."""
    return load_config_with_sources(path)[0]


# ---------------------------------------------------------------- overrides

def _set_source(sources, key, source):
    """Record ``source`` for ``key``, forgetting the origins inside it."""
    if sources is None:
        return
    for name in [name for name in sources if name.startswith(key + '.')]:
        del sources[name]
    sources[key] = source


def _parse_opt(item, source):
    """``'a.b.0=[1, 2]'`` -> ``(['a', 'b', '0'], [1, 2])``."""
    if not isinstance(item, str) or '=' not in item:
        raise ConfigError('{}: {}: expected key=value, e.g. '
                          'model.backbone.output_stride=16'.format(source, item))
    key, text = item.split('=', 1)
    names = key.strip().split('.')
    if not all(names):
        raise ConfigError('{}: {}: empty key name'.format(source, key))
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError('{}: {}: cannot parse the value {!r}: {}'.format(
            source, key, text, getattr(exc, 'problem', None) or exc)) from None
    return names, value


def _addable_keys(mapping, parts):
    """Keys absent from ``mapping`` (at ``parts``) that may still be set:
    top-level sections, the keys a section such as ``test_config`` holds
    (``schema.Section.accepted_keys``), or the arguments of the component
    its ``type`` names.

    Returns a frozenset, or None when anything is allowed.
    """
    if not parts:
        return frozenset(SECTIONS)
    if 'type' not in mapping:
        section = SECTIONS.get(parts[0]) if len(parts) == 1 else None
        if section is not None and section.kind in ('mapping', 'loss'):
            return section.accepted_keys()
        return frozenset()
    try:
        return accepted_args(resolve_component(mapping['type'], parts))
    except ConfigError:  # a bad type is the checker's to report
        return frozenset()


def _missing_key(mapping, name, parts, source, is_last):
    """The error for setting ``name``, absent from ``mapping`` at ``parts``;
    None when it may be added (it is the last name and an argument)."""
    addable = _addable_keys(mapping, parts)
    allowed = addable is None or name in addable
    key = join_key(parts + (name,))
    if allowed and is_last:
        return None
    if allowed:
        return ConfigError('{}: {}: is not in the config, so keys inside it '
                           'cannot be set one by one; give it whole, e.g. '
                           "{}='{{...}}'".format(source, key, key))
    where = 'in {}'.format(join_key(parts)) if parts else 'at the top level'
    return ConfigError('{}: {}: unknown key {!r} {}{}'.format(
        source, key, name, where,
        did_you_mean(name, set(mapping).union(addable))))


def _list_index(items, name, parts, source):
    """``name`` as an index into the list ``items`` at ``parts``."""
    if not isinstance(split_key(name)[0], int) or int(name) >= len(items):
        raise ConfigError('{}: {}: {} is a list of {} items; use an index '
                          'from 0 to {}'.format(
                              source, join_key(parts + (name,)),
                              join_key(parts), len(items), len(items) - 1))
    return int(name)


def _set_value(cfg, names, value, source):
    """Set ``cfg[names[0]][names[1]]... = value``; return the key's parts."""
    container, parts = cfg, ()
    for depth, name in enumerate(names):
        is_last = depth == len(names) - 1
        if isinstance(container, list):
            name = _list_index(container, name, parts, source)
        elif isinstance(container, dict):
            if name not in container:
                error = _missing_key(container, name, parts, source, is_last)
                if error:
                    raise error
        else:
            raise ConfigError('{}: {}: {} is a {}, not a mapping or a '
                              'list'.format(source, join_key(names),
                                            join_key(parts),
                                            type(container).__name__))
        if is_last:
            container[name] = value
        else:
            container, parts = container[name], parts + (name,)
    return parts + (name,)


def apply_opts(cfg, opts, source='--opts', sources=None):
    """Apply ``key.path=value`` overrides to ``cfg`` in place, in order.

    Values are parsed with ``yaml.safe_load`` (``16`` -> int, ``[1,2]`` ->
    list, ``False`` -> bool, ``1.0e-4`` -> float; note ``1e-4`` stays a
    string, as in a YAML file). Numeric parts index lists
    (``train_dataset.transforms.0.crop_size=[256,256]``). A key must exist,
    except a top-level section of ``schema.SECTIONS``, a key that section
    holds (``test_config.is_slide=true`` when there is a ``test_config``),
    or an argument of the component named by the enclosing mapping's
    ``type`` (see ``schema.accepted_args``), e.g.
    ``model.point_num_points=1024``.

    Args:
        cfg (dict): The config, modified in place.
        opts (list[str]): The overrides.
        source (str): Names the overrides in errors and in ``sources``.
            Default ``'--opts'``.
        sources (dict, optional): Origins to update (see
            :func:`load_config_with_sources`).

    Returns:
        dict: ``cfg``.

    Raises:
        ConfigError: ``'<source>: <dotted.key>: <what is wrong>'``: no ``=``,
            an unparsable value, an unknown key (with the closest existing
            key suggested) or a bad list index.
    """
    for item in opts:
        names, value = _parse_opt(item, source)
        parts = _set_value(cfg, names, value, source)
        _set_source(sources, join_key(parts), source)
    return cfg


def apply_cli_args(cfg, iters=None, batch_size=None, learning_rate=None,
                   sources=None):
    """Let the command-line flags override the file, in place.

    ``iters`` and ``batch_size`` set the top-level keys; ``learning_rate``
    sets ``lr_scheduler.learning_rate``. A None argument changes nothing.
    A ``decay_steps`` written in the file is not changed by ``iters``.

    Args:
        sources (dict, optional): Origins to update with ``'--iters'``,
            ``'--batch_size'``, ``'--learning_rate'``.

    Returns:
        dict: ``cfg``.

    Raises:
        ConfigError: ``--learning_rate`` is given but the config has no
            ``lr_scheduler`` mapping, or uses the old ``learning_rate:
            {value, decay}`` form.
    """
    if iters is not None:
        cfg['iters'] = iters
        _set_source(sources, 'iters', '--iters')
    if batch_size is not None:
        cfg['batch_size'] = batch_size
        _set_source(sources, 'batch_size', '--batch_size')
    if learning_rate is not None:
        if 'learning_rate' in cfg:
            raise ConfigError('--learning_rate: learning_rate: ' +
                              LEGACY_LR_MESSAGE)
        if not isinstance(cfg.get('lr_scheduler'), dict):
            raise ConfigError('--learning_rate: lr_scheduler.learning_rate: '
                              'the config has no lr_scheduler mapping to set '
                              'it in')
        cfg['lr_scheduler']['learning_rate'] = learning_rate
        _set_source(sources, 'lr_scheduler.learning_rate', '--learning_rate')
    return cfg
