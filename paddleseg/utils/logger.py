"""The toolkit's logger.

Messages go to stdout as ``2024-01-31 12:00:00 [INFO] message``. Under
``paddle.distributed`` only the process whose ``PADDLE_TRAINER_ID`` is 0 (the
default when the variable is unset) logs INFO; the other ranks log WARNING
and above, so a multi-card run prints each progress line once.
"""

import logging
import os
import sys

_FORMAT = '%(asctime)s [%(levelname)s] %(message)s'
_DATE_FORMAT = '%Y-%m-%d %H:%M:%S'


def _rank():
    """Return this process's trainer id from ``PADDLE_TRAINER_ID`` (default 0)."""
    return int(os.environ.get('PADDLE_TRAINER_ID', '0'))


class _StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each message, so output follows
    whoever replaces it later (Jupyter, pytest's capture)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _build_logger():
    """Create the ``paddleseg`` logger with one stdout handler."""
    log = logging.getLogger('paddleseg')
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, _DATE_FORMAT))
        log.addHandler(handler)
    log.setLevel(logging.INFO if _rank() == 0 else logging.WARNING)
    log.propagate = False
    return log


logger = _build_logger()


def set_level(level):
    """Set the logger's level, e.g. ``'DEBUG'`` or ``logging.DEBUG``."""
    logger.setLevel(level)


def debug(msg, *args):
    """Log ``msg % args`` at DEBUG level (hidden unless :func:`set_level` lowers it)."""
    logger.debug(msg, *args)


def info(msg, *args):
    """Log ``msg % args`` at INFO level (rank 0 only)."""
    logger.info(msg, *args)


def warning(msg, *args):
    """Log ``msg % args`` at WARNING level."""
    logger.warning(msg, *args)


def error(msg, *args):
    """Log ``msg % args`` at ERROR level."""
    logger.error(msg, *args)
