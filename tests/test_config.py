"""Parsing, merging, overriding, checking and building configs."""

import inspect
import os
import textwrap

import paddle
import pytest

from paddleseg.cvlibs import Config, manager
from paddleseg.cvlibs._checker import check_config
from paddleseg.cvlibs._parser import (apply_cli_args, apply_opts, load_config,
                                      load_config_with_sources)
from paddleseg.cvlibs.builder import (build_component, build_dataset,
                                      build_losses, build_lr_scheduler,
                                      build_model, build_optimizer)
from paddleseg.errors import ConfigError, UnknownComponentError


def load_and_check(path, opts=None, iters=None, batch_size=None,
                   for_training=True):
    """The checked dict of ``Config`` (the training keys required unless
    ``for_training`` is False)."""
    return Config(path, batch_size=batch_size, iters=iters, opts=opts,
                  for_training=for_training).dic


# ------------------------------------------------ dummy components (unique)

@manager.BACKBONES.add_component
class _TestBackbone:
    def __init__(self, output_stride=8, pretrained=None):
        self.output_stride = output_stride
        self.pretrained = pretrained


@manager.BACKBONES.add_component
def _TestForwardingBackbone(**kwargs):
    return _TestBackbone(**kwargs)


_TestForwardingBackbone.__signature__ = inspect.signature(_TestBackbone)


@manager.MODELS.add_component
class _TestModel:
    def __init__(self, backbone, num_classes, point_num_points=2048,
                 align_corners=False):
        self.backbone = backbone
        self.num_classes = num_classes
        self.point_num_points = point_num_points


@manager.MODELS.add_component
def _TestAnythingModel(**kwargs):
    return kwargs


@manager.DATASETS.add_component
class _TestDataset:
    NUM_CLASSES = 19

    def __init__(self, dataset_root, transforms=None, mode='train'):
        self.dataset_root = dataset_root
        self.transforms = transforms
        self.mode = mode


@manager.DATASETS.add_component
class _TestCustomDataset:
    def __init__(self, dataset_root, num_classes, transforms=None):
        self.num_classes = num_classes


@manager.TRANSFORMS.add_component
class _TestCrop:
    def __init__(self, crop_size=(512, 512)):
        self.crop_size = crop_size


@manager.TRANSFORMS.add_component
class _TestFlip:
    def __init__(self, prob=0.5):
        self.prob = prob


@manager.LOSSES.add_component
class _TestLoss:
    def __init__(self, ignore_index=255):
        self.ignore_index = ignore_index


VALID = """\
batch_size: 2
iters: 100
model:
  type: _TestModel
  backbone:
    type: _TestBackbone
    output_stride: 8
train_dataset:
  type: _TestDataset
  dataset_root: data/x
  transforms:
    - type: _TestCrop
      crop_size: [512, 512]
    - type: _TestFlip
  mode: train
val_dataset:
  type: _TestDataset
  dataset_root: data/x
  mode: val
loss:
  types:
    - type: _TestLoss
  coef: [1]
optimizer:
  type: sgd
  momentum: 0.9
  weight_decay: 5.0e-4
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 1.0e-5
  power: 0.9
  warmup_iters: 10
"""


def write(folder, name, text):
    path = os.path.join(str(folder), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(textwrap.dedent(text))
    return path


@pytest.fixture
def valid(tmp_path):
    return write(tmp_path, 'valid.yml', VALID)


def error_of(func, *args, **kwargs):
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- _base_

def test_base_as_string_merges_recursively(tmp_path):
    write(tmp_path, '_base_/base.yml', """\
        iters: 80000
        model:
          type: _TestModel
          backbone: {type: _TestBackbone, output_stride: 8, pretrained: w}
        """)
    child = write(tmp_path, 'exp/child.yml', """\
        _base_: ../_base_/base.yml
        iters: 10
        model:
          backbone: {output_stride: 16}
        """)
    assert load_config(child) == {
        'iters': 10,
        'model': {'type': '_TestModel',
                  'backbone': {'type': '_TestBackbone', 'output_stride': 16,
                               'pretrained': 'w'}}}


def test_base_list_later_overrides_earlier_and_file_overrides_all(tmp_path):
    write(tmp_path, 'a.yml', 'batch_size: 1\niters: 1\nlr: {x: 1, y: 1}\n')
    write(tmp_path, 'b.yml', 'iters: 2\nlr: {y: 2}\n')
    child = write(tmp_path, 'c.yml', "_base_: [a.yml, b.yml]\nbatch_size: 3\n")
    assert load_config(child) == {'batch_size': 3, 'iters': 2,
                                  'lr': {'x': 1, 'y': 2}}


def test_bases_of_bases_are_loaded_relative_to_their_file(tmp_path):
    write(tmp_path, 'root.yml', 'iters: 1\nbatch_size: 1\n')
    write(tmp_path, 'mid/mid.yml', '_base_: ../root.yml\nbatch_size: 2\n')
    top = write(tmp_path, 'top/deep/top.yml', '_base_: ../../mid/mid.yml\n')
    assert load_config(top) == {'iters': 1, 'batch_size': 2}


def test_lists_replace_instead_of_merging(tmp_path):
    write(tmp_path, 'a.yml', 'transforms: [{type: A}, {type: B}]\n')
    child = write(tmp_path, 'b.yml', '_base_: a.yml\ntransforms: [{type: C}]\n')
    assert load_config(child) == {'transforms': [{'type': 'C'}]}


def test_inherited_false_replaces_the_base_mapping(tmp_path):
    write(tmp_path, 'a.yml', """\
        optimizer: {type: sgd, momentum: 0.9, weight_decay: 4.0e-5}
        model: {type: M, a: 1}
        """)
    child = write(tmp_path, 'b.yml', """\
        _base_: a.yml
        optimizer:
          _inherited_: False
          type: adamw
        model:
          _inherited_: true
          b: 2
        """)
    assert load_config(child) == {'optimizer': {'type': 'adamw'},
                                  'model': {'type': 'M', 'a': 1, 'b': 2}}


def test_inherited_markers_are_removed_without_a_base(tmp_path):
    path = write(tmp_path, 'a.yml', """\
        model: {_inherited_: false, x: {_inherited_: true, y: 1}}
        items: [{_inherited_: false, z: 1}]
        """)
    assert load_config(path) == {'model': {'x': {'y': 1}},
                                 'items': [{'z': 1}]}


def test_inherited_must_be_a_bool(tmp_path):
    path = write(tmp_path, 'a.yml', 'model: {x: {_inherited_: no_way}}\n')
    assert error_of(load_config, path) == (
        "{}: model.x._inherited_: must be true or false, got "
        "'no_way'".format(path))


def test_base_cycle_names_the_files(tmp_path):
    a = write(tmp_path, 'a.yml', '_base_: b.yml\n')
    b = write(tmp_path, 'b.yml', '_base_: a.yml\n')
    message = error_of(load_config, a)
    assert message == ('{b}: _base_: inheritance cycle: {a} -> {b} -> {a} '
                       '(included from {a})'.format(a=a, b=b))


def test_self_inheritance_is_a_cycle(tmp_path):
    a = write(tmp_path, 'a.yml', '_base_: ./a.yml\n')
    assert 'inheritance cycle: {0} -> {0}'.format(a) in error_of(
        load_config, a)


def test_diamond_inheritance_is_not_a_cycle(tmp_path):
    write(tmp_path, 'root.yml', 'iters: 1\n')
    write(tmp_path, 'left.yml', '_base_: root.yml\nbatch_size: 2\n')
    write(tmp_path, 'right.yml', '_base_: root.yml\n')
    top = write(tmp_path, 'top.yml', '_base_: [left.yml, right.yml]\n')
    assert load_config(top) == {'iters': 1, 'batch_size': 2}


def test_missing_base_names_the_path_and_the_referencing_file(tmp_path):
    write(tmp_path, 'mid.yml', '_base_: gone/nothing.yml\n')
    top = write(tmp_path, 'top.yml', '_base_: mid.yml\n')
    message = error_of(load_config, top)
    missing = os.path.join(str(tmp_path), 'gone', 'nothing.yml')
    assert message == '{}: _base_: file not found: {} (included from {})'.format(
        os.path.join(str(tmp_path), 'mid.yml'), missing, top)


def test_missing_config_file(tmp_path):
    path = os.path.join(str(tmp_path), 'nope.yml')
    assert error_of(load_config, path) == path + ': config file not found'


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    write(tmp_path, 'bad.yml', 'a: 1\nb: 2\nc: d: 3\n')
    top = write(tmp_path, 'top.yml', '_base_: bad.yml\n')
    message = error_of(load_config, top)
    assert message.startswith(os.path.join(str(tmp_path), 'bad.yml') +
                              ': line 3: invalid YAML: mapping values')
    assert message.endswith('(included from {})'.format(top))


@pytest.mark.parametrize('text, got', [('- 1\n- 2\n', 'list'),
                                       ('', 'an empty file'),
                                       ('just text\n', 'str')])
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    path = write(tmp_path, 'a.yml', text)
    assert error_of(load_config, path) == (
        '{}: top level: must be a mapping of config keys, got {}'.format(
            path, got))


def test_base_must_be_paths(tmp_path):
    path = write(tmp_path, 'a.yml', '_base_: {x: 1}\n')
    assert error_of(load_config, path) == (
        "{}: _base_: must be a path or a list of paths, got {{'x': 1}}".format(
            path))


def test_sources_record_the_file_of_each_value(tmp_path):
    base = write(tmp_path, 'base.yml', 'iters: 1\nmodel: {type: M, a: 1}\n')
    child = write(tmp_path, 'child.yml', '_base_: base.yml\nmodel: {a: 2}\n')
    _, sources = load_config_with_sources(child)
    assert sources['iters'] == base
    assert sources['model.type'] == base
    assert sources['model.a'] == child


# ------------------------------------------------------------------ --opts

def test_opts_values_are_parsed_as_yaml(valid):
    cfg = apply_opts(load_config(valid), [
        'model.backbone.output_stride=16', 'batch_size=4',
        'model.align_corners=False', 'train_dataset.dataset_root=data/y',
        'lr_scheduler.learning_rate=1.0e-3'])
    assert cfg['model']['backbone']['output_stride'] == 16
    assert cfg['batch_size'] == 4
    assert cfg['model']['align_corners'] is False
    assert cfg['train_dataset']['dataset_root'] == 'data/y'
    assert cfg['lr_scheduler']['learning_rate'] == 0.001


def test_opts_list_index(valid):
    cfg = apply_opts(load_config(valid), [
        'train_dataset.transforms.0.crop_size=[256,256]',
        'loss.coef.0=0.5'])
    assert cfg['train_dataset']['transforms'][0]['crop_size'] == [256, 256]
    assert cfg['loss']['coef'] == [0.5]


def test_opts_bad_list_index(valid):
    cfg = load_config(valid)
    assert error_of(apply_opts, cfg, ['train_dataset.transforms.2.prob=1']) == (
        '--opts: train_dataset.transforms.2: train_dataset.transforms is a '
        'list of 2 items; use an index from 0 to 1')
    assert 'use an index' in error_of(apply_opts, cfg, ['loss.coef.x=1'])


def test_opts_misspelled_key_is_rejected_with_a_suggestion(valid):
    message = error_of(apply_opts, load_config(valid),
                       ['model.backbon.output_stride=16'])
    assert message == ("--opts: model.backbon: unknown key 'backbon' in model; "
                       "did you mean 'backbone'?")


def test_opts_misspelled_top_level_key(valid):
    message = error_of(apply_opts, load_config(valid), ['batchsize=2'],
                       source='cli')
    assert message == ("cli: batchsize: unknown key 'batchsize' at the top "
                       "level; did you mean 'batch_size'?")


def test_opts_absent_constructor_argument_is_accepted(valid):
    cfg = apply_opts(load_config(valid), ['model.point_num_points=1024'])
    assert cfg['model']['point_num_points'] == 1024
    check_config(cfg, valid)


def test_opts_absent_argument_not_in_signature_suggests_the_closest(valid):
    message = error_of(apply_opts, load_config(valid),
                       ['model.point_num_point=1024'])
    assert message == ("--opts: model.point_num_point: unknown key "
                       "'point_num_point' in model; did you mean "
                       "'point_num_points'?")


def test_opts_declared_signature_of_a_forwarding_function(valid):
    cfg = load_config(valid)
    apply_opts(cfg, ['model.backbone.type=_TestForwardingBackbone',
                     'model.backbone.pretrained=w.pdparams'])
    assert cfg['model']['backbone']['pretrained'] == 'w.pdparams'
    assert "did you mean 'pretrained'" in error_of(
        apply_opts, cfg, ['model.backbone.pretrain=x'])


def test_opts_anything_goes_for_undeclared_kwargs(valid):
    cfg = apply_opts(load_config(valid), ['model.type=_TestAnythingModel',
                                          'model.whatever=3'])
    assert cfg['model']['whatever'] == 3


def test_opts_known_top_level_key_may_be_added(valid):
    cfg = apply_opts(load_config(valid),
                     ['test_config={is_slide: true, stride: [512, 512]}'])
    assert cfg['test_config'] == {'is_slide': True, 'stride': [512, 512]}


def test_opts_absent_mapping_must_be_given_whole(valid):
    message = error_of(apply_opts, load_config(valid),
                       ['test_config.is_slide=true'])
    assert message.startswith('--opts: test_config: is not in the config, so '
                              'keys inside it cannot be set one by one')


def test_opts_item_without_equals(valid):
    assert error_of(apply_opts, load_config(valid), ['batch_size']) == (
        '--opts: batch_size: expected key=value, e.g. '
        'model.backbone.output_stride=16')


def test_opts_into_a_scalar(valid):
    assert error_of(apply_opts, load_config(valid), ['iters.x=1']) == (
        '--opts: iters.x: iters is a int, not a mapping or a list')


def test_opts_record_their_source(valid):
    cfg, sources = load_config_with_sources(valid)
    apply_opts(cfg, ['model.backbone={type: _TestBackbone}'], sources=sources)
    assert sources['model.backbone'] == '--opts'
    assert 'model.backbone.output_stride' not in sources


# --------------------------------------------------------------- CLI flags

def test_cli_args_override_the_file(valid):
    cfg = apply_cli_args(load_config(valid), iters=5, batch_size=8,
                         learning_rate=0.1)
    assert (cfg['iters'], cfg['batch_size']) == (5, 8)
    assert cfg['lr_scheduler']['learning_rate'] == 0.1


def test_cli_args_none_change_nothing(valid):
    assert apply_cli_args(load_config(valid)) == load_config(valid)


def test_cli_learning_rate_needs_an_lr_scheduler():
    assert error_of(apply_cli_args, {'iters': 1}, learning_rate=0.1) == (
        '--learning_rate: lr_scheduler.learning_rate: the config has no '
        'lr_scheduler mapping to set it in')


def test_cli_learning_rate_rejects_the_old_form():
    cfg = {'learning_rate': {'value': 0.01, 'decay': {'type': 'poly'}}}
    assert "old 'learning_rate: {value: ..., decay: {...}}' form" in error_of(
        apply_cli_args, cfg, learning_rate=0.1)


# ----------------------------------------------------------- load_and_check

def test_load_and_check_applies_flags_then_opts(valid):
    cfg = load_and_check(valid, opts=['iters=7'], iters=5, batch_size=3)
    assert (cfg['iters'], cfg['batch_size']) == (7, 3)


def test_load_and_check_prefixes_override_errors_with_the_path(valid):
    assert error_of(load_and_check, valid, opts=['modle.x=1']).startswith(
        "{}: --opts: modle: unknown key 'modle'".format(valid))


def test_load_and_check_names_where_a_bad_value_came_from(valid):
    assert error_of(load_and_check, valid, iters=0) == (
        '{}: iters: must be a positive integer, got 0 (from --iters)'.format(
            valid))


def test_load_and_check_eval_needs_only_the_model(tmp_path):
    path = write(tmp_path, 'eval.yml', """\
        model:
          type: _TestModel
          backbone: {type: _TestBackbone}
          num_classes: 19
        """)
    assert load_and_check(path, for_training=False)['model']['num_classes'] == 19


# ------------------------------------------------------------------ checker

def check_error(cfg, path='exp.yml', **kwargs):
    return error_of(check_config, cfg, path, **kwargs)


def test_valid_config_passes(valid):
    check_config(load_config(valid), valid)


def test_unknown_top_level_key_with_suggestion(valid):
    cfg = load_config(valid)
    cfg['bacth_size'] = 2
    assert check_error(cfg) == ("exp.yml: bacth_size: unknown top-level key; "
                                "did you mean 'batch_size'?")


@pytest.mark.parametrize('key', ['train_dataset', 'loss', 'optimizer',
                                 'lr_scheduler', 'iters', 'batch_size'])
def test_training_keys_are_required(valid, key):
    cfg = load_config(valid)
    del cfg[key]
    assert check_error(cfg) == 'exp.yml: {}: is required for training'.format(
        key)
    check_config(cfg, 'exp.yml', for_training=False)


def test_model_is_always_required(valid):
    cfg = load_config(valid)
    del cfg['model']
    assert check_error(cfg, for_training=False) == 'exp.yml: model: is required'


@pytest.mark.parametrize('value', [0, -3, 2.0, True, '4'])
def test_batch_size_must_be_a_positive_int(valid, value):
    cfg = load_config(valid)
    cfg['batch_size'] = value
    assert check_error(cfg) == (
        'exp.yml: batch_size: must be a positive integer, got {!r}'.format(
            value))


def test_unknown_type_names_the_key_and_lists_known_names(valid):
    cfg = load_config(valid)
    cfg['model']['backbone']['type'] = '_TestBackbon'
    with pytest.raises(UnknownComponentError) as info:
        check_config(cfg, 'exp.yml')
    message = str(info.value)
    assert message.startswith("exp.yml: model.backbone: unknown backbones "
                              "type '_TestBackbon'; known: ")
    assert '_TestBackbone' in message and '_TestForwardingBackbone' in message


def test_unknown_transform_type_uses_the_transforms_registry(valid):
    cfg = load_config(valid)
    cfg['train_dataset']['transforms'][1]['type'] = '_TestLoss'
    assert check_error(cfg).startswith(
        "exp.yml: train_dataset.transforms.1: unknown transforms type "
        "'_TestLoss'")


def test_spec_without_type_where_a_component_is_expected(valid):
    cfg = load_config(valid)
    cfg['loss']['types'][0] = 'CrossEntropyLoss'
    assert check_error(cfg) == (
        "exp.yml: loss.types.0: must be a mapping with a 'type' naming one of "
        "the losses, got 'CrossEntropyLoss'")


def test_unknown_argument_names_the_base_file_it_came_from(tmp_path):
    base = write(tmp_path, 'base.yml', VALID.replace(
        'output_stride: 8', 'output_strid: 8'))
    child = write(tmp_path, 'child.yml', '_base_: base.yml\niters: 5\n')
    assert error_of(load_and_check, child) == (
        "{}: model.backbone.output_strid: _TestBackbone has no argument "
        "'output_strid'; did you mean 'output_stride'? (from {})".format(
            child, base))


def test_builder_supplied_arguments_are_rejected(valid):
    cfg = load_config(valid)
    cfg['optimizer']['learning_rate'] = 0.1
    assert check_error(cfg) == ('exp.yml: optimizer.learning_rate: must not be '
                                'set: set lr_scheduler.learning_rate instead')
    cfg = load_config(valid)
    cfg['lr_scheduler']['iters'] = 10
    assert check_error(cfg).startswith('exp.yml: lr_scheduler.iters: must not '
                                       'be set: ')


def test_loss_types_and_coef_lengths_must_match(valid):
    cfg = load_config(valid)
    cfg['loss']['coef'] = [1, 0.4]
    assert check_error(cfg) == ('exp.yml: loss.coef: has 2 entries but '
                                'loss.types has 1')
    cfg['loss']['coef'] = ['1']
    assert check_error(cfg) == "exp.yml: loss.coef.0: must be a number, got '1'"


def test_num_classes_must_agree(valid):
    cfg = load_config(valid)
    cfg['model']['num_classes'] = 21
    assert check_error(cfg) == ('exp.yml: model.num_classes: is 21 but '
                                'train_dataset has 19 classes')


def test_number_read_as_string_is_reported(valid):
    cfg = apply_opts(load_config(valid), ['lr_scheduler.end_lr=1e-5'])
    assert check_error(cfg) == (
        "exp.yml: lr_scheduler.end_lr: '1e-5' is read by YAML as a string, "
        "not a number; write 1.0e-5")


def test_old_learning_rate_form_is_rejected(valid):
    cfg = load_config(valid)
    cfg['learning_rate'] = {'value': 0.01, 'decay': {'type': 'poly'}}
    assert check_error(cfg).startswith(
        "exp.yml: learning_rate: the old 'learning_rate: {value: ..., "
        "decay: {...}}' form is not supported")


def test_nested_type_is_searched_in_all_registries(valid):
    cfg = load_config(valid)
    cfg['model']['extra'] = {'type': '_TestNowhere'}
    cfg['model']['type'] = '_TestAnythingModel'
    assert check_error(cfg).startswith(
        "exp.yml: model.extra: unknown type '_TestNowhere'")
    cfg['model']['extra'] = {'type': '_TestFlip', 'prob': 1.0}
    check_config(cfg, 'exp.yml')


# ------------------------------------------------------------------ builder

def test_build_component_builds_nested_specs_first(valid):
    cfg = load_config(valid)
    dataset = build_dataset(cfg, 'train_dataset')
    assert isinstance(dataset, _TestDataset)
    crop, flip = dataset.transforms
    assert isinstance(crop, _TestCrop) and crop.crop_size == [512, 512]
    assert isinstance(flip, _TestFlip)
    assert cfg['train_dataset']['transforms'][1] == {'type': '_TestFlip'}


def test_build_component_type_error_becomes_config_error():
    spec = {'type': '_TestCrop', 'size': 3}
    message = error_of(build_component, spec, 'val_dataset.transforms.0',
                       path='exp.yml')
    assert message.startswith('exp.yml: val_dataset.transforms.0: cannot build '
                              "_TestCrop: ")
    assert "'size'" in message


def test_build_component_unknown_type_names_path_and_key():
    with pytest.raises(UnknownComponentError, match=r"^exp\.yml: model: "
                       r"unknown models type '_TestNope'"):
        build_component({'type': '_TestNope'}, 'model', path='exp.yml')


def test_build_model_takes_num_classes_from_the_dataset(valid):
    model = build_model(load_config(valid))
    assert isinstance(model.backbone, _TestBackbone)
    assert model.num_classes == 19


def test_build_dataset_absent_is_none(valid):
    cfg = load_config(valid)
    del cfg['val_dataset']
    assert build_dataset(cfg, 'val_dataset') is None


def test_build_losses(valid):
    cfg = apply_opts(load_config(valid),
                     ['loss={types: [{type: _TestLoss}, '
                      '{type: _TestLoss, ignore_index: 0}], coef: [1, 0.4]}'])
    losses = build_losses(cfg)
    assert [loss.ignore_index for loss in losses['types']] == [255, 0]
    assert losses['coef'] == [1.0, 0.4]
    assert isinstance(losses['coef'][0], float)


def test_build_lr_scheduler_gets_iters(valid):
    scheduler = build_lr_scheduler(load_config(valid), iters=100)
    assert scheduler.decay_steps == 90  # iters - warmup_iters
    assert scheduler() == pytest.approx(1.0e-5)


def test_build_lr_scheduler_bad_value_is_a_config_error(valid):
    cfg = apply_opts(load_config(valid), ['lr_scheduler.power=0'])
    assert error_of(build_lr_scheduler, cfg, 100) == (
        'lr_scheduler: cannot build PolynomialDecay: power must be positive, '
        'got 0')


def test_build_optimizer_sgd_with_momentum_and_l2_decay(valid):
    cfg = load_config(valid)
    scheduler = build_lr_scheduler(cfg, iters=100)
    optimizer = build_optimizer(cfg, paddle.nn.Linear(2, 2), scheduler)
    assert isinstance(optimizer, paddle.optimizer.Momentum)
    assert optimizer._momentum == 0.9
    assert optimizer._regularization_method == 'l2_decay'  # fused L2Decay
    assert optimizer._regularization_coeff == pytest.approx(5.0e-4)
    assert optimizer.get_lr() == scheduler()


@pytest.mark.parametrize('spec, cls', [
    ({'type': 'sgd'}, paddle.optimizer.SGD),
    ({'type': 'Momentum', 'grad_clip_norm': 1.0}, paddle.optimizer.Momentum),
    ({'type': 'Adam', 'weight_decay': 1.0e-4}, paddle.optimizer.Adam),
    ({'type': 'adamw', 'beta2': 0.99}, paddle.optimizer.AdamW),
])
def test_build_optimizer_types(spec, cls):
    optimizer = build_optimizer({'optimizer': spec}, paddle.nn.Linear(2, 2),
                                0.1)
    assert type(optimizer) is cls
    assert optimizer.get_lr() == pytest.approx(0.1)


def test_build_optimizer_grad_clip():
    optimizer = build_optimizer(
        {'optimizer': {'type': 'sgd', 'momentum': 0.9, 'grad_clip_norm': 2.0}},
        paddle.nn.Linear(2, 2), 0.1)
    assert isinstance(optimizer._grad_clip, paddle.nn.ClipGradByGlobalNorm)



def test_train_and_val_num_classes_must_agree(valid):
    cfg = apply_opts(load_config(valid), [
        'val_dataset={type: _TestCustomDataset, dataset_root: d, '
        'num_classes: 2}'])
    assert check_error(cfg) == ('exp.yml: val_dataset.num_classes: is 2 but '
                                'train_dataset has 19 classes')


# ------------------------------------------------------------------ schema

def test_test_config_misspelled_key_fails_the_check_before_training(tmp_path):
    path = write(tmp_path, 'slid.yml', VALID + 'test_config: {is_slid: true}\n')
    assert error_of(load_and_check, path) == (
        "{}: test_config.is_slid: paddleseg.core.val.evaluate has no argument "
        "'is_slid'; did you mean 'is_slide'?".format(path))


def test_test_config_keys_are_evaluate_keyword_arguments(valid):
    from paddleseg.core.val import evaluate
    from paddleseg.cvlibs.schema import SECTIONS
    section = SECTIONS['test_config']
    params = inspect.signature(evaluate).parameters
    assert section.accepted_keys() == set(params) - set(section.supplied)
    assert {'is_slide', 'crop_size', 'stride', 'aug_eval', 'scales',
            'flip_horizontal'} <= section.accepted_keys()
    cfg = apply_opts(load_config(valid), [
        'test_config={is_slide: true, crop_size: [64, 64], stride: [32, 32]}'])
    check_config(cfg, 'exp.yml')


def test_the_declared_test_config_keys_are_evaluate_s_keyword_arguments():
    """The schema declares test_config's keys (it imports no paddleseg.core):
    they are the keyword arguments of paddleseg.core.evaluate but the ones
    its caller supplies."""
    from paddleseg import core
    from paddleseg.cvlibs.schema import SECTIONS, TEST_CONFIG_KEYS
    section = SECTIONS['test_config']
    params = inspect.signature(core.evaluate).parameters
    keywords = {name for name, param in params.items()
                if param.default is not param.empty}
    assert section.keys == TEST_CONFIG_KEYS
    assert set(section.supplied) <= set(params)
    assert set(TEST_CONFIG_KEYS) == keywords - set(section.supplied)


@pytest.mark.parametrize('key', ['num_workers', 'precision', 'on_prediction',
                                 'eval_dataset'])
def test_test_config_keys_the_caller_passes_are_rejected(valid, key):
    cfg = load_config(valid)
    cfg['test_config'] = {key: 1}
    assert check_error(cfg).startswith(
        'exp.yml: test_config.{}: must not be set: '.format(key))


def test_test_config_must_be_a_mapping(valid):
    cfg = load_config(valid)
    cfg['test_config'] = [1]
    assert check_error(cfg) == 'exp.yml: test_config: must be a mapping, got [1]'


def test_opts_add_a_key_to_an_existing_test_config(valid):
    cfg = apply_opts(load_config(valid), ['test_config={is_slide: true}',
                                          'test_config.stride=[32, 32]'])
    assert cfg['test_config'] == {'is_slide': True, 'stride': [32, 32]}
    assert error_of(apply_opts, cfg, ['test_config.is_slid=false']) == (
        "--opts: test_config.is_slid: unknown key 'is_slid' in test_config; "
        "did you mean 'is_slide'?")


def test_export_keys(valid):
    cfg = load_config(valid)
    cfg['export'] = {'transforms': [{'type': '_TestFlip'}], 'transform': []}
    assert check_error(cfg) == ("exp.yml: export.transform: unknown key; did "
                                "you mean 'transforms'?")
    cfg['export'] = {'transforms': [{'type': '_TestLoss'}]}
    assert check_error(cfg).startswith(
        "exp.yml: export.transforms.0: unknown transforms type '_TestLoss'")


@pytest.mark.parametrize('loss, key', [
    ({'types': [{'type': '_TestLoss'}], 'coef': [1, 2]}, 'loss.coef'),
    ({'types': [], 'coef': []}, 'loss.types'),
    ({'types': [{'type': '_TestLoss'}], 'coef': ['1']}, 'loss.coef.0'),
    ({'types': [{'type': '_TestLoss'}], 'coef': [1], 'coeff': 1}, 'loss.coeff'),
    ([1], 'loss'),
])
def test_checker_and_builder_report_a_bad_loss_alike(valid, loss, key):
    cfg = load_config(valid)
    cfg['loss'] = loss
    checked = check_error(cfg)
    built = error_of(build_losses, cfg, 'exp.yml')
    assert checked == built
    assert checked.startswith('exp.yml: {}: '.format(key))


def test_every_section_is_declared_once_and_used_everywhere(valid):
    from paddleseg.cvlibs import schema
    from paddleseg.cvlibs._checker import registry_for
    assert registry_for is schema.registry_for
    for name, section in schema.SECTIONS.items():
        assert section.name == name
        assert registry_for((name,)) is section.registry
        # a top-level key --opts may add is exactly a section
        cfg = load_config(valid)
        cfg.pop(name, None)
        value = {'x': 1} if section.kind == 'mapping' else 3
        if section.kind in ('count', 'mapping'):
            apply_opts(cfg, ['{}={}'.format(name, value)])
    assert set(schema.required_sections(True)) == {
        'model', 'train_dataset', 'loss', 'optimizer', 'lr_scheduler', 'iters',
        'batch_size'}
    assert schema.required_sections(False) == ['model']


def test_supplied_arguments_are_arguments_of_every_registered_optimizer():
    from paddleseg.cvlibs.schema import SECTIONS, accepted_args
    section = SECTIONS['optimizer']
    assert set(section.supplied) == {'parameters', 'learning_rate'}
    for type_name, component in section.registry.components_dict.items():
        accepted = accepted_args(component)
        assert accepted is None or set(section.supplied) <= accepted, type_name


def test_a_resnet_vd_backbone_accepts_the_class_arguments_but_layers(valid):
    from paddleseg.cvlibs.schema import accepted_args
    from paddleseg.models.backbones.resnet_vd import ResNet_vd
    class_args = set(inspect.signature(ResNet_vd).parameters) - {'layers'}
    for depth in (18, 34, 50, 101, 152):
        backbone = manager.BACKBONES['ResNet{}_vd'.format(depth)]
        assert accepted_args(backbone) == class_args
    cfg = apply_opts(load_config(valid), [
        'model.backbone={type: ResNet18_vd, output_strid: 8}'])
    assert check_error(cfg) == (
        "exp.yml: model.backbone.output_strid: ResNet18_vd has no argument "
        "'output_strid'; did you mean 'output_stride'?")
    cfg['model']['backbone'] = {'type': 'ResNet18_vd', 'layers': 50}
    assert "has no argument 'layers'" in check_error(cfg)


def test_test_config_auc_roc_true_is_refused_by_the_schema(valid):
    cfg = load_config(valid)
    cfg['test_config'] = {'auc_roc': False}
    check_config(cfg, 'exp.yml')
    cfg['test_config'] = {'auc_roc': True}
    assert check_error(cfg) == (
        "exp.yml: test_config.auc_roc: true is not supported (it needs every "
        "pixel's probabilities)")


# --------------------------------------------------- Config and SegBuilder

def test_one_required_key_check_for_the_checker_and_the_builder(valid):
    from paddleseg.cvlibs import SegBuilder
    cfg = Config(valid)
    del cfg.dic['loss'], cfg.dic['val_dataset']
    builder = SegBuilder(cfg)
    assert error_of(lambda: builder.loss) == (
        '{}: loss: is required for training'.format(valid))
    assert error_of(lambda: builder.val_dataset) == (
        '{}: val_dataset: is required'.format(valid))
    assert error_of(builder.require, 'val_dataset.transforms',
                    needed_for=' (predict.py uses the eval transforms)') == (
        '{}: val_dataset.transforms: is required (predict.py uses the eval '
        'transforms)'.format(valid))
    check_config(cfg.dic, valid, for_training=False)
    assert error_of(check_config, cfg.dic, valid) == (
        '{}: loss: is required for training'.format(valid))


def test_num_classes_has_one_rule(valid):
    from paddleseg.cvlibs import SegBuilder
    cfg = Config(valid)
    assert cfg.num_classes == 19                        # _TestDataset.NUM_CLASSES
    assert SegBuilder(cfg).model.num_classes == 19
    del cfg.dic['train_dataset'], cfg.dic['val_dataset']
    assert cfg.num_classes is None
    cfg.dic['model']['num_classes'] = 7
    assert cfg.num_classes == 7


def test_export_transforms_are_export_s_else_val_dataset_s(valid):
    from paddleseg.cvlibs import SegBuilder
    cfg = Config(valid, opts=['val_dataset.transforms=[{type: _TestFlip}]'])
    assert cfg.export_transforms == ('val_dataset', [{'type': '_TestFlip'}])
    assert [type(t) for t in SegBuilder(cfg).export_transforms] == [_TestFlip]
    cfg = Config(valid, opts=['export={transforms: [{type: _TestCrop}]}'])
    assert cfg.export_transforms == ('export', [{'type': '_TestCrop'}])
    assert [type(t) for t in SegBuilder(cfg).export_transforms] == [_TestCrop]
    cfg.dic['export']['transforms'][0]['size'] = 1     # past the check
    assert error_of(lambda: SegBuilder(cfg).export_transforms).startswith(
        '{}: export.transforms.0: cannot build _TestCrop: '.format(valid))
    del cfg.dic['export'], cfg.dic['val_dataset']
    assert cfg.export_transforms == ('val_dataset', [])
