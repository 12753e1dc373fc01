"""The config schema: what each top-level key of a config is, declared once.

:data:`SECTIONS` holds one :class:`Section` per top-level key: the registry
its ``type`` is looked up in, the arguments the builder or the entry script
supplies itself (so a config must not set them), whether training needs it,
and, for a plain mapping such as ``test_config``, the keys it holds. The
checker (:mod:`._checker`), ``--opts`` (:mod:`._parser`), :class:`Config`
and :class:`SegBuilder` all read this table, so they agree on what a key
means.

Below the top level, a spec's keys are the arguments of the component its
``type`` names, read from the component's signature (:func:`accepted_args`),
and two positions choose a registry wherever they occur
(:data:`NESTED_KEY_REGISTRIES`, :data:`NESTED_ITEM_REGISTRIES`).

The functions that check one section's value (:func:`count_problem`,
:func:`loss_problem`, :func:`mapping_problem`) return ``(parts, message)`` or None; the caller turns that into its
one-line error. What is found at a dotted key (the component its ``type``
names, the class count, whether it is there) is read in :mod:`._keys`, over
this table.

Importing this module imports :mod:`paddleseg.optimizers`, which registers
the optimizer factories and the learning-rate schedules a config names.
"""

import difflib
import inspect
import numbers

from paddleseg import optimizers  # noqa: F401  (registers optimizers, schedules)
from paddleseg.cvlibs import manager

__all__ = ['Section', 'SECTIONS', 'NESTED_KEY_REGISTRIES',
           'NESTED_ITEM_REGISTRIES', 'RETIRED_KEYS', 'LEGACY_LR_MESSAGE',
           'accepted_args', 'did_you_mean', 'registry_for', 'supplied_args',
           'required_sections', 'is_positive_int', 'count_problem',
           'loss_problem', 'mapping_problem', 'section_problem']


def accepted_args(component):
    """The keyword arguments a config may give ``component``: the named
    parameters of its signature.

    A function that forwards ``**kwargs`` to a class states what it accepts
    with a ``__signature__`` (or ``__wrapped__``) attribute, which
    :func:`inspect.signature` reads, e.g. ``ResNet101_vd``.

    Returns:
        frozenset | None: the names, or None when anything is accepted (the
        signature takes ``**kwargs``, or it cannot be inspected).
    """
    try:
        params = inspect.signature(component).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def did_you_mean(word, candidates):
    """``"; did you mean 'x'?"`` for the closest candidate (difflib), else
    ``'; known: a, b, c'`` (or ``''`` without candidates)."""
    candidates = sorted(str(name) for name in candidates)
    close = difflib.get_close_matches(str(word), candidates, n=1)
    if close:
        return '; did you mean {!r}?'.format(close[0])
    if candidates:
        return '; known: {}'.format(', '.join(candidates))
    return ''


class Section:
    """One top-level config key.

    Args:
        name (str): The key.
        kind (str): ``'count'`` (a positive integer), ``'component'`` (a
            mapping whose ``type`` names one of ``registry``), ``'loss'``
            (``types`` and ``coef``) or ``'mapping'`` (keys checked against
            ``keys``).
        doc (str): What it is.
        registry (Registry, optional): Where a ``'component'``'s ``type`` is
            looked up.
        items (dict, optional): ``{list key: Registry}``: lists of specs in
            the section (``loss.types``, ``export.transforms``).
        supplied (dict, optional): ``{argument: hint}``: arguments of the
            receiving callable (the component, or ``receiver``) that the
            builder or the entry script passes itself; a config setting one
            is told the hint.
        training (bool): Training needs it.
        required (bool): Everything needs it.
        receiver (str, optional): The name of the function whose keyword
            arguments a ``'mapping'`` holds, for messages only (nothing is
            imported); its keys are still ``keys``.
        keys (tuple, optional): The keys a ``'mapping'`` or ``'loss'`` may
            hold.
        refused (dict, optional): ``{key: (value, what)}``: a value of a
            key that is refused, and why.
    """

    def __init__(self, name, kind, doc, registry=None, items=None,
                 supplied=None, training=False, required=False,
                 receiver=None, keys=None, refused=None):
        self.name = name
        self.kind = kind
        self.doc = doc
        self.registry = registry
        self.items = dict(items or {})
        self.supplied = dict(supplied or {})
        self.training = training
        self.required = required
        self.receiver_name = receiver
        self.keys = tuple(keys) if keys is not None else None
        self.refused = dict(refused or {})

    def accepted_keys(self):
        """The keys a ``'mapping'`` or ``'loss'`` section may hold.

        Returns:
            frozenset | None: None when anything goes (a ``'count'`` or
            ``'component'``, whose keys come from elsewhere).
        """
        return frozenset(self.keys) if self.keys is not None else None

    def __repr__(self):
        return 'Section({!r}, {!r})'.format(self.name, self.kind)


def _declare(*sections):
    return {section.name: section for section in sections}


_FLAG = 'train.py and val.py pass {}'

TEST_CONFIG_KEYS = ('aug_eval', 'scales', 'flip_horizontal', 'flip_vertical',
                    'is_slide', 'stride', 'crop_size', 'print_detail',
                    'auc_roc', 'progress')
"""The keys ``test_config`` may hold: the keyword arguments of
``paddleseg.core.evaluate`` but the ones its caller supplies (a test checks
that they agree; this module does not import ``paddleseg.core``)."""

SECTIONS = _declare(
    Section('model', 'component', 'the network; num_classes defaults to '
            "the dataset's", registry=manager.MODELS, required=True),
    Section('train_dataset', 'component', 'the training data',
            registry=manager.DATASETS, training=True),
    Section('val_dataset', 'component', 'the evaluation data (and its '
            'transforms, also used by predict.py and export.py)',
            registry=manager.DATASETS),
    Section('loss', 'loss', 'one loss per model output and their weights',
            items={'types': manager.LOSSES}, keys=('types', 'coef'),
            training=True),
    Section('optimizer', 'component', 'the optimizer factory',
            registry=manager.OPTIMIZERS, training=True, supplied={
                'parameters': 'the builder passes the model parameters',
                'learning_rate': 'set lr_scheduler.learning_rate instead'}),
    Section('lr_scheduler', 'component', 'the learning-rate schedule',
            registry=manager.LR_SCHEDULERS, training=True, supplied={
                'iters': 'the builder passes the top-level iters; set that '
                         'instead'}),
    Section('iters', 'count', 'total training iterations', training=True),
    Section('batch_size', 'count', 'batch size per device', training=True),
    Section('test_config', 'mapping', 'default keyword arguments of the '
            'evaluation', receiver='paddleseg.core.val.evaluate',
            keys=TEST_CONFIG_KEYS, refused={'auc_roc': (
                True, "true is not supported (it needs every pixel's "
                'probabilities)')}, supplied={
                'model': 'the caller passes the model',
                'eval_dataset': 'the caller passes val_dataset',
                'num_workers': _FLAG.format('--num_workers'),
                'precision': _FLAG.format('--precision'),
                'amp_level': _FLAG.format('--amp_level'),
                'on_prediction': 'the caller passes it'}),
    Section('export', 'mapping', 'deployment transforms of export.py',
            items={'transforms': manager.TRANSFORMS}, keys=('transforms',)),
)
"""Every top-level key a config may have, in the order they are checked."""

NESTED_KEY_REGISTRIES = {'backbone': manager.BACKBONES}
"""A spec stored under one of these keys, at any depth, is looked up in that
registry (``model.backbone``)."""

NESTED_ITEM_REGISTRIES = {'transforms': manager.TRANSFORMS}
"""A spec that is an item of a list stored under one of these keys, at any
depth, is looked up in that registry (``train_dataset.transforms.0``)."""

LEGACY_LR_MESSAGE = (
    "the old 'learning_rate: {value: ..., decay: {...}}' form is not "
    "supported; write 'lr_scheduler: {type: PolynomialDecay, learning_rate: "
    "<value>, power: <power>, end_lr: <end_lr>}' instead")

RETIRED_KEYS = {'learning_rate': LEGACY_LR_MESSAGE}
"""Top-level keys of older configs, with what to write instead."""


def registry_for(parts):
    """The registry a spec at key ``parts`` (a tuple) is looked up in.

    A top-level section's own registry; a list item of a section's
    ``items``; else :data:`NESTED_ITEM_REGISTRIES` for list items and
    :data:`NESTED_KEY_REGISTRIES` for mapping values. Returns None when the
    position names no particular registry; such a spec's ``type`` must then
    be found in exactly one registry.
    """
    if not parts:
        return None
    section = SECTIONS.get(parts[0]) if isinstance(parts[0], str) else None
    if len(parts) == 1:
        return section.registry if section else None
    if isinstance(parts[-1], int):
        parent = parts[-2]
        if len(parts) == 3 and section is not None and parent in section.items:
            return section.items[parent]
        return NESTED_ITEM_REGISTRIES.get(parent)
    return NESTED_KEY_REGISTRIES.get(parts[-1])


def supplied_args(parts):
    """``{argument: hint}`` the builder supplies to the spec at ``parts``."""
    if len(parts) == 1 and parts[0] in SECTIONS:
        return SECTIONS[parts[0]].supplied
    return {}


def required_sections(for_training):
    """The sections a config must have: training's, or just ``model``."""
    return [name for name, section in SECTIONS.items()
            if section.required or (for_training and section.training)]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_positive_int(value):
    """An int (not a bool) above zero."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value > 0)


def count_problem(name, value):
    """A ``'count'`` section (``iters``, ``batch_size``) is a positive int."""
    if not is_positive_int(value):
        return (name,), 'must be a positive integer, got {!r}'.format(value)
    return None


def loss_problem(loss):
    """``loss`` is ``{types: [specs], coef: [numbers]}`` of equal lengths.

    The one check of the loss section, used by the checker and the builder.
    The specs themselves (registered ``type``, arguments) are checked like
    every other spec.
    """
    keys = SECTIONS['loss'].keys
    if not isinstance(loss, dict):
        return ('loss',), "must be a mapping with 'types' and 'coef'"
    for key in loss:
        if key not in keys:
            return ('loss', key), 'unknown key' + did_you_mean(key, keys)
    types, coef = loss.get('types'), loss.get('coef')
    if not isinstance(types, list) or not types:
        return ('loss', 'types'), 'must be a non-empty list of losses'
    if not isinstance(coef, list):
        return ('loss', 'coef'), ('must be a list of numbers, one per loss in '
                                  'loss.types')
    if len(coef) != len(types):
        return ('loss', 'coef'), 'has {} entries but loss.types has {}'.format(
            len(coef), len(types))
    for index, value in enumerate(coef):
        if not _is_number(value):
            return ('loss', 'coef', index), 'must be a number, got {!r}'.format(
                value)
    return None


def mapping_problem(name, value):
    """A ``'mapping'`` section is a mapping of the keys it may hold.

    ``test_config``'s keys are the keyword arguments of the function that
    receives them (:data:`TEST_CONFIG_KEYS`), so a misspelled key fails here
    rather than with a TypeError at the first evaluation; a refused value
    (``auc_roc: true``) fails here too.
    """
    section = SECTIONS[name]
    if not isinstance(value, dict):
        return (name,), 'must be a mapping, got {!r}'.format(value)
    accepted = section.accepted_keys()
    for key in value:
        if key in section.supplied:
            return (name, key), 'must not be set: ' + section.supplied[key]
        if accepted is not None and key not in accepted:
            if section.receiver_name:
                return (name, key), '{} has no argument {!r}{}'.format(
                    section.receiver_name, key, did_you_mean(key, accepted))
            return (name, key), 'unknown key' + did_you_mean(key, accepted)
        refused = section.refused.get(key)
        if refused is not None and value[key] == refused[0]:
            return (name, key), refused[1]
    return None


def section_problem(name, value):
    """The problem of a present top-level section's own value, or None.

    Component sections are checked by walking the specs (the checker's
    ``_check_tree``), not here.
    """
    kind = SECTIONS[name].kind
    if kind == 'count':
        return count_problem(name, value)
    if kind == 'loss':
        return loss_problem(value)
    if kind == 'mapping':
        return mapping_problem(name, value)
    return None
