"""PaddleSeg 2.8's ``SegBuilder``: the one way to turn a :class:`Config`
into objects, and the module-level build helpers it uses.

Each property of :class:`SegBuilder` is built on first use and then
cached: ``model`` is built once, ``optimizer`` optimizes that model's
parameters with that ``lr_scheduler``::

    from paddleseg.cvlibs import Config, SegBuilder

    cfg = Config('configs/demo/x.yml', iters=100, batch_size=2)
    builder = SegBuilder(cfg)
    model, optimizer = builder.model, builder.optimizer
    losses = builder.loss          # {'types': [loss layers], 'coef': [floats]}

A mapping with a ``type`` key is a *component spec*: ``type`` names a
registered class or function, the other keys are its keyword arguments.
Nested specs (also inside lists) are built first, so a model receives a
built backbone and a dataset a list of built transforms. Which registry a
``type`` is looked up in, which arguments the builder supplies, and what a
section holds are declared once in :mod:`paddleseg.cvlibs.schema`.

Errors are :class:`~paddleseg.errors.ConfigError` with the message
``'<path>: <dotted.key>: <what is wrong>'`` (the path put in front by
:func:`._keys.errors_of`).
"""

from functools import cached_property

from paddleseg.cvlibs import _keys
from paddleseg.cvlibs._keys import (errors_of, join_key, required_problem,
                                    resolve_component, split_key)
from paddleseg.cvlibs.schema import (SECTIONS, accepted_args, loss_problem,
                                     registry_for)
from paddleseg.errors import ConfigError

__all__ = ['SegBuilder', 'build_component']


# ------------------------------------------------------- component specs

def _build_value(value, key):
    """Build every spec inside ``value``; other values pass through."""
    if isinstance(value, dict) and 'type' in value:
        return build_component(value, key)
    if isinstance(value, dict):
        return {name: _build_value(item, '{}.{}'.format(key, name))
                for name, item in value.items()}
    if isinstance(value, list):
        return [_build_value(item, '{}.{}'.format(key, index))
                for index, item in enumerate(value)]
    return value


def _build(spec, key, registry, extra):
    """Build ``spec`` with keyword arguments ``extra`` added (they win)."""
    if not isinstance(spec, dict) or 'type' not in spec:
        raise ConfigError("{}: expected a mapping with a 'type' key, got "
                          '{!r}'.format(key, spec))
    component = resolve_component(spec['type'], split_key(key), registry)
    kwargs = {name: _build_value(value, '{}.{}'.format(key, name))
              for name, value in spec.items() if name != 'type'}
    kwargs.update(extra)
    try:
        return component(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError('{}: cannot build {}: {}'.format(
            key, spec['type'], exc)) from exc


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
    with errors_of(path):
        return _build(spec, key, registry, {})


# ------------------------------------------- sections (SegBuilder's helpers)

def _build_section(cfg, name, supplied=None):
    """Build the component section ``cfg[name]`` from its registry, passing
    the ``supplied`` arguments (declared in the section's ``supplied``) that
    the component accepts."""
    section = SECTIONS[name]
    assert set(supplied or {}) <= set(section.supplied), name
    spec = cfg[name]
    accepted = accepted_args(resolve_component(spec.get('type'), (name,),
                                               section.registry))
    extra = {arg: value for arg, value in (supplied or {}).items()
             if accepted is None or arg in accepted}
    return _build(spec, name, section.registry, extra)


def build_model(cfg, path=None):
    """Build ``cfg['model']``. When the spec has no ``num_classes`` and the
    model takes one, the datasets' is passed (:func:`._keys.num_classes`,
    :attr:`Config.num_classes`)."""
    with errors_of(path):
        spec = cfg['model']
        extra = {}
        num_classes = _keys.num_classes(cfg)
        if 'num_classes' not in spec and num_classes:
            accepted = accepted_args(resolve_component(
                spec.get('type'), ('model',), SECTIONS['model'].registry))
            if accepted is None or 'num_classes' in accepted:
                extra['num_classes'] = num_classes
        return _build(spec, 'model', SECTIONS['model'].registry, extra)


def build_dataset(cfg, key, path=None):
    """Build ``cfg[key]`` (``'train_dataset'`` or ``'val_dataset'``), or
    return None when the config has no such key."""
    if cfg.get(key) is None:
        return None
    with errors_of(path):
        return _build_section(cfg, key)


def build_transforms(specs, key, path=None):
    """Build the transform ``specs`` found at ``key`` (e.g.
    ``'val_dataset.transforms'``) into a list."""
    return [build_component(spec, '{}.{}'.format(key, index), path=path)
            for index, spec in enumerate(specs)]


def build_losses(cfg, path=None):
    """Build ``cfg['loss']`` (checked by :func:`schema.loss_problem`, the
    same check the config checker runs).

    Returns:
        dict: ``{'types': [loss objects], 'coef': [floats]}``, same length.
    """
    with errors_of(path):
        problem = loss_problem(cfg.get('loss'))
        if problem is not None:
            parts, message = problem
            raise ConfigError('{}: {}'.format(join_key(parts), message))
        loss = cfg['loss']
        return {
            'types': [_build(spec, 'loss.types.{}'.format(index),
                             registry_for(('loss', 'types', index)), {})
                      for index, spec in enumerate(loss['types'])],
            'coef': [float(value) for value in loss['coef']],
        }


def build_lr_scheduler(cfg, iters, path=None):
    """Build ``cfg['lr_scheduler']``.

    A schedule whose constructor has an ``iters`` parameter receives
    ``iters`` (the number of training iterations), from which it derives
    its defaults, e.g. ``decay_steps`` of ``PolynomialDecay``.
    """
    with errors_of(path):
        return _build_section(cfg, 'lr_scheduler', {'iters': iters})


def build_optimizer(cfg, model, lr_scheduler, path=None):
    """Build ``cfg['optimizer']`` for ``model``'s parameters.

    The factory named by ``type`` is called with ``parameters=``
    ``model.parameters()``, ``learning_rate=lr_scheduler`` and the other keys.
    """
    with errors_of(path):
        return _build_section(cfg, 'optimizer', {
            'parameters': model.parameters(), 'learning_rate': lr_scheduler})


# ------------------------------------------------------------ SegBuilder

class SegBuilder:
    """Builds and caches the components of ``config``.

    Args:
        config (Config): A checked :class:`paddleseg.cvlibs.Config`. Its
            ``dic`` is read when a property is first used.

    Errors are one-line :class:`~paddleseg.errors.ConfigError` s starting
    with the config's path, e.g. ``x.yml: optimizer: is required for
    training`` when the config has no optimizer, or ``x.yml: lr_scheduler:
    cannot build PolynomialDecay: ...``.
    """

    def __init__(self, config):
        self.config = config

    @property
    def _dic(self):
        return self.config.dic

    @property
    def _path(self):
        return self.config.path

    def require(self, *keys, needed_for=None):
        """Raise when the config lacks one of the dotted ``keys``: the one
        required-key check after loading (:func:`._keys.required_problem`).

        Args:
            needed_for (str, optional): Said after ``is required``; default:
                ``' for training'`` for a section training needs.

        Raises:
            ConfigError: ``'<path>: <key>: is required<needed_for>'``.
        """
        for key in keys:
            section = SECTIONS.get(key)
            why = needed_for
            if why is None and section is not None and section.training:
                why = ' for training'
            problem = required_problem(self._dic, key, why)
            if problem is not None:
                with errors_of(self._path):
                    raise ConfigError('{}: {}'.format(join_key(problem[0]),
                                                      problem[1]))

    @cached_property
    def model(self):
        """The model (``paddle.nn.Layer``); ``num_classes`` defaults to the
        dataset's (:attr:`Config.num_classes`)."""
        self.require('model')
        return build_model(self._dic, self._path)

    @cached_property
    def lr_scheduler(self):
        """The learning-rate schedule, over ``iters`` iterations."""
        self.require('lr_scheduler', 'iters')
        return build_lr_scheduler(self._dic, self._dic['iters'], self._path)

    @cached_property
    def optimizer(self):
        """The optimizer of :attr:`model`'s parameters, driven by
        :attr:`lr_scheduler`."""
        self.require('optimizer')
        return build_optimizer(self._dic, self.model, self.lr_scheduler,
                               self._path)

    @cached_property
    def loss(self):
        """``{'types': [loss layers], 'coef': [floats]}``, one per model
        output, as PaddleSeg's."""
        self.require('loss')
        return build_losses(self._dic, self._path)

    @cached_property
    def train_dataset(self):
        """The training dataset."""
        self.require('train_dataset')
        return build_dataset(self._dic, 'train_dataset', self._path)

    @cached_property
    def val_dataset(self):
        """The evaluation dataset."""
        self.require('val_dataset')
        return build_dataset(self._dic, 'val_dataset', self._path)

    @cached_property
    def train_dataset_class(self):
        """The class ``train_dataset.type`` names (nothing is built)."""
        return self._dataset_class('train_dataset')

    @cached_property
    def val_dataset_class(self):
        """The class ``val_dataset.type`` names (nothing is built)."""
        return self._dataset_class('val_dataset')

    @cached_property
    def val_transforms(self):
        """``val_dataset.transforms`` built, as a list (what predict.py
        applies to each image); ``[]`` when it has none."""
        self.require('val_dataset')
        specs = self._dic['val_dataset'].get('transforms') or []
        return build_transforms(specs, 'val_dataset.transforms', self._path)

    @cached_property
    def export_transforms(self):
        """The transforms an export carries (:attr:`Config.export_transforms`
        built, as a list): a bad one fails when exporting, not at
        deployment."""
        key, specs = self.config.export_transforms
        return build_transforms(specs, key + '.transforms', self._path)

    def _dataset_class(self, key):
        self.require(key)
        with errors_of(self._path):
            return resolve_component(self._dic[key].get('type'), (key,))
