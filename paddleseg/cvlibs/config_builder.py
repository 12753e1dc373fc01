"""Turn a checked config dict into objects.

A mapping with a ``type`` key is a *component spec*: ``type`` names a
registered class or function, the other keys are its keyword arguments.
Nested specs (also inside lists) are built first, so a model receives a
built backbone and a dataset a list of built transforms.

Which registry a ``type`` is looked up in, which arguments the builder
supplies, and what a section holds are declared once in
:mod:`paddleseg.cvlibs.schema`, which the checker and ``--opts`` read too.

Importing this module imports :mod:`paddleseg.optimizers`, which registers
the optimizer factories (``sgd``, ``SGD``, ``Momentum``, ``adam``, ``Adam``,
``adamw``, ``AdamW``) and the learning-rate schedules.

Errors are :class:`~paddleseg.errors.ConfigError` with the message
``'<path>: <dotted.key>: <what is wrong>'``, where ``<path>`` (the config
file) is present when the caller passes ``path``.
"""

import re

from paddleseg import optimizers  # noqa: F401  (registers optimizers, schedules)
from paddleseg.cvlibs import manager
from paddleseg.cvlibs.schema import (SECTIONS, accepted_args, loss_problem,
                                     registry_for)
from paddleseg.errors import ConfigError, UnknownComponentError

__all__ = ['join_key', 'split_key', 'registry_for', 'resolve_component',
           'accepted_args', 'dataset_num_classes', 'build_component',
           'build_model', 'build_dataset', 'build_losses',
           'build_lr_scheduler', 'build_optimizer', 'build_transforms']

_INDEX = re.compile(r'[0-9]+')


def join_key(parts):
    """``('train_dataset', 'transforms', 0)`` -> ``'train_dataset.transforms.0'``."""
    return '.'.join(str(part) for part in parts)


def split_key(key):
    """Inverse of :func:`join_key`: digit-only parts become list indices."""
    return tuple(int(part) if _INDEX.fullmatch(part) else part
                 for part in key.split('.'))


def resolve_component(type_name, parts, registry=None):
    """Return the class or function a spec's ``type`` names.

    Args:
        type_name: The spec's ``type`` value.
        parts (tuple): The spec's key, e.g. ``('model', 'backbone')``.
        registry (Registry, optional): Where to look; default:
            :func:`registry_for` ``(parts)``, or every registry when that is
            None (the name must then be in exactly one of them).

    Raises:
        UnknownComponentError: no registry (or not the chosen one) has it;
            the message starts with the dotted key.
        ConfigError: ``type`` is not a string, or the name is ambiguous.
    """
    key = join_key(parts)
    if not isinstance(type_name, str):
        raise ConfigError('{}.type: must be a component name, got {!r}'.format(
            key, type_name))
    if registry is None:
        registry = registry_for(parts)
    if registry is not None:
        return registry.get(type_name, key=key)
    owners = [reg for reg in manager.ALL_REGISTRIES if type_name in reg]
    if not owners:
        raise UnknownComponentError(
            '{}: unknown type {!r}: no registry has a component of that '
            'name'.format(key, type_name))
    if len(owners) > 1:
        raise ConfigError(
            '{}: type {!r} is ambiguous here, it is registered in {}'.format(
                key, type_name, ' and '.join(reg.name for reg in owners)))
    return owners[0].get(type_name)


def dataset_num_classes(cfg, key):
    """Number of classes of the dataset at ``cfg[key]``, or None if unknown.

    Taken from the spec's ``num_classes`` or else from the dataset class's
    ``NUM_CLASSES`` attribute.
    """
    spec = cfg.get(key)
    if not isinstance(spec, dict):
        return None
    if 'num_classes' in spec:
        return spec['num_classes']
    try:
        component = resolve_component(spec.get('type'), (key,))
    except ConfigError:
        return None
    return getattr(component, 'NUM_CLASSES', None)


def _error(path, key, message):
    prefix = '{}: '.format(path) if path else ''
    return ConfigError('{}{}: {}'.format(prefix, key, message))


def _resolve(spec, key, registry, path):
    """:func:`resolve_component` for a built spec, errors prefixed by path."""
    try:
        return resolve_component(spec['type'], split_key(key), registry)
    except ConfigError as exc:
        if not path:
            raise
        raise type(exc)('{}: {}'.format(path, exc)) from None


def _build_value(value, key, path):
    """Build every spec inside ``value``; other values pass through."""
    if isinstance(value, dict) and 'type' in value:
        return build_component(value, key, path=path)
    if isinstance(value, dict):
        return {name: _build_value(item, '{}.{}'.format(key, name), path)
                for name, item in value.items()}
    if isinstance(value, list):
        return [_build_value(item, '{}.{}'.format(key, index), path)
                for index, item in enumerate(value)]
    return value


def _build(spec, key, registry, path, extra):
    """Build ``spec`` with keyword arguments ``extra`` added (they win)."""
    if not isinstance(spec, dict) or 'type' not in spec:
        raise _error(path, key, "expected a mapping with a 'type' key, got "
                     '{!r}'.format(spec))
    component = _resolve(spec, key, registry, path)
    kwargs = {name: _build_value(value, '{}.{}'.format(key, name), path)
              for name, value in spec.items() if name != 'type'}
    kwargs.update(extra)
    try:
        return component(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _error(path, key, 'cannot build {}: {}'.format(
            spec['type'], exc)) from exc


def build_component(spec, key, registry=None, path=None):
    """Build one component spec.

    Args:
        spec (dict): A mapping with ``type``; the other keys are passed as
            keyword arguments after building any nested specs in them.
        key (str): The spec's dotted key, e.g. ``'model.backbone'``; used in
            errors and, when ``registry`` is None, to pick the registry
            (:func:`registry_for`).
        registry (Registry, optional): Registry to look ``type`` up in.
        path (str, optional): Config file named in errors.

    Raises:
        ConfigError: ``spec`` has no ``type``, the type is unknown, or the
            constructor raised TypeError or ValueError (bad or missing
            arguments); the original exception is chained.
    """
    return _build(spec, key, registry, path, {})


def _section(cfg, key, path):
    """``cfg[key]``, which must be a mapping."""
    value = cfg.get(key)
    if not isinstance(value, dict):
        raise _error(path, key, 'missing or not a mapping')
    return value


def _build_section(cfg, name, path, supplied=None):
    """Build the component section ``cfg[name]`` from its registry, passing
    the ``supplied`` arguments (declared in the section's ``supplied``) that
    the component accepts."""
    section = SECTIONS[name]
    assert set(supplied or {}) <= set(section.supplied), name
    spec = _section(cfg, name, path)
    accepted = accepted_args(_resolve(spec, name, section.registry, path))
    extra = {arg: value for arg, value in (supplied or {}).items()
             if accepted is None or arg in accepted}
    return _build(spec, name, section.registry, path, extra)


def build_model(cfg, path=None):
    """Build ``cfg['model']``.

    When the model spec has no ``num_classes`` and the model accepts one,
    it is taken from ``train_dataset`` (else ``val_dataset``), see
    :func:`dataset_num_classes`.
    """
    spec = _section(cfg, 'model', path)
    registry = SECTIONS['model'].registry
    extra = {}
    if 'num_classes' not in spec:
        accepted = accepted_args(_resolve(spec, 'model', registry, path))
        num_classes = (dataset_num_classes(cfg, 'train_dataset')
                       or dataset_num_classes(cfg, 'val_dataset'))
        if num_classes and (accepted is None or 'num_classes' in accepted):
            extra['num_classes'] = num_classes
    return _build(spec, 'model', registry, path, extra)


def build_dataset(cfg, key, path=None):
    """Build ``cfg[key]`` (``'train_dataset'`` or ``'val_dataset'``), or
    return None when the config has no such key."""
    if cfg.get(key) is None:
        return None
    return _build_section(cfg, key, path)


def build_transforms(cfg, key='val_dataset', path=None):
    """Build the ``transforms`` list of ``cfg[key]`` (a dataset section or
    ``export``) without building the section itself.

    Returns:
        list: The transform objects; empty when ``cfg[key]`` has none.
    """
    specs = (cfg.get(key) or {}).get('transforms') or []
    return [build_component(spec, '{}.transforms.{}'.format(key, index),
                            path=path)
            for index, spec in enumerate(specs)]


def build_losses(cfg, path=None):
    """Build ``cfg['loss']`` (checked by :func:`schema.loss_problem`, the
    same check the config checker runs).

    Returns:
        dict: ``{'types': [loss objects], 'coef': [floats]}``, same length.
    """
    problem = loss_problem(cfg.get('loss'))
    if problem is not None:
        parts, message = problem
        raise _error(path, join_key(parts), message)
    loss = cfg['loss']
    return {
        'types': [_build(spec, 'loss.types.{}'.format(index),
                         registry_for(('loss', 'types', index)), path, {})
                  for index, spec in enumerate(loss['types'])],
        'coef': [float(value) for value in loss['coef']],
    }


def build_lr_scheduler(cfg, iters, path=None):
    """Build ``cfg['lr_scheduler']``.

    A schedule whose constructor has an ``iters`` parameter receives
    ``iters`` (the number of training iterations), from which it derives
    its defaults, e.g. ``decay_steps`` of ``PolynomialDecay``.
    """
    return _build_section(cfg, 'lr_scheduler', path, {'iters': iters})


def build_optimizer(cfg, model, lr_scheduler, path=None):
    """Build ``cfg['optimizer']`` for ``model``'s parameters.

    The factory named by ``type`` is called with ``parameters=``
    ``model.parameters()``, ``learning_rate=lr_scheduler`` and the other keys.
    """
    return _build_section(cfg, 'optimizer', path, {
        'parameters': model.parameters(), 'learning_rate': lr_scheduler})
