"""PointRend-Paddle's own PaddleSeg-style toolkit.

Importing the package registers every component (models, backbones,
datasets, transforms, losses) in :mod:`paddleseg.cvlibs.manager`.
"""

import warnings

# paddle warns at import that it has no compiler cache for custom C++ ops;
# this toolkit builds none.
warnings.filterwarnings('ignore', message='No ccache found')

__version__ = '0.1.0'

# before any paddle kernel runs: MKL's fast code path on AMD CPUs
from paddleseg.mkl_dispatch import set_mkl_code_path  # noqa: E402

set_mkl_code_path()

from paddleseg import datasets, models, transforms  # noqa: E402,F401  (registration)
