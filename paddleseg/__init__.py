"""PointRend-Paddle's own PaddleSeg-style toolkit.

Importing the package registers every component (models, backbones,
datasets, transforms, losses) in :mod:`paddleseg.cvlibs.manager`.
"""

import os
import warnings

# Intel OpenMP's idle workers spin 200 ms after each parallel region and slow
# down kernels that run outside OpenMP (see utils.env.idle_threads_sleep);
# read when OpenMP starts, so set before paddle runs its first kernel.
os.environ.setdefault('KMP_BLOCKTIME', '0')

# paddle warns at import that it has no compiler cache for custom C++ ops;
# this toolkit builds none.
warnings.filterwarnings('ignore', message='No ccache found')

__version__ = '0.1.0'

from paddleseg import datasets, models, transforms  # noqa: E402,F401  (registration)
