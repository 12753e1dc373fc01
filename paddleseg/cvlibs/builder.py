"""PaddleSeg 2.8's ``SegBuilder``: the objects a :class:`Config` describes.

Each property is built on first use, with the functions of
:mod:`config_builder` the entry scripts use, and then cached: ``model`` is
built once, ``optimizer`` optimizes that model's parameters with that
``lr_scheduler``::

    from paddleseg.cvlibs import Config, SegBuilder

    cfg = Config('configs/demo/x.yml', iters=100, batch_size=2)
    builder = SegBuilder(cfg)
    model, optimizer = builder.model, builder.optimizer
    losses = builder.loss          # {'types': [loss layers], 'coef': [floats]}
"""

from functools import cached_property

from paddleseg.cvlibs import config_builder
from paddleseg.cvlibs.schema import SECTIONS
from paddleseg.errors import ConfigError

__all__ = ['SegBuilder']


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

    def _need(self, *keys):
        """Raise when the config lacks one of ``keys``."""
        for key in keys:
            if self._dic.get(key) is None:
                needed = ' for training' if SECTIONS[key].training else ''
                raise ConfigError('{}: {}: is required{}'.format(
                    self._path, key, needed))

    @cached_property
    def model(self):
        """The model (``paddle.nn.Layer``); ``num_classes`` defaults to the
        dataset's."""
        self._need('model')
        return config_builder.build_model(self._dic, self._path)

    @cached_property
    def lr_scheduler(self):
        """The learning-rate schedule, over ``iters`` iterations."""
        self._need('lr_scheduler', 'iters')
        return config_builder.build_lr_scheduler(
            self._dic, self._dic['iters'], self._path)

    @cached_property
    def optimizer(self):
        """The optimizer of :attr:`model`'s parameters, driven by
        :attr:`lr_scheduler`."""
        self._need('optimizer')
        return config_builder.build_optimizer(
            self._dic, self.model, self.lr_scheduler, self._path)

    @cached_property
    def loss(self):
        """``{'types': [loss layers], 'coef': [floats]}``, one per model
        output, as PaddleSeg's."""
        self._need('loss')
        return config_builder.build_losses(self._dic, self._path)

    @cached_property
    def train_dataset(self):
        """The training dataset."""
        self._need('train_dataset')
        return config_builder.build_dataset(self._dic, 'train_dataset',
                                            self._path)

    @cached_property
    def val_dataset(self):
        """The evaluation dataset."""
        self._need('val_dataset')
        return config_builder.build_dataset(self._dic, 'val_dataset',
                                            self._path)

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
        self._need('val_dataset')
        return config_builder.build_transforms(self._dic, 'val_dataset',
                                               self._path)

    def _dataset_class(self, key):
        self._need(key)
        try:
            return config_builder.resolve_component(
                self._dic[key].get('type'), (key,))
        except ConfigError as exc:
            raise type(exc)('{}: {}'.format(self._path, exc)) from None
