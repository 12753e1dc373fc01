"""Load, override and check a config in one call.

The pieces live in :mod:`config_parser` (read and merge), :mod:`config_checker`
(check) and :mod:`config_builder` (build objects); this module only composes
the first two for the entry scripts.
"""

from paddleseg.cvlibs.config_checker import check_config
from paddleseg.cvlibs.config_parser import (apply_cli_args, apply_opts,
                                            load_config_with_sources)
from paddleseg.errors import ConfigError

__all__ = ['load_and_check']


def load_and_check(path, opts=None, iters=None, batch_size=None,
                   learning_rate=None, for_training=True):
    """Load ``path`` with its bases, apply the command-line flags, then the
    ``--opts`` overrides (so ``--opts`` has the last word), and check it.

    Args:
        path (str): The config file.
        opts (list[str], optional): ``key.path=value`` overrides.
        iters, batch_size, learning_rate (optional): The entry script's
            flags; None leaves the file's value.
        for_training (bool): Require the training keys. Default True.

    Returns:
        dict: The checked config.

    Raises:
        ConfigError: one line that starts with ``path``.
    """
    cfg, sources = load_config_with_sources(path)
    try:
        apply_cli_args(cfg, iters=iters, batch_size=batch_size,
                       learning_rate=learning_rate, sources=sources)
        apply_opts(cfg, opts or [], sources=sources)
    except ConfigError as exc:
        raise type(exc)('{}: {}'.format(path, exc)) from None
    check_config(cfg, path, for_training=for_training, sources=sources)
    return cfg
