"""What a dotted config key leads to, read over :mod:`.schema`: the key's
parts (:func:`join_key`, :func:`split_key`), whether the config has it (the
one required-key check, :func:`required_problem`), the component its
``type`` names (:func:`resolve_component`), the number of classes
(:func:`dataset_num_classes`, :func:`num_classes`), and the one place a
config's path joins an error (:func:`errors_of`).

Private to :mod:`paddleseg.cvlibs`: the parser, the checker, :class:`Config`
and :class:`SegBuilder` import these from here, not from each other.
"""

import contextlib
import re

from paddleseg.cvlibs import manager
from paddleseg.cvlibs.schema import registry_for
from paddleseg.errors import ConfigError, UnknownComponentError

__all__ = ['join_key', 'split_key', 'required_problem', 'resolve_component',
           'dataset_num_classes', 'num_classes', 'errors_of']

_INDEX = re.compile(r'[0-9]+')


def required_problem(cfg, key, needed_for=None):
    """``cfg`` lacks the dotted ``key`` (absent or null): the one check of a
    required key, used by the checker and :class:`SegBuilder`.

    Args:
        needed_for (str, optional): Said after ``is required``, e.g.
            ``' for training'`` or ``' (predict.py uses the eval
            transforms)'``.

    Returns:
        tuple | None: ``(parts, 'is required...')``, or None when present.
    """
    parts = split_key(key)
    value = cfg
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) \
                and part < len(value):
            value = value[part]
        else:
            value = None
        if value is None:
            return parts, 'is required' + (needed_for or '')
    return None

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


def num_classes(cfg):
    """The number of classes of the config ``cfg``: the model's
    ``num_classes``, else the training dataset's, else the evaluation
    dataset's (:func:`dataset_num_classes`); None when none says. The one
    rule, behind :attr:`Config.num_classes` and the model's default."""
    model = cfg.get('model')
    if isinstance(model, dict) and model.get('num_classes') is not None:
        return model['num_classes']
    return (dataset_num_classes(cfg, 'train_dataset')
            or dataset_num_classes(cfg, 'val_dataset'))


@contextlib.contextmanager
def errors_of(path):
    """Put the config file ``path`` in front of a :class:`ConfigError`
    raised inside: the one place a config's path joins an error, giving
    ``'<path>: <dotted.key>: <what is wrong>'``. A falsy ``path`` changes
    nothing."""
    try:
        yield
    except ConfigError as exc:
        if not path:
            raise
        error = type(exc)('{}: {}'.format(path, exc))
        error.worker_traceback = exc.worker_traceback
        raise error from exc.__cause__
