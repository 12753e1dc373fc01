"""Registries and how a config key finds its component."""

import inspect

import pytest

from paddleseg import optimizers
from paddleseg.cvlibs import manager
from paddleseg.cvlibs._keys import resolve_component
from paddleseg.cvlibs.schema import accepted_args, registry_for
from paddleseg.errors import ConfigError, UnknownComponentError


class _RegAmbiguous:
    pass


class _RegOnlyTransform:
    def __init__(self, size=1):
        self.size = size


manager.LOSSES.add_component(_RegAmbiguous)
manager.TRANSFORMS.add_component(_RegAmbiguous)
manager.TRANSFORMS.add_component(_RegOnlyTransform)


def test_add_and_get_by_name():
    reg = manager.Registry('widgets')

    @reg.add_component
    def make_widget():
        return 1

    assert reg.get('make_widget') is make_widget
    assert 'make_widget' in reg and len(reg) == 1
    assert reg.add_component(dict, name='Other') is dict
    assert reg.names() == ['Other', 'make_widget']


def test_duplicate_name_raises():
    reg = manager.Registry('widgets')
    reg.add_component(dict)
    with pytest.raises(KeyError, match="widgets already has a component "
                       "named 'dict'"):
        reg.add_component(dict)


def test_duplicate_in_real_registry_raises():
    with pytest.raises(KeyError, match="'sgd'"):
        manager.OPTIMIZERS.add_component(optimizers.sgd, name='sgd')


def test_list_registers_every_item_and_non_callable_is_rejected():
    reg = manager.Registry('widgets')
    reg.add_component([dict, list])
    assert reg.names() == ['dict', 'list']
    with pytest.raises(TypeError, match='cannot be registered'):
        reg.add_component(3)


def test_unknown_name_lists_known_names_and_key():
    reg = manager.Registry('widgets')
    reg.add_component([dict, list])
    with pytest.raises(UnknownComponentError) as info:
        reg.get('tuple', key='model.head')
    assert str(info.value) == ("model.head: unknown widgets type 'tuple'; "
                               "known: dict, list")
    assert isinstance(info.value, ConfigError)


def test_optimizer_and_scheduler_names_are_registered():
    for name in ('sgd', 'SGD', 'Momentum', 'adam', 'Adam', 'adamw', 'AdamW'):
        assert name in manager.OPTIMIZERS
    resolve_component('PolynomialDecay', ('lr_scheduler',))  # imports them
    for name in ('PolynomialDecay', 'CosineAnnealingDecay', 'PiecewiseDecay'):
        assert name in manager.LR_SCHEDULERS


@pytest.mark.parametrize('parts, registry', [
    (('model',), manager.MODELS),
    (('model', 'backbone'), manager.BACKBONES),
    (('train_dataset',), manager.DATASETS),
    (('val_dataset',), manager.DATASETS),
    (('val_dataset', 'transforms', 2), manager.TRANSFORMS),
    (('loss', 'types', 0), manager.LOSSES),
    (('optimizer',), manager.OPTIMIZERS),
    (('lr_scheduler',), manager.LR_SCHEDULERS),
    (('model', 'head'), None),
    (('loss', 'types', 0, 'losses', 1), None),
])
def test_registry_for_key(parts, registry):
    assert registry_for(parts) is registry


def test_free_key_searches_all_registries():
    assert resolve_component('_RegOnlyTransform',
                             ('model', 'aug')) is _RegOnlyTransform
    with pytest.raises(ConfigError, match=r"model\.aug: type '_RegAmbiguous' "
                       r'is ambiguous here, it is registered in transforms '
                       r'and losses'):
        resolve_component('_RegAmbiguous', ('model', 'aug'))
    with pytest.raises(UnknownComponentError,
                       match=r"model\.aug: unknown type '_RegNope'"):
        resolve_component('_RegNope', ('model', 'aug'))


def test_keyed_lookup_ignores_other_registries():
    with pytest.raises(UnknownComponentError,
                       match=r"^model\.backbone: unknown backbones type "
                       r"'_RegOnlyTransform'; known: "):
        resolve_component('_RegOnlyTransform', ('model', 'backbone'))


def test_type_must_be_a_string():
    with pytest.raises(ConfigError, match=r'model\.type: must be a component '
                       r'name, got \[1\]'):
        resolve_component([1], ('model',))


def test_accepted_args_rules():
    def plain(a, b=1, *, c=2):
        pass

    def forwards(depth=50, **kwargs):
        pass

    def declared(**kwargs):
        pass
    declared.__signature__ = inspect.signature(
        lambda pretrained=None, output_stride=8: None)

    def wrapped(**kwargs):
        pass
    wrapped.__wrapped__ = _RegOnlyTransform

    assert accepted_args(plain) == {'a', 'b', 'c'}
    assert accepted_args(forwards) is None
    assert accepted_args(declared) == {'pretrained', 'output_stride'}
    assert accepted_args(_RegOnlyTransform) == {'size'}
    assert accepted_args(wrapped) == {'size'}
