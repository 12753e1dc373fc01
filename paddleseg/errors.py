"""User-facing errors.

Everything a user can get wrong (a config key, a file, a checkpoint) raises a
subclass of :class:`SegError` whose message is one line naming the file or key.
The entry scripts print that line and exit non-zero; ``--debug`` shows the
traceback instead.
"""


import re

_WORKER_PREFIX = 'DataLoader worker('


class SegError(Exception):
    """Base class of the errors caused by user input rather than by a bug.

    ``paddle.io.DataLoader`` re-raises an error of one of its worker
    processes in the main process as ``type(exc)('DataLoader worker(N)
    caught <Name> with message:\n<the worker's traceback>')``. A SegError
    built that way keeps only the original one-line message (the traceback
    text goes to :attr:`worker_traceback`, shown by ``--debug``), so an
    unreadable image says the same thing with or without ``--num_workers``.
    """

    worker_traceback = None  # where a DataLoader raised it, as text

    def __init__(self, *args):
        if (len(args) == 1 and isinstance(args[0], str)
                and args[0].startswith(_WORKER_PREFIX) and '\n' in args[0]):
            message = _worker_message(args[0], type(self).__name__)
            if message is not None:
                self.worker_traceback = args[0].split('\n', 1)[1]
                args = (message,)
        super().__init__(*args)


def first_line(exc, with_type=False):
    """The first line of ``exc``'s message, for a one-line log or error.

    A message-less exception gives its type's name; ``with_type`` puts
    ``'<Type>: '`` before a message.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ''
    name = type(exc).__name__
    if with_type:
        return '{}: {}'.format(name, line) if line else name
    return line or name


def last_line(exc):
    """The last non-empty line of ``exc``'s message, stripped: where the C++
    runtimes (Paddle, OpenVINO) put the check that failed, under their own
    source locations. A message-less exception gives its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _worker_message(text, name):
    """The message of the last ``<module>.<name>: <message>`` line of a
    formatted traceback, or None."""
    pattern = re.compile(r'^(?:[\w.]+\.)?{}: (.*)$'.format(re.escape(name)))
    for line in reversed(text.splitlines()):
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


class ConfigError(SegError):
    """A config file, a key in it, or a command-line override is wrong."""


class DeployError(ConfigError, ValueError):
    """An export or an engine is asked for something it cannot do: a bad
    deployment option (engine, device, precision, threads, TensorRT
    setting), an export folder that is not one, or the wrong format for the
    engine (:mod:`paddleseg.deploy`). A ValueError too, as these were before
    they had their own type."""


class UnknownComponentError(ConfigError, KeyError):
    """A ``type:`` names a component that no registry holds."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ''


class DatasetError(SegError):
    """A dataset folder, file list, image or label is missing or malformed."""


class CheckpointError(SegError):
    """A weights file is missing, unreadable or belongs to another model."""
