"""Optimizer states keyed by the model's structured parameter names.

Paddle names parameters per process (``conv2d_78.w_0``), so an optimizer
state saved in one process does not match a model built in another where
more layers were created first (a notebook). These functions rename the
keys to and from the model's own names (``backbone.conv1_1._conv.weight``).
"""

STRUCTURED = '@structured_param_names'


def _rename_keys(state, mapping):
    """Rename keys that start with ``old + '_'`` (accumulators) or equal
    ``old`` (master weights) for each ``old -> new`` in ``mapping``."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _rename_keys(value, mapping)
            continue
        head = max((old for old in mapping
                    if key == old or key.startswith(old + '_')),
                   key=len, default=None)
        out[key if head is None else mapping[head] + key[len(head):]] = value
    return out


def optimizer_state(optimizer, model):
    """``optimizer.state_dict()`` keyed by the model's structured parameter
    names (``backbone.conv1_1._conv.weight_velocity_0``) instead of paddle's
    per-process ones (``conv2d_78.w_0_velocity_0``), so that it can be
    restored into a model built in any process, e.g. a notebook that
    already built others."""
    state = _rename_keys(optimizer.state_dict(),
                         {p.name: n for n, p in model.named_parameters()})
    state[STRUCTURED] = True
    return state


def load_optimizer_state(optimizer, model, state):
    """Inverse of :func:`optimizer_state`; a state saved by PaddleSeg (paddle's
    own names) is passed through as it is."""
    state = dict(state)
    if state.pop(STRUCTURED, False):
        state = _rename_keys(state, {n: p.name for n, p in model.named_parameters()})
    optimizer.set_state_dict(state)
