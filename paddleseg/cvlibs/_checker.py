"""Check a merged config dict before anything is built: the checking half
of :class:`paddleseg.cvlibs.Config` (private; use ``Config``).

:func:`check_config` stops at the first problem and raises
:class:`~paddleseg.errors.ConfigError` with a one-line message::

    <path>: <dotted.key>: <what is wrong>[ (from <file or --opts>)]

The ``(from ...)`` part appears when the key was set somewhere other than
``<path>`` itself (a ``_base_`` file, ``--opts``, ``--iters``), as recorded
by :func:`paddleseg.cvlibs._parser.load_config_with_sources`. The path
goes in front through :func:`paddleseg.cvlibs._keys.errors_of`.
"""

import os
import re

from paddleseg.cvlibs._keys import (dataset_num_classes, errors_of, join_key,
                                    required_problem, resolve_component)
from paddleseg.cvlibs.schema import (RETIRED_KEYS, SECTIONS, accepted_args,
                                     did_you_mean, is_positive_int,
                                     registry_for, required_sections,
                                     section_problem, supplied_args)
from paddleseg.errors import ConfigError

__all__ = ['check_config']

# YAML 1.1 (safe_load) reads 1e-5 as a string: a float needs a dot and a
# signed exponent (1.0e-5).
_NUMBER_LIKE = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+')


def _yaml_float(text):
    """``'1e-5'`` -> ``'1.0e-5'``: the spelling YAML reads as a float."""
    mantissa, exponent = text.lower().split('e')
    if '.' not in mantissa:
        mantissa += '.0'
    if exponent[0] not in '+-':
        exponent = '+' + exponent
    return '{}e{}'.format(mantissa, exponent)


class _Reporter:
    """Formats and raises the errors for one config file (without its path,
    which :func:`check_config` puts in front)."""

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
        raise ConfigError('{}: {}{}'.format(
            join_key(parts), message, self._origin(parts)))

    def reraise(self, parts, exc):
        """Re-raise ``exc`` (whose message starts with the key) with where
        the key was set."""
        raise type(exc)('{}{}'.format(exc, self._origin(parts))) from None


def _check_sections(cfg, rep, for_training):
    """Top-level keys are sections of the schema, the required ones are
    present, and each present section's own value is right."""
    for key in cfg:
        if key in RETIRED_KEYS:
            rep.fail((key,), RETIRED_KEYS[key])
        if key not in SECTIONS:
            rep.fail((key,), 'unknown top-level key' + did_you_mean(
                key, SECTIONS))
    for key in required_sections(for_training):
        problem = required_problem(
            cfg, key, ' for training' if for_training else None)
        if problem is not None:
            rep.fail(*problem)
    for key in SECTIONS:
        if key in cfg:
            problem = section_problem(key, cfg[key])
            if problem is not None:
                rep.fail(*problem)


def _check_component(spec, parts, rep):
    """``spec['type']`` is registered and the other keys are arguments."""
    try:
        component = resolve_component(spec['type'], parts)
    except ConfigError as exc:
        rep.reraise(parts, exc)
    accepted = accepted_args(component)
    reserved = supplied_args(parts)
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
        if value is not None and not is_positive_int(value):
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

    Checks, following :data:`paddleseg.cvlibs.schema.SECTIONS`: the
    top-level keys are sections and the required ones present (training's
    when ``for_training``, else only ``model``); ``batch_size`` and
    ``iters`` are positive integers; ``loss.types`` and ``loss.coef`` are
    lists of the same length; ``test_config``'s keys are keyword arguments of
    ``paddleseg.core.val.evaluate`` (``schema.TEST_CONFIG_KEYS``); every mapping
    with a ``type`` names a registered component (registry chosen by its
    key, see ``schema.registry_for``) and its other keys are arguments of it
    (``schema.accepted_args``), except the ones the builder supplies; no
    value is a number that YAML read as a string (``1e-5``); the model's
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
    with errors_of(path):
        if not isinstance(cfg, dict):
            raise ConfigError('top level: must be a mapping of config keys, '
                              'got {}'.format(type(cfg).__name__))
        _check_sections(cfg, rep, for_training)
        _check_tree(cfg, (), rep)
        _check_num_classes(cfg, rep)
