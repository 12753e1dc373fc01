"""Data transforms (registered in ``manager.TRANSFORMS``) and their array-level functions."""

from paddleseg.transforms import functional
from paddleseg.transforms.transforms import *  # noqa: F401,F403
from paddleseg.transforms.transforms import __all__
