"""PointRend-Paddle's own PaddleSeg-style toolkit.

Importing the package registers every component (models, backbones,
datasets, transforms, losses) in :mod:`paddleseg.cvlibs.manager`.
"""

__version__ = '0.1.0'
