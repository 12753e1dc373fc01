"""User-facing errors.

Everything a user can get wrong (a config key, a file, a checkpoint) raises a
subclass of :class:`SegError` whose message is one line naming the file or key.
The entry scripts print that line and exit non-zero; ``--debug`` shows the
traceback instead.
"""


class SegError(Exception):
    """Base class of the errors caused by user input rather than by a bug."""


class ConfigError(SegError):
    """A config file, a key in it, or a command-line override is wrong."""


class UnknownComponentError(ConfigError, KeyError):
    """A ``type:`` names a component that no registry holds."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ''


class DatasetError(SegError):
    """A dataset folder, file list, image or label is missing or malformed."""


class CheckpointError(SegError):
    """A weights file is missing, unreadable or belongs to another model."""
