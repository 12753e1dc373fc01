"""The config front door: :class:`Config` reads a YAML file with its
``_base_`` files, applies the flags and ``--opts``, and checks the result.

Its private parts: :mod:`._parser` (read, merge, override) and
:mod:`._checker` (check, following :mod:`.schema`). The objects come from
:class:`paddleseg.cvlibs.SegBuilder`, as in PaddleSeg 2.8; the entry
scripts build through both::

    cfg = Config('configs/demo/x.yml', iters=2, batch_size=2)
    cfg.iters, cfg.batch_size, cfg.test_config, cfg.dic, cfg.num_classes
    builder = SegBuilder(cfg)       # paddleseg.cvlibs.builder
"""

import yaml

from paddleseg.cvlibs import _keys
from paddleseg.cvlibs._checker import check_config
from paddleseg.cvlibs._parser import (apply_cli_args, apply_opts,
                                      load_config_with_sources)

__all__ = ['Config']


class Config:
    """A config file merged with its ``_base_`` files, overridden and checked.

    The arguments are those of PaddleSeg 2.8's ``Config``. The flags are
    applied first, then ``opts`` (which has the last word), then the whole
    config is checked; any problem raises a one-line
    :class:`~paddleseg.errors.ConfigError` that starts with ``path``. The
    objects (model, datasets, optimizer, ...) come from
    :class:`paddleseg.cvlibs.SegBuilder`, as in PaddleSeg 2.8.

    Args:
        path (str): The YAML config file.
        learning_rate (float, optional): Sets ``lr_scheduler.learning_rate``.
        batch_size (int, optional): Sets ``batch_size``.
        iters (int, optional): Sets ``iters``.
        opts (list[str], optional): ``'key.path=value'`` overrides, as
            ``--opts``.
        for_training (bool, optional): Also require the keys training needs
            (``train_dataset``, ``loss``, ``optimizer``, ``lr_scheduler``,
            ``iters``, ``batch_size``). Default False: only ``model`` is
            required; :class:`SegBuilder` requires the training keys when a
            training object is first asked for.

    Attributes:
        path (str): The file.
        dic (dict): The merged, overridden and checked config; the builder
            reads it, so changes made here are seen by objects built later.
        sources (dict): Dotted key -> the file or flag that set it.

    Raises:
        ConfigError: the file, a base, an override or a value is wrong.
    """

    def __init__(self, path, learning_rate=None, batch_size=None, iters=None,
                 opts=None, *, for_training=False):
        self.path = path
        self.dic, self.sources = load_config_with_sources(path)
        with _keys.errors_of(path):
            apply_cli_args(self.dic, iters=iters, batch_size=batch_size,
                           learning_rate=learning_rate, sources=self.sources)
            apply_opts(self.dic, opts or [], sources=self.sources)
        self.check(for_training=for_training)

    def check(self, for_training=False):
        """Check :attr:`dic` again (e.g. after changing it), with the
        training keys required when ``for_training``.

        Raises:
            ConfigError: as the constructor.
        """
        check_config(self.dic, self.path, for_training=for_training,
                     sources=self.sources)

    # PaddleSeg 2.8's properties
    @property
    def batch_size(self):
        """Batch size per device, or None when the config has none."""
        return self.dic.get('batch_size')

    @property
    def iters(self):
        """Total training iterations, or None when the config has none."""
        return self.dic.get('iters')

    @property
    def test_config(self):
        """A copy of ``test_config``: default keyword arguments of
        ``paddleseg.core.evaluate`` (``{}`` when absent)."""
        return dict(self.dic.get('test_config') or {})

    @property
    def num_classes(self):
        """The number of classes: the model's ``num_classes``, else the
        training dataset's, else the evaluation dataset's (a spec's
        ``num_classes`` or its class's ``NUM_CLASSES``); None when none
        says (:func:`._keys.num_classes`)."""
        return _keys.num_classes(self.dic)

    @property
    def export_transforms(self):
        """``(key, specs)``: the transforms an export carries in
        deploy.yaml, the ``export.transforms`` if given, else
        ``val_dataset``'s (``[]`` when neither has any). Built:
        :attr:`SegBuilder.export_transforms`."""
        key = 'export' if self.export_config.get('transforms') else 'val_dataset'
        return key, list(self._section(key).get('transforms') or [])

    @property
    def model_cfg(self):
        """A copy of the ``model`` mapping (``{}`` when absent)."""
        return self._section('model')

    @property
    def loss_cfg(self):
        """A copy of the ``loss`` mapping (``{}`` when absent)."""
        return self._section('loss')

    @property
    def optimizer_cfg(self):
        """A copy of the ``optimizer`` mapping (``{}`` when absent)."""
        return self._section('optimizer')

    @property
    def lr_scheduler_cfg(self):
        """A copy of the ``lr_scheduler`` mapping (``{}`` when absent)."""
        return self._section('lr_scheduler')

    @property
    def train_dataset_cfg(self):
        """A copy of the ``train_dataset`` mapping (``{}`` when absent)."""
        return self._section('train_dataset')

    @property
    def val_dataset_cfg(self):
        """A copy of the ``val_dataset`` mapping (``{}`` when absent)."""
        return self._section('val_dataset')

    @property
    def export_config(self):
        """A copy of the ``export`` mapping (``{}`` when absent)."""
        return self._section('export')

    def _section(self, key):
        return dict(self.dic.get(key) or {})

    def __str__(self):
        return yaml.safe_dump(self.dic, sort_keys=False)

    def __repr__(self):
        return 'Config({!r})'.format(self.path)
