"""Turn a checked config dict into objects.

A mapping with a ``type`` key is a *component spec*: ``type`` names a
registered class or function, the other keys are its keyword arguments.
Nested specs (also inside lists) are built first, so a model receives a
built backbone and a dataset a list of built transforms.

Which registry a ``type`` is looked up in follows from where the spec sits
(see :func:`registry_for`). The same lookup and :func:`accepted_args` are used
by the checker and by ``--opts``, so the three agree on what a key means.

This module also registers the optimizer factories (``sgd``, ``SGD``,
``Momentum``, ``adam``, ``Adam``, ``adamw``, ``AdamW``) in
``manager.OPTIMIZERS``.

Errors are :class:`~paddleseg.errors.ConfigError` with the message
``'<path>: <dotted.key>: <what is wrong>'``, where ``<path>`` (the config
file) is present when the caller passes ``path``.
"""

import inspect
import re

import paddle

from paddleseg.cvlibs import manager
from paddleseg.errors import ConfigError, UnknownComponentError

__all__ = ['KEY_REGISTRIES', 'ITEM_REGISTRIES', 'BUILDER_ARGS', 'join_key',
           'split_key', 'registry_for', 'resolve_component', 'accepted_args',
           'dataset_num_classes', 'build_component', 'build_model',
           'build_dataset', 'build_losses', 'build_lr_scheduler',
           'build_optimizer']

KEY_REGISTRIES = {
    'model': manager.MODELS,
    'backbone': manager.BACKBONES,
    'train_dataset': manager.DATASETS,
    'val_dataset': manager.DATASETS,
    'optimizer': manager.OPTIMIZERS,
    'lr_scheduler': manager.LR_SCHEDULERS,
}
"""A spec stored under one of these keys is looked up in that registry."""

ITEM_REGISTRIES = {
    'transforms': manager.TRANSFORMS,
    'types': manager.LOSSES,
}
"""A spec that is an item of a list stored under one of these keys is looked
up in that registry (``train_dataset.transforms.0``, ``loss.types.1``)."""

BUILDER_ARGS = {
    'optimizer': {
        'parameters': 'the builder passes the model parameters',
        'learning_rate': 'set lr_scheduler.learning_rate instead',
    },
    'lr_scheduler': {
        'iters': 'the builder passes the top-level iters; set that instead',
    },
}
"""Constructor arguments the builder supplies itself and a config must not
set, keyed by the config key of the spec, with the hint for the error."""

_INDEX = re.compile(r'[0-9]+')


def join_key(parts):
    """``('train_dataset', 'transforms', 0)`` -> ``'train_dataset.transforms.0'``."""
    return '.'.join(str(part) for part in parts)


def split_key(key):
    """Inverse of :func:`join_key`: digit-only parts become list indices."""
    return tuple(int(part) if _INDEX.fullmatch(part) else part
                 for part in key.split('.'))


def registry_for(parts):
    """The registry a spec at key ``parts`` (a tuple) is looked up in.

    Returns None when the position names no particular registry; such a
    spec's ``type`` must then be found in exactly one registry.
    """
    if not parts:
        return None
    if isinstance(parts[-1], int):
        parent = parts[-2] if len(parts) > 1 else None
        return ITEM_REGISTRIES.get(parent)
    return KEY_REGISTRIES.get(parts[-1])


def _import_schedulers():
    """Import the top-level ``lr_scheduler`` package, which registers the
    learning-rate schedules (it needs the repo root on ``sys.path``)."""
    import lr_scheduler  # noqa: F401


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
    _import_schedulers()
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


def accepted_args(component):
    """The keyword arguments a config may give ``component``.

    These are the named parameters of its signature plus, when it has a
    ``accepted_kwargs`` attribute, those names too: a function that forwards
    ``**kwargs`` to a class declares the forwarded names that way, e.g.
    ``ResNet101_vd.accepted_kwargs = ('output_stride', 'pretrained', ...)``.

    Returns:
        frozenset | None: the names, or None when anything is accepted (the
        signature takes ``**kwargs`` and no ``accepted_kwargs`` is declared, or
        it cannot be inspected).
    """
    declared = getattr(component, 'accepted_kwargs', None)
    try:
        params = inspect.signature(component).parameters.values()
    except (TypeError, ValueError):
        return None if declared is None else frozenset(declared)
    names = {p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if declared is not None:
        return frozenset(names.union(declared))
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(names)


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


def build_model(cfg, path=None):
    """Build ``cfg['model']``.

    When the model spec has no ``num_classes`` and the model accepts one,
    it is taken from ``train_dataset`` (else ``val_dataset``), see
    :func:`dataset_num_classes`.
    """
    spec = _section(cfg, 'model', path)
    extra = {}
    if 'num_classes' not in spec:
        accepted = accepted_args(_resolve(spec, 'model', manager.MODELS, path))
        num_classes = (dataset_num_classes(cfg, 'train_dataset')
                       or dataset_num_classes(cfg, 'val_dataset'))
        if num_classes and (accepted is None or 'num_classes' in accepted):
            extra['num_classes'] = num_classes
    return _build(spec, 'model', manager.MODELS, path, extra)


def build_dataset(cfg, key, path=None):
    """Build ``cfg[key]`` (``'train_dataset'`` or ``'val_dataset'``), or
    return None when the config has no such key."""
    if cfg.get(key) is None:
        return None
    return _build(cfg[key], key, manager.DATASETS, path, {})


def build_losses(cfg, path=None):
    """Build ``cfg['loss']``.

    Returns:
        dict: ``{'types': [loss objects], 'coef': [floats]}``, same length.
    """
    loss = _section(cfg, 'loss', path)
    types, coef = loss.get('types') or [], loss.get('coef') or []
    if len(types) != len(coef):
        raise _error(path, 'loss.coef', 'has {} entries but loss.types has '
                     '{}'.format(len(coef), len(types)))
    return {
        'types': [_build(spec, 'loss.types.{}'.format(index),
                         manager.LOSSES, path, {})
                  for index, spec in enumerate(types)],
        'coef': [float(value) for value in coef],
    }


def build_lr_scheduler(cfg, iters, path=None):
    """Build ``cfg['lr_scheduler']``.

    A schedule whose constructor has an ``iters`` parameter receives
    ``iters`` (the number of training iterations), from which it derives
    its defaults, e.g. ``decay_steps`` of ``PolynomialDecay``.
    """
    spec = _section(cfg, 'lr_scheduler', path)
    accepted = accepted_args(
        _resolve(spec, 'lr_scheduler', manager.LR_SCHEDULERS, path))
    extra = {'iters': iters} if accepted and 'iters' in accepted else {}
    return _build(spec, 'lr_scheduler', manager.LR_SCHEDULERS, path, extra)


def build_optimizer(cfg, model, lr_scheduler, path=None):
    """Build ``cfg['optimizer']`` for ``model``'s parameters.

    The factory named by ``type`` is called with ``parameters=``
    ``model.parameters()``, ``learning_rate=lr_scheduler`` and the other keys.
    """
    spec = _section(cfg, 'optimizer', path)
    extra = {'parameters': model.parameters(), 'learning_rate': lr_scheduler}
    return _build(spec, 'optimizer', manager.OPTIMIZERS, path, extra)


# ---------------------------------------------------------------- optimizers

def _l2_decay(weight_decay):
    """A float weight decay as an L2 regularizer (None stays None)."""
    if weight_decay is None:
        return None
    return paddle.regularizer.L2Decay(weight_decay)


def _grad_clip(grad_clip_norm):
    """Clip gradients by global norm when ``grad_clip_norm`` is given."""
    if grad_clip_norm is None:
        return None
    return paddle.nn.ClipGradByGlobalNorm(grad_clip_norm)


def sgd(parameters, learning_rate, momentum=0.0, weight_decay=None,
        grad_clip_norm=None):
    """SGD; with ``momentum`` > 0 (PaddleSeg configs use 0.9) it is
    ``paddle.optimizer.Momentum``, otherwise plain ``paddle.optimizer.SGD``.

    Args:
        parameters: The parameters to optimize (supplied by the builder).
        learning_rate (float | LRScheduler): Supplied by the builder.
        momentum (float): Default 0.0 (no momentum).
        weight_decay (float, optional): L2 regularization coefficient
            (``paddle.regularizer.L2Decay``). Default: none.
        grad_clip_norm (float, optional): Clip gradients to this global
            norm. Default: no clipping.
    """
    if momentum:
        return Momentum(parameters, learning_rate, momentum=momentum,
                        weight_decay=weight_decay,
                        grad_clip_norm=grad_clip_norm)
    return paddle.optimizer.SGD(
        learning_rate=learning_rate, parameters=parameters,
        weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def Momentum(parameters, learning_rate, momentum=0.9, weight_decay=None,
             use_nesterov=False, grad_clip_norm=None):
    """``paddle.optimizer.Momentum``; ``weight_decay`` (default none) is an
    L2Decay coefficient, ``grad_clip_norm`` (default none) a global-norm
    clip."""
    return paddle.optimizer.Momentum(
        learning_rate=learning_rate, momentum=momentum, parameters=parameters,
        use_nesterov=use_nesterov, weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def adam(parameters, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8,
         weight_decay=None, grad_clip_norm=None):
    """``paddle.optimizer.Adam``; ``weight_decay`` (default none) is an
    L2Decay coefficient added to the gradient, ``grad_clip_norm`` (default
    none) a global-norm clip."""
    return paddle.optimizer.Adam(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2,
        epsilon=epsilon, parameters=parameters,
        weight_decay=_l2_decay(weight_decay),
        grad_clip=_grad_clip(grad_clip_norm))


def adamw(parameters, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8,
          weight_decay=0.01, grad_clip_norm=None):
    """``paddle.optimizer.AdamW``; ``weight_decay`` (default 0.01) is the
    decoupled decay coefficient, ``grad_clip_norm`` (default none) a
    global-norm clip."""
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2,
        epsilon=epsilon, parameters=parameters, weight_decay=weight_decay,
        grad_clip=_grad_clip(grad_clip_norm))


def _register_optimizers():
    names = (('sgd', sgd), ('SGD', sgd), ('Momentum', Momentum),
             ('adam', adam), ('Adam', adam), ('adamw', adamw),
             ('AdamW', adamw))
    for name, factory in names:
        manager.OPTIMIZERS.add_component(factory, name=name)


_register_optimizers()
