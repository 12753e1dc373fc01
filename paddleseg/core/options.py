"""The options of a training run, one keyword-only dataclass, checked when made."""

import dataclasses

from paddleseg.cvlibs.schema import is_positive_int
from paddleseg.errors import ConfigError


@dataclasses.dataclass(kw_only=True)
class TrainOptions:
    """How to train; see :func:`paddleseg.core.train` for each field."""

    iters: int
    batch_size: int
    save_dir: str = 'output'
    save_interval: int = 1000
    eval_interval: int | None = None   # None: save_interval
    log_iters: int = 10
    num_workers: int = 0
    use_vdl: bool = False
    keep_checkpoint_max: int = 5
    do_eval: bool = False
    resume_model: str | None = None
    precision: str = 'fp32'
    amp_level: str = 'O1'
    seed: int | None = None
    nan_policy: str = 'stop'
    eval_kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.nan_policy not in ('stop', 'skip'):
            raise ConfigError("nan_policy must be 'stop' or 'skip', got {!r}".format(
                self.nan_policy))
        for name in ('save_interval', 'log_iters', 'eval_interval', 'keep_checkpoint_max'):
            value = getattr(self, name)
            if name == 'eval_interval' and not value:  # 0 or None: save_interval
                continue
            if not is_positive_int(value):
                raise ConfigError('--{} must be a positive integer, got {!r}'.format(name, value))
        self.eval_interval = self.eval_interval or self.save_interval
        self.eval_kwargs = dict(self.eval_kwargs or {})
