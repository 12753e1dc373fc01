"""PointRend-Paddle's own PaddleSeg-style toolkit.

Importing the package registers the components (models, backbones,
datasets, transforms, losses) in :mod:`paddleseg.cvlibs.manager`; the
optimizers and learning-rate schedules register with
:mod:`paddleseg.optimizers`, which the config layer imports.
:class:`paddleseg.cvlibs.Config` and ``SegBuilder`` build them from a
config, :mod:`paddleseg.core` trains, evaluates and predicts, and
:mod:`paddleseg.cli` is the entry scripts' command line. It sets no
environment variable and tunes nothing of the importing process; programs
that own their process opt in to the CPU tuning with
:func:`paddleseg.utils.env.tune_process`.
"""

import warnings

__version__ = '0.1.0'

# paddle warns when first imported that it has no compiler cache for custom
# C++ ops; this toolkit builds none. The filter ends with the import.
with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='No ccache found')
    from paddleseg import datasets, models, transforms  # noqa: F401  (registration)
