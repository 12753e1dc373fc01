"""Optimizer states that survive a change of process, ours and PaddleSeg's.

Paddle names parameters per process (``conv2d_78.w_0``: the 79th ``Conv2D``
created in the process) and an optimizer keys its state by those names
(``conv2d_78.w_0_velocity_0``). A state saved in one process therefore only
fits a model built in another process if both happened to create the same
layers before it.

``model.pdopt`` in our checkpoints is written with the names a *freshly
started* process gives the model's parameters (:func:`canonical_names`:
per layer type, the index counted from the model's first layer of that
type). That is what a fresh PaddleSeg 2.8 process building the same model
gets when our model creates its layers in PaddleSeg's order, so that
PaddleSeg's plain ``optimizer.set_state_dict`` resumes our checkpoints with
their momentum (our ``FPNNeck`` creates ``lateral_convs`` before
``fpn_out``, PaddleSeg's alternates them: until it does too, the neck's
names differ). Next to it (in ``meta.json``) we keep the model's
structured name of each canonical name, which makes our own resume exact
in any process (:func:`load_optimizer_state` with ``names``).

A ``model.pdopt`` written by PaddleSeg has no such names; its parameters
are matched to ours by order (:func:`match_by_order`): paddle creates the
accumulators in the order of the model's trainable parameters, and our
PointRend registers the same parameters in the same order as PaddleSeg's.

Precision. A multi-precision optimizer (``multi_precision=True``, which
``paddle.amp.decorate(level='O2')`` turns on) keeps, for each float16
parameter ``<p>``, a float32 master weight named ``<p>_fp32_master_<i>``
(``state['master_weights'][<p>]``) and keys that parameter's accumulators by
the master's name (``<p>_fp32_master_0_velocity_0`` instead of
``<p>_velocity_0``). A state is read as ``{parameter: accumulators, master
weight}`` whatever precision saved it, and written in the names the
optimizer as it is now (after :func:`paddleseg.core.amp.prepare`) asks for
(:func:`load_optimizer_state`): fp32, O1, O2 and PaddleSeg states resume in
any of fp32, O1 and O2. Master weights missing from the state (an fp32 or O1
checkpoint resumed in O2) are built from the checkpoint's float32 weights;
those of an O2 checkpoint resumed in fp32 or O1 become the float32 weights
(exact, where ``model.pdparams`` holds them rounded to float16).
"""

import re

import numpy as np
import paddle

from paddleseg.errors import CheckpointError
from paddleseg.utils.checkpoint import cast_to

LR_KEY, MASTER_KEY = 'LR_Scheduler', 'master_weights'
# paddle's name of a parameter's float32 master weight: <parameter name>_fp32_master_<index>
MASTER_SUFFIX = '_fp32_master'
_MASTER = MASTER_SUFFIX + r'_\d+'
# paddle's default parameter name: <layer type>_<index>.<w|b>_<index>
_PARAM = re.compile(r'(?P<scope>.+)_(?P<layer>\d+)\.(?P<kind>[wb]_\d+)')
# an accumulator: <parameter name>[_fp32_master_<index>]_<accumulator>_<index>
_ACCUMULATOR = re.compile(r'(?P<param>.*\.[wb]_\d+)(?P<master>' + _MASTER
                          + r')?_(?P<acc>[A-Za-z][A-Za-z0-9_]*?)_(?P<idx>\d+)')
_REST = re.compile(r'(?P<master>' + _MASTER + r')?_(?P<acc>.+)_(?P<idx>\d+)')
# PaddleSeg builds BatchNorm as SyncBatchNorm when it trains on several GPUs
_SCOPE_ALIASES = {'batch_norm2d': 'sync_batch_norm'}


def lr_scheduler_of(optimizer):
    """The ``paddle.optimizer.lr.LRScheduler`` that ``optimizer`` was built
    with, or None (a constant learning rate).

    Paddle has no public getter for it; this is the one place that reads
    the optimizer's private ``_learning_rate``, for callers that got only the
    optimizer (PaddleSeg's ``core.train`` signature). Who has the scheduler
    passes it (``Trainer(lr_scheduler=...)``).
    """
    lr = getattr(optimizer, '_learning_rate', None)
    return lr if isinstance(lr, paddle.optimizer.lr.LRScheduler) else None


def canonical_names(model):
    """``{paddle name: canonical name}`` of every parameter of ``model``.

    The canonical name is the one a freshly started process that builds
    only this model gives the parameter: for each layer type the layer index
    is counted from the model's first layer of that type
    (``conv2d_78.w_0`` -> ``conv2d_0.w_0`` if ``conv2d_78`` is the model's
    first ``Conv2D``). A name paddle did not generate (a ``ParamAttr``
    name) is the same in every process and kept.
    """
    params = list(model.parameters())
    first = {}
    for p in params:
        m = _PARAM.fullmatch(p.name)
        if m:
            scope, layer = m.group('scope'), int(m.group('layer'))
            first[scope] = min(first.get(scope, layer), layer)
    out = {}
    for p in params:
        m = _PARAM.fullmatch(p.name)
        out[p.name] = p.name if m is None else '{}_{}.{}'.format(
            m.group('scope'), int(m.group('layer')) - first[m.group('scope')], m.group('kind'))
    return out


def _split(key, names):
    """``(param name, accumulator, of a master weight)`` of an accumulator
    key whose parameter is one of ``names`` (longest match), or None:
    ``conv2d_0.w_0_fp32_master_0_velocity_0`` -> ``('conv2d_0.w_0',
    'velocity', True)``."""
    head = max((n for n in names if key.startswith(n + '_')), key=len, default=None)
    if head is None:
        return None
    m = _REST.fullmatch(key[len(head):])
    return (head, m.group('acc'), m.group('master') is not None) if m else None


def _named(value, name):
    """A tensor sharing ``value``'s data (a Tensor) under paddle name ``name``."""
    out = value.detach() if isinstance(value, paddle.Tensor) else paddle.to_tensor(value)
    out.name = name
    return out


def uses_master_weight(optimizer, param):
    """Whether ``optimizer`` keeps a float32 master weight for ``param``:
    it is multi-precision (``paddle.amp.decorate(level='O2')`` made it so)
    and the parameter float16 or bfloat16."""
    return bool(getattr(optimizer, '_multi_precision', False)) and \
        param.dtype in (paddle.float16, paddle.bfloat16)


def _next_index(key):
    """The index paddle's name generator will append to ``key`` next in this
    process (0 unless an optimizer of these parameters was built before)."""
    try:
        from paddle.base import unique_name
        return int(unique_name.generator.ids.get(key, 0))
    except Exception:  # private API; 0 is right in a fresh process
        return 0


def param_names(model):
    """``{canonical name: structured name}`` of ``model``'s parameters
    (stored beside :func:`optimizer_state`)."""
    canon = canonical_names(model)
    return {canon[p.name]: n for n, p in model.named_parameters()}


def optimizer_state(optimizer, model):
    """``optimizer.state_dict()`` keyed by canonical parameter names
    (:func:`canonical_names`; accumulator index 0, as in a fresh process).

    This is what PaddleSeg 2.8 saves as ``model.pdopt`` and resumes with
    ``optimizer.set_state_dict``; :func:`param_names` gives the structured
    name of each canonical one. For each BatchNorm parameter the
    accumulators are also stored under the ``sync_batch_norm_<i>`` name,
    which PaddleSeg's model has when it trains on several GPUs (paddle
    ignores keys it does not ask for). A multi-precision optimizer's state
    (O2) keeps its master-weight names, canonical too
    (``conv2d_0.w_0_fp32_master_0_velocity_0``, ``master_weights``
    ``{'conv2d_0.w_0': <tensor named conv2d_0.w_0_fp32_master_0>}``): what
    PaddleSeg's O2 resume asks for. With a warmup (our
    ``PolynomialDecay(warmup_iters>0)``) the scheduler state also has the
    ``LinearWarmup_LR`` entry that PaddleSeg's ``LinearWarmup`` reads.
    """
    canon = canonical_names(model)
    state = optimizer.state_dict()
    out, aliases = {}, {}
    for key, value in state.items():
        if key == LR_KEY:
            out[key] = dict(value)
            warmup = getattr(lr_scheduler_of(optimizer), 'warmup_iters', 0)
            if warmup:
                out[key]['LinearWarmup_LR'] = {
                    'last_epoch': max(int(value['last_epoch']) - warmup, 0),
                    'last_lr': value['last_lr']}
        elif key == MASTER_KEY:
            # named as a fresh process names them: PaddleSeg's O2 resume asks
            # for the accumulators by the master weight's name
            out[key] = {canon.get(k, k): _named(v, canon.get(k, k) + MASTER_SUFFIX + '_0')
                        for k, v in value.items()}
        else:
            parts = _split(key, canon)
            if parts is None:
                out[key] = value
                continue
            param, acc, master = parts
            infix = MASTER_SUFFIX + '_0' if master else ''
            out['{}{}_{}_0'.format(canon[param], infix, acc)] = value
            m = _PARAM.fullmatch(canon[param])
            if m and m.group('scope') in _SCOPE_ALIASES:
                alias = '{}_{}.{}'.format(_SCOPE_ALIASES[m.group('scope')], m.group('layer'),
                                          m.group('kind'))
                aliases['{}{}_{}_0'.format(alias, infix, acc)] = value
    out.update(aliases)
    return out


def _collect(state, mapping):
    """``({id(param): {accumulator: value}}, {id(param): master weight},
    {accumulator: has the parameter's shape})`` of the accumulators and
    master weights that ``state`` holds for the parameters in ``mapping``
    (saved name -> parameter of this process), whatever precision saved it."""
    accs, kinds = {}, {}
    for key, value in state.items():
        if key in (LR_KEY, MASTER_KEY):
            continue
        parts = _split(key, mapping)
        if parts is not None:
            param, acc, _ = parts
            accs.setdefault(id(mapping[param]), {})[acc] = value
            kinds[acc] = kinds.get(acc, True) and _shape(value) == list(mapping[param].shape)
    masters = {id(mapping[k]): v for k, v in (state.get(MASTER_KEY) or {}).items()
               if k in mapping}
    return accs, masters, kinds


def _rename(state, mapping, optimizer, model, weights=None):
    """``state`` in the names this process's optimizer, as it is now, will
    ask for: each accumulator of a parameter in ``mapping`` (saved name ->
    parameter of this process) under ``<p>_<acc>_<i>``, or under
    ``<p>_fp32_master_<i>_<acc>_<i>`` for a parameter with a master weight
    (:func:`uses_master_weight`), whose ``master_weights`` entry is named to
    match. Other accumulator keys are dropped.

    A master weight comes from the state, else from ``weights`` (the
    checkpoint's float32 ``{structured name: tensor}``), else from the
    parameter. A saved master weight of a parameter that is float32 here
    becomes its value. A trainable parameter without saved state (it never
    had a gradient) gets zeros for each accumulator that has the
    parameter's shape (momentum's velocity, Adam's moments: what paddle
    starts them at), so that a step that does update it finds its state."""
    accs, masters, kinds = _collect(state, mapping)
    structured = {id(p): n for n, p in model.named_parameters()}
    out, out_masters = {}, {}
    if LR_KEY in state:
        out[LR_KEY] = _fit_scheduler_state(state[LR_KEY], optimizer)
    for p in model.parameters():
        if p.stop_gradient:
            continue
        saved = accs.get(id(p))
        if saved is None:
            saved = {acc: paddle.zeros(p.shape, 'float32') for acc, shaped in kinds.items()
                     if shaped}
        owner, dtype = p.name, p.dtype
        master = masters.get(id(p))
        if uses_master_weight(optimizer, p):
            if master is None:
                master = (weights or {}).get(structured[id(p)], p)
            prefix = p.name + MASTER_SUFFIX
            master = _named(cast_to(master, paddle.float32),
                            '{}_{}'.format(prefix, _next_index(prefix)))
            out_masters[p.name] = master
            owner, dtype = master.name, paddle.float32
        elif master is not None and p.dtype == paddle.float32:
            p.set_value(cast_to(master, paddle.float32))
        for acc, value in saved.items():
            prefix = '{}_{}'.format(owner, acc)
            if _shape(value) == list(p.shape):
                value = cast_to(value, dtype)
            out['{}_{}'.format(prefix, _next_index(prefix))] = value
    if out_masters:
        out[MASTER_KEY] = out_masters
    return out


def _fit_scheduler_state(value, optimizer):
    """A scheduler state without the ``LinearWarmup_LR`` entry unless this
    optimizer's scheduler is a ``LinearWarmup`` (paddle warns about entries
    it does not read)."""
    if (isinstance(value, dict) and 'LinearWarmup_LR' in value
            and type(lr_scheduler_of(optimizer)).__name__ != 'LinearWarmup'):
        value = {k: v for k, v in value.items() if k != 'LinearWarmup_LR'}
    return value


def _accumulators(state):
    """``{param name: [(key, accumulator, value)]}`` of a paddle-named state,
    parameters in the order of their first key."""
    params = {}
    for key, value in state.items():
        if key in (LR_KEY, MASTER_KEY) or isinstance(value, dict):
            continue
        m = _ACCUMULATOR.fullmatch(key)
        if m is None:
            raise CheckpointError('optimizer state key {!r}: cannot tell which '
                                  'parameter it belongs to'.format(key))
        if _is_alias(key, state):
            continue
        params.setdefault(m.group('param'), []).append((key, m.group('acc'), value))
    return params


def _is_alias(key, state):
    """Whether ``key`` is a ``sync_batch_norm`` alias that
    :func:`optimizer_state` added next to the ``batch_norm2d`` key."""
    for scope, alias in _SCOPE_ALIASES.items():
        if key.startswith(alias + '_') and scope + key[len(alias):] in state:
            return True
    return False


def _shape(value):
    return list(value.shape) if hasattr(value, 'shape') else list(np.shape(value))


def _signature(name, shape_of):
    """What must agree between a saved parameter and ours: layer type
    (``sync_batch_norm`` counts as ``batch_norm2d``), ``w_<i>``/``b_<i>``,
    and shape (None: any)."""
    m = _PARAM.fullmatch(name)
    aliases = {alias: scope for scope, alias in _SCOPE_ALIASES.items()}
    kind = (aliases.get(m.group('scope'), m.group('scope')), m.group('kind')) if m else None
    return kind, shape_of


def _embed(saved, ours, fits, reverse=False):
    """Positions in ``ours`` of each of ``saved``, matched in order (the
    leftmost embedding, or the rightmost with ``reverse``), or None."""
    n, m = len(saved), len(ours)
    out, j = [None] * n, (m - 1 if reverse else 0)
    for i in (range(n - 1, -1, -1) if reverse else range(n)):
        while 0 <= j < m and not fits(saved[i], ours[j]):
            j += -1 if reverse else 1
        if not 0 <= j < m:
            return None
        out[i] = j
        j += -1 if reverse else 1
    return out


def match_by_order(state, model, source='model.pdopt'):
    """Map the parameters of a paddle-named optimizer state (PaddleSeg's
    ``model.pdopt``) to ``model``'s trainable parameters, by order.

    Paddle creates an optimizer's accumulators at its first step, for the
    trainable parameters that got a gradient, in the model's parameter
    order; our PointRend registers the same parameters in the same order
    as PaddleSeg's. So the saved parameters, in the order of their first
    key, are ours in order, minus those that never had a gradient
    (PointRend's unused ``neck.fpn_out.3``). They are matched in order to
    ours of the same layer type, kind (``w_0``, ``b_0``) and shape
    (accumulators that are not scalars have their parameter's shape);
    paddle's per-process layer indices are not used (PaddleSeg creates its
    FPN layers in another order than ours). When which parameters to skip
    is ambiguous (``fpn_out.3`` is identical to ``fpn_out.2``) the earlier
    ones are matched: unused layers are the last of their list. The
    parameters left out are logged (INFO).

    Returns:
        dict: ``{saved parameter name: parameter of model}``.

    Raises:
        CheckpointError: the saved parameters cannot be matched in order
            (the state was saved for another model).
    """
    saved = _accumulators(state)
    names = list(saved)
    trainable = [p for p in model.parameters() if not p.stop_gradient]

    def shape_of(name):
        shapes = [_shape(v) for _, _, v in saved[name] if int(np.prod(_shape(v))) != 1]
        return shapes[0] if shapes else None
    mine = [_signature(p.name, list(p.shape)) for p in trainable]
    theirs = [_signature(n, shape_of(n)) for n in names]

    def fits(a, b):
        (kind_a, shape_a), (kind_b, shape_b) = a, b
        return ((kind_a is None or kind_b is None or kind_a == kind_b)
                and (shape_a is None or shape_a == shape_b))
    left = _embed(theirs, mine, fits)
    if left is None:
        count = 0
        while count < len(names) and _embed(theirs[:count + 1], mine, fits) is not None:
            count += 1
        raise CheckpointError(
            '{}: holds optimizer state for {} parameters that do not match the model\'s {} '
            'trainable ones in order (the first that does not: {}, shape {}); it was not '
            'saved for this model'.format(source, len(names), len(trainable), names[count],
                                          theirs[count][1]))
    skipped = sorted(set(range(len(trainable))) - set(left))
    if skipped:
        from paddleseg.utils import logger
        structured = {id(p): n for n, p in model.named_parameters()}
        logger.info('{}: no optimizer state for {} parameters (never updated{}): {}'.format(
            source, len(skipped),
            '' if left == _embed(theirs, mine, fits, reverse=True)
            else '; of identical ones, the later are taken as those',
            ', '.join(structured[id(trainable[j])] for j in skipped[:5])
            + (', ...' if len(skipped) > 5 else '')))
    return {name: trainable[j] for name, j in zip(names, left)}


def _structured(model, param):
    return next((n for n, p in model.named_parameters() if p is param), param.name)


def load_optimizer_state(optimizer, model, state, names=None, source='model.pdopt',
                         weights=None):
    """Restore ``state`` into ``optimizer`` (of ``model``'s parameters), in
    the names it asks for as it is now: call it after
    :func:`paddleseg.core.amp.prepare` (see the module doc, Precision).

    Args:
        state (dict): A ``model.pdopt``: ours (canonical names, with
            ``names``) or
            PaddleSeg's (paddle's names of the process that saved it,
            matched by :func:`match_by_order`).
        names (dict, optional): ``{canonical name: structured name}`` saved
            beside ours (:func:`optimizer_state`).
        weights (dict, optional): The checkpoint's float32 weights
            (``model.pdparams``), the master weights of float16 parameters
            the state has none for.

    Raises:
        CheckpointError: a PaddleSeg state that does not fit the model, or
            ``names`` naming a parameter the model does not have.
    """
    state = dict(state)
    params = dict(model.named_parameters())
    if names is not None:
        missing = sorted(set(names.values()) - set(params))
        if missing:
            raise CheckpointError('{}: saved for parameters the model does not have: {}'
                                  .format(source, ', '.join(missing[:5])))
        mapping = {canon: params[n] for canon, n in names.items()}
    else:
        mapping = match_by_order(state, model, source)
    optimizer.set_state_dict(_rename(state, mapping, optimizer, model, weights))
