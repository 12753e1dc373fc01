"""The command-line layer of the entry scripts (train.py, val.py, predict.py,
export.py), above :mod:`paddleseg.core` and :mod:`paddleseg.deploy`:

* :mod:`.args`: the shared flags, one-line errors, exit status.
* :mod:`.build`: from the flags to a :class:`~paddleseg.cvlibs.Config`, the
  device, the model to run and the evaluation's keyword arguments.
* :mod:`.engine_args`: ``--engine`` and the exported model it loads.

Nothing below this package imports it.
"""
