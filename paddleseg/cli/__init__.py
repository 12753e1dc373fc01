"""The argparse plumbing of the entry scripts (train.py, val.py, predict.py,
export.py), above :mod:`paddleseg.core` and :mod:`paddleseg.deploy`."""
