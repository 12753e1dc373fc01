"""Registries, and the config: parse, check, build.

PaddleSeg 2.8's API: ``from paddleseg.cvlibs import Config, SegBuilder,
manager``.
"""

from paddleseg.cvlibs import manager  # first: the components register in it
from paddleseg.cvlibs.config import Config  # noqa: E402
from paddleseg.cvlibs.builder import SegBuilder  # noqa: E402

__all__ = ['manager', 'Config', 'SegBuilder']
