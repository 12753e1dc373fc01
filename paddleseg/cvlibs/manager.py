"""Component registries, keyed by class (or function) name.

A config says ``type: ResNet101_vd``; the builder looks that name up in the
registry that matches the config key (``model`` -> MODELS, ``backbone`` ->
BACKBONES, ...). Components register themselves with a decorator::

    @manager.BACKBONES.add_component
    def ResNet18_vd(**kwargs): ...

Registering a name twice raises, so two modules can never silently shadow
each other; looking up an unknown name raises an error that lists the known
names and, when given, the config key that asked for it.
"""

from paddleseg.errors import UnknownComponentError

__all__ = ['Registry', 'ComponentManager', 'MODELS', 'BACKBONES', 'DATASETS', 'TRANSFORMS',
           'LOSSES', 'OPTIMIZERS', 'LR_SCHEDULERS', 'ALL_REGISTRIES']


class Registry:
    """A name -> callable table for one kind of component.

    Args:
        name (str): What the registry holds, used in error messages
            (e.g. ``'backbones'``).
    """

    def __init__(self, name):
        self.name = name
        self._components = {}

    def add_component(self, component, name=None):
        """Register ``component`` under ``name`` (default: its ``__name__``).

        Usable as a decorator. A list or tuple registers every item.

        Raises:
            KeyError: if the name is already registered.
            TypeError: if ``component`` is not callable.
        """
        if isinstance(component, (list, tuple)):
            for item in component:
                self.add_component(item)
            return component
        if not callable(component):
            raise TypeError('{!r} is not a class or function and cannot be '
                            'registered in {}'.format(component, self.name))
        key = name or component.__name__
        if key in self._components:
            raise KeyError('{} already has a component named {!r} ({!r}); '
                           'names must be unique'.format(
                               self.name, key, self._components[key]))
        self._components[key] = component
        return component

    def get(self, name, key=None):
        """Return the component called ``name``.

        Args:
            name (str): The registered name (the config's ``type``).
            key (str, optional): The config key that asked for it, named in
                the error message.

        Raises:
            UnknownComponentError: ``name`` is not registered; the message lists
                the known names.
        """
        if name not in self._components:
            where = '{}: '.format(key) if key else ''
            raise UnknownComponentError(
                '{}unknown {} type {!r}; known: {}'.format(
                    where, self.name, name, ', '.join(self.names()) or '(none)'))
        return self._components[name]

    def names(self):
        """The registered names, sorted."""
        return sorted(self._components)

    @property
    def components_dict(self):
        """``{name: class or function}`` of every registered component, as
        PaddleSeg's ``ComponentManager.components_dict``. A copy: register
        with :meth:`add_component`, which refuses duplicate names."""
        return dict(self._components)

    def __contains__(self, name):
        return name in self._components

    def __getitem__(self, name):
        return self.get(name)

    def __len__(self):
        return len(self._components)

    def __repr__(self):
        return 'Registry({!r}, {})'.format(self.name, self.names())


ComponentManager = Registry
"""PaddleSeg's name for :class:`Registry`."""

MODELS = Registry('models')
BACKBONES = Registry('backbones')
DATASETS = Registry('datasets')
TRANSFORMS = Registry('transforms')
LOSSES = Registry('losses')
OPTIMIZERS = Registry('optimizers')
LR_SCHEDULERS = Registry('lr_schedulers')

ALL_REGISTRIES = (MODELS, BACKBONES, DATASETS, TRANSFORMS, LOSSES, OPTIMIZERS,
                  LR_SCHEDULERS)
