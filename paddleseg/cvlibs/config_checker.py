"""Check a merged config dict before anything is built.

:func:`check_config` stops at the first problem and raises
:class:`~paddleseg.errors.ConfigError` with a one-line message::

    <path>: <dotted.key>: <what is wrong>[ (from <file or --opts>)]

The ``(from ...)`` part appears when the key was set somewhere other than
``<path>`` itself (a ``_base_`` file, ``--opts``, ``--iters``), as recorded
by :func:`paddleseg.cvlibs.config_parser.load_config_with_sources`.
"""

import difflib
import numbers
import os
import re

from paddleseg.cvlibs.config_builder import (BUILDER_ARGS, accepted_args,
                                             dataset_num_classes, join_key,
                                             registry_for, resolve_component)
from paddleseg.errors import ConfigError

__all__ = ['KNOWN_TOP_LEVEL_KEYS', 'TRAINING_KEYS', 'LEGACY_LR_MESSAGE',
           'did_you_mean', 'check_config']

KNOWN_TOP_LEVEL_KEYS = ('batch_size', 'iters', 'train_dataset', 'val_dataset',
                        'test_config', 'model', 'loss', 'optimizer',
                        'lr_scheduler', 'export')
"""Every top-level key a config may have."""

TRAINING_KEYS = ('model', 'train_dataset', 'loss', 'optimizer',
                 'lr_scheduler', 'iters', 'batch_size')
"""Top-level keys training needs; evaluation and prediction need only
``model``."""

LEGACY_LR_MESSAGE = (
    "the old 'learning_rate: {value: ..., decay: {...}}' form is not "
    "supported; write 'lr_scheduler: {type: PolynomialDecay, learning_rate: "
    "<value>, power: <power>, end_lr: <end_lr>}' instead")

# YAML 1.1 (safe_load) reads 1e-5 as a string: a float needs a dot and a
# signed exponent (1.0e-5).
_NUMBER_LIKE = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+')


def did_you_mean(word, candidates):
    """``"; did you mean 'x'?"`` for the closest candidate (difflib), else
    ``'; known: a, b, c'`` (or ``''`` without candidates)."""
    candidates = sorted(str(name) for name in candidates)
    close = difflib.get_close_matches(str(word), candidates, n=1)
    if close:
        return '; did you mean {!r}?'.format(close[0])
    if candidates:
        return '; known: {}'.format(', '.join(candidates))
    return ''


def _yaml_float(text):
    """``'1e-5'`` -> ``'1.0e-5'``: the spelling YAML reads as a float."""
    mantissa, exponent = text.lower().split('e')
    if '.' not in mantissa:
        mantissa += '.0'
    if exponent[0] not in '+-':
        exponent = '+' + exponent
    return '{}e{}'.format(mantissa, exponent)


def _is_positive_int(value):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value > 0)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Reporter:
    """Formats and raises the errors for one config file."""

    def __init__(self, path, sources):
        self.path = path
        self.sources = sources or {}

    def _origin(self, parts):
        """Where the value at ``parts`` (or its closest ancestor) was set,
        when that is not the checked file."""
        for end in range(len(parts), 0, -1):
            origin = self.sources.get(join_key(parts[:end]))
            if origin is not None:
                same = os.path.normpath(origin) == os.path.normpath(self.path)
                return '' if same else ' (from {})'.format(origin)
        return ''

    def fail(self, parts, message):
        raise ConfigError('{}: {}: {}{}'.format(
            self.path, join_key(parts), message, self._origin(parts)))

    def reraise(self, parts, exc):
        """Re-raise ``exc`` (whose message starts with the key) with the
        path in front."""
        raise type(exc)('{}: {}{}'.format(
            self.path, exc, self._origin(parts))) from None


def _check_top_level(cfg, rep, for_training):
    for key in cfg:
        if key == 'learning_rate':
            rep.fail((key,), LEGACY_LR_MESSAGE)
        if key not in KNOWN_TOP_LEVEL_KEYS:
            rep.fail((key,), 'unknown top-level key' + did_you_mean(
                key, KNOWN_TOP_LEVEL_KEYS))
    required = TRAINING_KEYS if for_training else ('model',)
    for key in required:
        if cfg.get(key) is None:
            rep.fail((key,), 'is required{}'.format(
                ' for training' if for_training else ''))
    for key in ('batch_size', 'iters'):
        if key in cfg and not _is_positive_int(cfg[key]):
            rep.fail((key,), 'must be a positive integer, got {!r}'.format(
                cfg[key]))
    for key in ('test_config', 'export'):
        if key in cfg and not isinstance(cfg[key], dict):
            rep.fail((key,), 'must be a mapping, got {!r}'.format(cfg[key]))


def _check_loss(loss, rep):
    if not isinstance(loss, dict):
        rep.fail(('loss',), "must be a mapping with 'types' and 'coef'")
    for key in loss:
        if key not in ('types', 'coef'):
            rep.fail(('loss', key), 'unknown key' + did_you_mean(
                key, ('types', 'coef')))
    types, coef = loss.get('types'), loss.get('coef')
    if not isinstance(types, list) or not types:
        rep.fail(('loss', 'types'), 'must be a non-empty list of losses')
    if not isinstance(coef, list):
        rep.fail(('loss', 'coef'), 'must be a list of numbers, one per loss '
                 'in loss.types')
    if len(coef) != len(types):
        rep.fail(('loss', 'coef'), 'has {} entries but loss.types has '
                 '{}'.format(len(coef), len(types)))
    for index, value in enumerate(coef):
        if not _is_number(value):
            rep.fail(('loss', 'coef', index),
                     'must be a number, got {!r}'.format(value))


def _check_component(spec, parts, rep):
    """``spec['type']`` is registered and the other keys are arguments."""
    try:
        component = resolve_component(spec['type'], parts)
    except ConfigError as exc:
        rep.reraise(parts, exc)
    accepted = accepted_args(component)
    reserved = BUILDER_ARGS.get(join_key(parts), {})
    for name in spec:
        if name in reserved:
            rep.fail(parts + (name,), 'must not be set: ' + reserved[name])
        if name != 'type' and accepted is not None and name not in accepted:
            rep.fail(parts + (name,), '{} has no argument {!r}{}'.format(
                spec['type'], name, did_you_mean(name, accepted)))


def _check_tree(value, parts, rep):
    """Walk the config: component specs, and numbers YAML read as text."""
    registry = registry_for(parts)
    is_spec = isinstance(value, dict) and 'type' in value
    if registry is not None and not is_spec:
        rep.fail(parts, "must be a mapping with a 'type' naming one of the "
                 '{}, got {!r}'.format(registry.name, value))
    if is_spec:
        _check_component(value, parts, rep)
    if isinstance(value, dict):
        for name, item in value.items():
            _check_tree(item, parts + (name,), rep)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_tree(item, parts + (index,), rep)
    elif isinstance(value, str) and _NUMBER_LIKE.fullmatch(value):
        rep.fail(parts, '{!r} is read by YAML as a string, not a number; '
                 'write {}'.format(value, _yaml_float(value)))


def _check_num_classes(cfg, rep):
    """The model's and the datasets' ``num_classes`` agree."""
    model = cfg.get('model')
    given = model.get('num_classes') if isinstance(model, dict) else None
    found = {('model', 'num_classes'): given}
    for key in ('train_dataset', 'val_dataset'):
        found[(key, 'num_classes')] = dataset_num_classes(cfg, key)
    for parts, value in found.items():
        if value is not None and not _is_positive_int(value):
            rep.fail(parts, 'must be a positive integer, got {!r}'.format(
                value))
    datasets = [(key, found[(key, 'num_classes')])
                for key in ('train_dataset', 'val_dataset')
                if found[(key, 'num_classes')] is not None]
    if given is not None:
        for key, value in datasets:
            if value != given:
                rep.fail(('model', 'num_classes'), 'is {} but {} has {} '
                         'classes'.format(given, key, value))
    elif len(datasets) == 2 and datasets[0][1] != datasets[1][1]:
        rep.fail(('val_dataset', 'num_classes'), 'is {} but train_dataset '
                 'has {} classes'.format(datasets[1][1], datasets[0][1]))


def check_config(cfg, path, for_training=True, sources=None):
    """Check a merged config; raise on the first problem.

    Checks: the top-level keys are known (:data:`KNOWN_TOP_LEVEL_KEYS`) and
    the required ones present (:data:`TRAINING_KEYS` when ``for_training``,
    else only ``model``); ``batch_size`` and ``iters`` are positive
    integers; ``loss.types`` and ``loss.coef`` are lists of the same length;
    every mapping with a ``type`` names a registered component (registry
    chosen by its key, see ``config_builder.registry_for``) and its other
    keys are arguments of it (``config_builder.accepted_args``), except the
    ones the builder supplies (``config_builder.BUILDER_ARGS``); no value is
    a number that YAML read as a string (``1e-5``); the model's
    ``num_classes`` matches the datasets'.

    Args:
        cfg (dict): The merged config.
        path (str): The config file, named in every error.
        for_training (bool): Require the training keys. Default True.
        sources (dict, optional): Dotted key -> file or option that set it,
            used to say where a bad value came from.

    Raises:
        ConfigError: ``'<path>: <dotted.key>: <what is wrong>'``.
    """
    rep = _Reporter(path, sources)
    if not isinstance(cfg, dict):
        raise ConfigError('{}: top level: must be a mapping of config keys, '
                          'got {}'.format(path, type(cfg).__name__))
    _check_top_level(cfg, rep, for_training)
    if 'loss' in cfg:
        _check_loss(cfg['loss'], rep)
    _check_tree(cfg, (), rep)
    _check_num_classes(cfg, rep)
