"""Registries (:mod:`.manager`), and the config: :class:`Config` (read,
merge, override, check) and :class:`SegBuilder` (build).

PaddleSeg 2.8's API: ``from paddleseg.cvlibs import Config, SegBuilder,
manager``. ``Config`` and ``SegBuilder`` are imported on first use (PEP 562),
so ``from paddleseg.cvlibs import manager``, which every component module
does to register itself, imports no config module (and not
:mod:`paddleseg.optimizers`, which the schema imports).
"""

import importlib

from paddleseg.cvlibs import manager

__all__ = ['manager', 'Config', 'SegBuilder']

_LAZY = {'Config': 'paddleseg.cvlibs.config',
         'SegBuilder': 'paddleseg.cvlibs.builder'}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError('module {!r} has no attribute {!r}'.format(
        __name__, name))


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
