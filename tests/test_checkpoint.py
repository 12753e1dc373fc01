"""Tests of paddleseg.utils.checkpoint."""

import json
import logging
import os

import numpy as np
import paddle
import pytest

from paddleseg.errors import CheckpointError
from paddleseg.utils import checkpoint


def _source_model():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 2))


def _target_model():
    """Shares layer 0 with the source, differs in layer 2 and adds layer 3."""
    paddle.seed(1)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.ReLU(),
                                paddle.nn.Linear(8, 3), paddle.nn.Linear(3, 1))


def _numpy(state):
    return {k: v.numpy() for k, v in state.items()}


@pytest.fixture
def source_file(tmp_path):
    """A .pdparams of the source model plus one extra key; returns (path, arrays)."""
    state = dict(_source_model().state_dict())
    state['extra.weight'] = paddle.ones([2])
    path = tmp_path / 'src.pdparams'
    paddle.save(state, str(path))
    return str(path), _numpy(state)


@pytest.fixture
def logs(caplog):
    """``caplog`` hooked to the 'paddleseg' logger, which does not propagate."""
    log = logging.getLogger('paddleseg')
    log.addHandler(caplog.handler)
    yield caplog
    log.removeHandler(caplog.handler)


def test_pretrained_reports_missing_unexpected_and_mismatched(source_file, logs):
    path, arrays = source_file
    model = _target_model()
    before = _numpy(model.state_dict())

    result = checkpoint.load_pretrained_model(model, path)

    assert (result.loaded, result.total) == (2, 6)
    assert result.missing == ['3.weight', '3.bias']
    assert result.unexpected == ['extra.weight']
    assert result.mismatched == [('2.weight', (8, 2), (8, 3)), ('2.bias', (2,), (3,))]
    after = _numpy(model.state_dict())
    assert np.array_equal(after['0.weight'], arrays['0.weight'])
    assert np.array_equal(after['2.weight'], before['2.weight'])
    assert [r.getMessage() for r in logs.records] == [
        f'Loaded 2/6 tensors into Sequential from {path}; 2 missing: 3.weight, 3.bias; '
        '1 unexpected: extra.weight; 2 shape mismatches: 2.weight (checkpoint [8, 2] vs '
        'model [8, 3]), 2.bias (checkpoint [2] vs model [3])']
    assert logs.records[0].levelname == 'WARNING'


def test_pretrained_complete_match_logs_info(tmp_path, logs):
    path = str(tmp_path / 'm.pdparams')
    paddle.save(_source_model().state_dict(), path)
    result = checkpoint.load_pretrained_model(_source_model(), path)
    assert result.complete and result.loaded == 4
    assert logs.records[0].levelname == 'INFO'


def test_entire_model_strict_lists_keys_and_file(source_file):
    path, _ = source_file
    model = _target_model()
    before = _numpy(model.state_dict())
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_entire_model(model, path)
    message = str(info.value)
    assert message.startswith(f'{path} does not fit Sequential: 2 missing: 3.weight, 3.bias')
    assert '1 unexpected: extra.weight' in message and '2.weight (checkpoint [8, 2]' in message
    assert all(np.array_equal(v, before[k]) for k, v in _numpy(model.state_dict()).items())


def test_entire_model_strict_unexpected_only(source_file):
    path, arrays = source_file
    with pytest.raises(CheckpointError, match='0 missing; 1 unexpected: extra.weight'):
        checkpoint.load_entire_model(_source_model(), path)
    result = checkpoint.load_entire_model(_source_model(), path, strict=False)
    assert result.loaded == 4 and result.unexpected == ['extra.weight']


def test_load_state_file_errors_name_the_file(tmp_path):
    missing = tmp_path / 'missing.pdparams'
    with pytest.raises(CheckpointError, match='missing.pdparams'):
        checkpoint.load_state_file(str(missing))
    garbage = tmp_path / 'garbage.pdparams'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='garbage.pdparams'):
        checkpoint.load_state_file(str(garbage))
    garbage_st = tmp_path / 'garbage.safetensors'
    garbage_st.write_bytes(b'not a checkpoint either')
    with pytest.raises(CheckpointError, match='garbage.safetensors'):
        checkpoint.load_state_file(str(garbage_st))
    nested = tmp_path / 'nested.pdparams'
    paddle.save({'model': {'w': paddle.ones([1])}}, str(nested))
    with pytest.raises(CheckpointError, match="nested.pdparams is not a dict of tensors: 'model'"):
        checkpoint.load_state_file(str(nested))


def _train_state(value):
    model = paddle.nn.Linear(2, 2)
    for param in model.parameters():
        param.set_value(paddle.full(param.shape, value, param.dtype))
    return {'model.pdparams': model.state_dict(), 'model.pdopt': {'lr': value}}


def test_save_and_load_checkpoint(tmp_path):
    dest = checkpoint.save_checkpoint(_train_state(1.0), tmp_path / 'iter_10', {'iter': 10})
    assert sorted(os.listdir(dest)) == ['meta.json', 'model.pdopt', 'model.pdparams']
    with open(os.path.join(dest, 'meta.json')) as f:
        assert json.load(f) == {'files': ['model.pdopt', 'model.pdparams'], 'iter': 10}
    states, meta = checkpoint.load_checkpoint(dest)
    assert meta['iter'] == 10 and states['model.pdopt'] == {'lr': 1.0}
    assert np.all(states['model.pdparams']['weight'].numpy() == 1.0)


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    dest = tmp_path / 'iter_10'
    checkpoint.save_checkpoint(_train_state(1.0), dest, {'iter': 10})
    real_save = paddle.save
    calls = []

    def crash_after_first(obj, path, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt('killed')
        calls.append(path)
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, 'save', crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(_train_state(2.0), dest, {'iter': 10})
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(_train_state(2.0), tmp_path / 'iter_20', {'iter': 20})
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ['iter_10']
    states, _ = checkpoint.load_checkpoint(str(dest))
    assert np.all(states['model.pdparams']['weight'].numpy() == 1.0)
    assert checkpoint.find_latest_checkpoint(str(tmp_path)) == str(dest)


def test_replace_existing_checkpoint(tmp_path):
    dest = tmp_path / 'best_model'
    checkpoint.save_checkpoint(_train_state(1.0), dest, {'iter': 1})
    checkpoint.save_checkpoint(_train_state(3.0), dest, {'iter': 2})
    assert os.listdir(tmp_path) == ['best_model']
    states, meta = checkpoint.load_checkpoint(str(dest))
    assert meta['iter'] == 2 and np.all(states['model.pdparams']['weight'].numpy() == 3.0)


def test_crash_between_renames_keeps_old_files(tmp_path, monkeypatch):
    dest = tmp_path / 'iter_5'
    checkpoint.save_checkpoint(_train_state(1.0), dest, {'iter': 5})
    real_rename = os.rename
    renames = []

    def die_on_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt('killed')
        real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', die_on_second)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(_train_state(2.0), dest, {'iter': 5})
    monkeypatch.undo()
    old_dir = renames[0]
    states, _ = checkpoint.load_checkpoint(old_dir)
    assert np.all(states['model.pdparams']['weight'].numpy() == 1.0)


def _complete(save_dir, n):
    return checkpoint.save_checkpoint({'model.pdparams': {'w': paddle.ones([1])}},
                                      save_dir / f'iter_{n}', {'iter': n})


def test_find_latest_skips_incomplete(tmp_path):
    assert checkpoint.find_latest_checkpoint(str(tmp_path / 'absent')) is None
    for n in (5, 10):
        _complete(tmp_path, n)
    (tmp_path / 'iter_20').mkdir()
    (tmp_path / 'iter_20' / 'model.pdparams').write_bytes(b'half')
    (tmp_path / 'iter_x').mkdir()
    checkpoint.save_checkpoint({'model.pdparams': {'w': paddle.ones([1])}}, tmp_path / 'best_model')
    assert checkpoint.find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10')


def test_prune_keeps_newest(tmp_path):
    for n in (1, 2, 3, 10, 20):
        _complete(tmp_path, n)
    (tmp_path / 'iter_0').mkdir()
    removed = checkpoint.prune_checkpoints(str(tmp_path), 2)
    assert removed == [str(tmp_path / f'iter_{n}') for n in (1, 2, 3)]
    assert sorted(os.listdir(tmp_path)) == ['iter_0', 'iter_10', 'iter_20']
    assert checkpoint.prune_checkpoints(str(tmp_path), 2) == []


def test_safetensors_round_trip_and_convert(tmp_path):
    state = {
        'w': paddle.randn([3, 4]),
        'step': paddle.arange(5, dtype='int64'),
        'half': paddle.randn([2]).astype('float16'),
        'brain': paddle.randn([2, 2]).astype('bfloat16'),
        'np': np.arange(6, dtype='float64').reshape(2, 3),
    }
    expected = {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in state.items()}
    st = checkpoint.save_safetensors(state, str(tmp_path / 'a.safetensors'))
    _assert_same(checkpoint.load_state_file(st), expected)

    pd = checkpoint.convert(st, str(tmp_path / 'b.pdparams'))
    _assert_same(checkpoint.load_state_file(pd), expected)
    back = checkpoint.convert(pd, str(tmp_path / 'c.safetensors'))
    _assert_same(checkpoint.load_state_file(back), expected)
    assert sorted(os.listdir(tmp_path)) == ['a.safetensors', 'b.pdparams', 'c.safetensors']
    with pytest.raises(CheckpointError, match='Cannot convert'):
        checkpoint.convert(pd, str(tmp_path / 'd.bin'))


def _assert_same(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, array in expected.items():
        value = loaded[key].numpy()
        assert value.dtype == array.dtype and np.array_equal(value, array), key


def test_pretrained_from_safetensors_casts_dtype(tmp_path):
    source = _source_model()
    arrays = {k: v.numpy().astype('float64') for k, v in source.state_dict().items()}
    path = checkpoint.save_safetensors(arrays, str(tmp_path / 'm.safetensors'))
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 2))
    assert checkpoint.load_pretrained_model(model, path).complete
    assert model[0].weight.dtype == paddle.float32
    np.testing.assert_allclose(model[0].weight.numpy(), arrays['0.weight'], rtol=1e-6)
