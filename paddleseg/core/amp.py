"""Mixed precision (AMP): precision checks, model/optimizer preparation,
autocast, the loss scaler and its checkpoint state.

How a training run uses it (in this order)::

    precision, amp_level = resolve_precision(precision, amp_level)  # after setup_device
    # resuming: the model's float32 weights first, into the float32 model
    model, optimizer = prepare(model, optimizer, precision, amp_level)  # before DataParallel
    # resuming: then the optimizer state, in the names the prepared optimizer
    # asks for (paddleseg.core.optim_state.load_optimizer_state)
    scaler = make_grad_scaler(precision)
    load_scaler_state(scaler, states.get('scaler.pdstate'))  # resuming
    ...
    with autocast(precision, amp_level):   # each step, and evaluation
        loss = ...
    scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
    ...
    states['scaler.pdstate'] = scaler_state(scaler)            # each checkpoint

(Weights loaded after :func:`prepare` go through :func:`match_state_dtypes`:
O2 weights are float16, checkpoints float32.)

Levels (paddle's): ``O1`` leaves the weights float32 and casts op by op
inside :func:`autocast`; ``O2`` also casts the weights to float16 (except
normalisation layers) with :func:`paddle.amp.decorate`, and the optimizer
keeps float32 master weights (``master_weight=True``) that it updates and
copies back to the float16 weights. ``save_dtype='float32'`` makes the
model's ``state_dict()`` float32, so checkpoints of O2 runs load anywhere.

Whatever the level, PointRend's point coordinates are float32, its point
indices int64, and the losses cast logits to float32 and run outside
autocast (:mod:`paddleseg.models.point_features`,
:mod:`paddleseg.models.losses`).

Devices: paddle's AMP runs on GPUs (float16 needs compute capability 7.0;
below, paddle silently runs float32), XPUs (XPU2 and later) and custom
devices; on a CPU it does nothing. :func:`resolve_precision` turns fp16 on a
CPU into fp32 with a warning (the toolkit's documented behaviour) and
refuses fp16 on a GPU or XPU that cannot run it, in one ConfigError line.
"""

import contextlib

import paddle

from paddleseg.errors import ConfigError
from paddleseg.models.point_features import as_float32, float32_region  # noqa: F401
from paddleseg.utils import logger
from paddleseg.utils.checkpoint import cast_to
from paddleseg.utils.dist import device_kind, parse_device

PRECISIONS = ('fp32', 'fp16')
AMP_LEVELS = ('O1', 'O2')
AMP_DTYPE = 'float16'
INIT_LOSS_SCALING = 1024.0
"""Initial loss scale of :func:`make_grad_scaler`: the toolkit's (and
PaddleSeg's) value, not paddle's default of 2**16; dynamic loss scaling
adjusts it either way."""

MIN_CUDA_CAPABILITY = (7, 0)
"""paddle.amp.auto_cast disables float16 below this compute capability."""


def fp16_unsupported_reason(device=None):
    """Why ``device`` (default: the current one) cannot run float16 AMP, or
    None when it can.

    CPU: paddle's AMP does nothing there. GPU: compute capability below 7.0
    (``paddle.device.cuda.get_device_capability``), unless ROCm. XPU: paddle
    says so (``paddle.amp.is_float16_supported``, XPU2 and later). Custom
    devices: assumed able (paddle's auto_cast supports float16 on every
    CustomPlace).
    """
    if device is None:
        device = paddle.device.get_device()
    kind, index = parse_device(device)
    if kind == 'cpu':
        return 'paddle runs no float16 AMP on a CPU'
    if kind == 'gpu' and not paddle.is_compiled_with_rocm():
        major, minor = paddle.device.cuda.get_device_capability(index)
        if (major, minor) < MIN_CUDA_CAPABILITY:
            return ('{} ({}) has compute capability {}.{}; float16 AMP needs {}.{} or '
                    'higher'.format(device, paddle.device.cuda.get_device_name(index),
                                    major, minor, *MIN_CUDA_CAPABILITY))
    if kind == 'xpu' and not paddle.amp.is_float16_supported(device):
        return '{} does not support float16 AMP (XPU2 or later does)'.format(device)
    return None


def resolve_precision(precision, amp_level='O1', device=None, what='training'):
    """The one precision rule: check ``precision`` and ``amp_level`` for
    ``device`` and return the pair to train (or evaluate) with. Training
    (:func:`paddleseg.core.train`), evaluation
    (:func:`paddleseg.core.val.resolve_precision`) and the entry scripts
    call it.

    Args:
        precision (str): 'fp32' or 'fp16'.
        amp_level (str, optional): 'O1' or 'O2' (used with fp16). Default: 'O1'.
        device (str, optional): Default: paddle's current device, so call
            this after ``setup_device``.
        what (str, optional): What runs, for the warning ('training',
            'evaluating'). Default: 'training'.

    Returns:
        tuple(str, str): ``(precision, amp_level)``: fp16 on a CPU becomes
        ``'fp32'`` with a warning (paddle's AMP does nothing there).

    Raises:
        ConfigError: an unknown precision or level; fp16 on a GPU or XPU
            that cannot run it (one line naming the device and why).
    """
    if precision not in PRECISIONS:
        raise ConfigError('--precision must be one of {}, got {!r}'.format(
            ', '.join(PRECISIONS), precision))
    if amp_level not in AMP_LEVELS:
        raise ConfigError('--amp_level must be one of {}, got {!r}'.format(
            ', '.join(AMP_LEVELS), amp_level))
    if precision == 'fp32':
        return precision, amp_level
    if device is None:
        device = paddle.device.get_device()
    reason = fp16_unsupported_reason(device)
    if reason is None:
        return precision, amp_level
    if device_kind(device) == 'cpu':
        logger.warning('fp16 needs a GPU; {} in fp32 on {}'.format(what, device))
        return 'fp32', amp_level
    raise ConfigError('--precision fp16: {}; use --precision fp32 (or another device)'
                      .format(reason))


def prepare(model, optimizer, precision, amp_level, excluded_layers=None):
    """Prepare ``model`` and ``optimizer`` for mixed precision.

    fp32 and O1: nothing (O1 is :func:`autocast` only); both are returned
    as they are. O2: ``paddle.amp.decorate(models=model,
    optimizers=optimizer, level='O2', dtype='float16', master_weight=True,
    save_dtype='float32', excluded_layers=excluded_layers)``: the weights
    become float16 except BatchNorm/LayerNorm/InstanceNorm and
    ``excluded_layers``, the optimizer keeps float32 master weights, and
    ``model.state_dict()`` returns float32 tensors (checkpoints stay fp32).

    Call it once, on the model's device, before wrapping the model in
    ``paddle.DataParallel`` (or SyncBatchNorm conversion), best after
    restoring a checkpoint's weights (the float32 weights then go into
    float32 parameters) and before restoring its optimizer state: a
    multi-precision optimizer asks for its state by the master weights'
    names, which :func:`paddleseg.core.optim_state.load_optimizer_state`
    gives it (building master weights a checkpoint of another precision
    lacks). Weights loaded later need :func:`match_state_dtypes`.

    Args:
        model (nn.Layer): Not a ``paddle.DataParallel``.
        optimizer (paddle.optimizer.Optimizer|None): None for evaluation.
        precision (str): 'fp32' or 'fp16' (as :func:`resolve_precision` returns).
        amp_level (str): 'O1' or 'O2'.
        excluded_layers (nn.Layer|type|list, optional): Layers (or layer
            types) kept float32 under O2. Default: None.

    Returns:
        tuple: ``(model, optimizer)`` (``optimizer`` None if given None).
    """
    if precision != 'fp16' or amp_level != 'O2':
        return model, optimizer
    if isinstance(model, paddle.DataParallel):
        raise ValueError('prepare() the model before wrapping it in paddle.DataParallel')
    kwargs = dict(models=model, level='O2', dtype=AMP_DTYPE, master_weight=True,
                  save_dtype='float32', excluded_layers=excluded_layers)
    if optimizer is None:
        return paddle.amp.decorate(**kwargs), None
    model, optimizer = paddle.amp.decorate(optimizers=optimizer, **kwargs)
    return model, optimizer


def autocast(precision, amp_level='O1', custom_white_list=None, custom_black_list=None):
    """The autocast context of a forward pass (training or evaluation).

    fp32: a no-op context. fp16: ``paddle.amp.auto_cast(enable=True,
    level=amp_level, dtype='float16', ...)``. Evaluate an O2-prepared model
    under O2; a float32 model evaluated in fp16 should use O1.
    """
    if precision != 'fp16':
        return contextlib.nullcontext()
    return paddle.amp.auto_cast(enable=True, level=amp_level, dtype=AMP_DTYPE,
                                custom_white_list=custom_white_list,
                                custom_black_list=custom_black_list)


class _GradScaler(paddle.amp.GradScaler):
    """``paddle.amp.GradScaler`` whose ``update`` survives numpy 2.4.

    Paddle 3.3's logs each lowering of the loss scale with ``float()`` of its
    ``[1]``-shaped scale tensor, which numpy 2.4 refuses (``TypeError: only
    0-dimensional arrays can be converted to Python scalars``): the first
    fp16 overflow would end the run. The scale is 0-d while paddle's update
    runs, ``[1]`` otherwise (as paddle's ops and state dict expect)."""

    def _update(self):
        scale = getattr(self, '_scale', None)
        if scale is None or scale.ndim == 0:
            return super()._update()
        shape = list(scale.shape)
        self._scale = scale.reshape([])
        try:
            return super()._update()
        finally:
            self._scale = self._scale.reshape(shape)


def make_grad_scaler(precision, init_loss_scaling=INIT_LOSS_SCALING, **kwargs):
    """A ``paddle.amp.GradScaler(enable=precision == 'fp16',
    init_loss_scaling=init_loss_scaling, **kwargs)`` (dynamic loss scaling,
    paddle's defaults otherwise; see :class:`_GradScaler`). Disabled, it
    passes the loss and the optimizer step through unchanged (paddle also
    disables it on a CPU)."""
    return _GradScaler(enable=precision == 'fp16', init_loss_scaling=init_loss_scaling,
                       **kwargs)


def step_skipped(scaler):
    """Whether ``scaler``'s last ``step`` skipped the optimizer's update
    because the gradients were not finite (its loss scale then went down at
    ``update``). Paddle keeps that only privately (``_cache_found_inf``, a
    bool or a bool tensor, which its ``update`` has read already); False for
    a disabled scaler, which never skips."""
    if not scaler.is_enable():
        return False
    found = getattr(scaler, '_cache_found_inf', None)
    return bool(found) if found is not None else False


def scaler_state(scaler):
    """The scaler's state for a checkpoint: ``scaler.state_dict()``
    (``{'scale': array([s]), 'incr_count': ..., ...}``), ``{}`` when the
    scaler is disabled (fp32, CPU)."""
    return scaler.state_dict() if scaler.is_enable() else {}


def load_scaler_state(scaler, state):
    """Restore :func:`scaler_state` into ``scaler``; return whether it did.

    Nothing happens (False) when ``state`` is empty or None (a checkpoint of
    an fp32 run: the scaler starts afresh) or when ``scaler`` is disabled
    (an fp16 checkpoint resumed in fp32: its state does not apply). The
    ``scale`` entry may be a numpy array, a list or a Tensor (as
    ``paddle.load`` returns it).
    """
    if not state:
        if scaler.is_enable():
            logger.info('No loss-scaler state in the checkpoint; the fp16 loss scale '
                        'starts at {}'.format(scaler.get_init_loss_scaling()))
        return False
    if not scaler.is_enable():
        logger.info('The checkpoint holds an fp16 loss-scaler state; this run is fp32: '
                    'ignored')
        return False
    state = dict(state)
    scale = state['scale']
    if isinstance(scale, paddle.Tensor):
        scale = scale.numpy()
    import numpy as np
    state['scale'] = np.asarray(scale, dtype='float32').reshape([-1])
    scaler.load_state_dict(state)
    return True


def match_state_dtypes(model, state):
    """``state`` with each tensor (or numpy array) cast to the dtype of the
    model's parameter or buffer of the same (structured) name
    (:func:`paddleseg.utils.checkpoint.cast_to`).

    An O2-prepared model has float16 weights and refuses float32 values in
    ``set_state_dict`` (``set_value`` asserts equal dtypes); checkpoints are
    float32 (``save_dtype``). With master weights the exact float32 values
    come back with the optimizer state. Entries without a counterpart, or of
    the right dtype already, are passed through.
    """
    targets = {name: t.dtype for name, t in model.named_parameters()}
    targets.update({name: t.dtype for name, t in model.named_buffers()})
    return {key: cast_to(value, targets[key]) if key in targets and hasattr(value, 'dtype')
            else value for key, value in state.items()}
