"""paddleseg.core.amp on a CPU: the precision checks, the arguments of the
paddle.amp.decorate call (recorded by a fake, and checked against the real
signature), autocast, the loss scaler's state round trip and the dtype
matching of a resumed O2 model."""

import inspect
import types

import numpy as np
import paddle
import pytest

from paddleseg.core import amp
from paddleseg.errors import ConfigError
from train_helpers import gpu_grad_scaler  # tests/helpers


def _net():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4),
                                paddle.nn.Conv2D(4, 2, 1))


# -- resolve_precision ------------------------------------------------------------
def test_fp32_passes_and_bad_values_are_one_line_errors():
    assert amp.resolve_precision('fp32', 'O2') == ('fp32', 'O2')
    with pytest.raises(ConfigError, match="--precision must be one of fp32, fp16, got 'fp64'"):
        amp.resolve_precision('fp64')
    with pytest.raises(ConfigError, match="--amp_level must be one of O1, O2, got 'O3'"):
        amp.resolve_precision('fp16', 'O3')


def test_fp16_on_cpu_falls_back_to_fp32_with_a_warning(capsys):
    assert amp.resolve_precision('fp16', 'O2', device='cpu') == ('fp32', 'O2')
    assert 'fp16 needs a GPU; training in fp32 on cpu' in capsys.readouterr().out
    amp.resolve_precision('fp16', 'O1', device='cpu', what='evaluating')
    assert 'fp16 needs a GPU; evaluating in fp32 on cpu' in capsys.readouterr().out
    # the current device (the test suite runs on the CPU)
    assert amp.resolve_precision('fp16', 'O1')[0] == 'fp32'


def _fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(paddle, 'is_compiled_with_rocm', lambda: False)
    monkeypatch.setattr(paddle.device.cuda, 'get_device_capability',
                        lambda device=None: capability)
    monkeypatch.setattr(paddle.device.cuda, 'get_device_name',
                        lambda device=None: 'Tesla P100')


def test_fp16_on_an_old_gpu_is_refused_naming_it(monkeypatch):
    _fake_gpu(monkeypatch, (6, 0))
    with pytest.raises(ConfigError) as info:
        amp.resolve_precision('fp16', 'O1', device='gpu:0')
    message = str(info.value)
    assert '\n' not in message
    assert 'gpu:0 (Tesla P100) has compute capability 6.0' in message
    assert '7.0' in message and '--precision fp32' in message


def test_fp16_on_a_capable_gpu_xpu_or_npu_is_kept(monkeypatch):
    _fake_gpu(monkeypatch, (8, 0))
    assert amp.resolve_precision('fp16', 'O2', device='gpu:0') == ('fp16', 'O2')
    monkeypatch.setattr(paddle.amp, 'is_float16_supported', lambda device=None: True)
    assert amp.resolve_precision('fp16', 'O1', device='xpu:0') == ('fp16', 'O1')
    assert amp.resolve_precision('fp16', 'O1', device='npu:0') == ('fp16', 'O1')
    monkeypatch.setattr(paddle.amp, 'is_float16_supported', lambda device=None: False)
    with pytest.raises(ConfigError, match='xpu:0 does not support float16'):
        amp.resolve_precision('fp16', 'O1', device='xpu:0')


# -- prepare (paddle.amp.decorate) ------------------------------------------------
@pytest.fixture
def fake_decorate(monkeypatch):
    calls = []
    real = paddle.amp.decorate

    def decorate(**kwargs):
        # the arguments must be valid for paddle 3's documented signature
        inspect.signature(real).bind(**kwargs)
        calls.append(kwargs)
        model = types.SimpleNamespace(decorated=kwargs['models'])
        if kwargs.get('optimizers') is None:
            return model
        return model, types.SimpleNamespace(decorated=kwargs['optimizers'])

    monkeypatch.setattr(paddle.amp, 'decorate', decorate)
    return calls


def test_o2_decorates_with_master_weights_and_fp32_state(fake_decorate):
    net = _net()
    opt = paddle.optimizer.Momentum(parameters=net.parameters(), learning_rate=0.1)
    model, optimizer = amp.prepare(net, opt, 'fp16', 'O2')
    assert len(fake_decorate) == 1
    call = fake_decorate[0]
    assert call['models'] is net and call['optimizers'] is opt
    assert call['level'] == 'O2' and call['dtype'] == 'float16'
    assert call['master_weight'] is True and call['save_dtype'] == 'float32'
    assert model.decorated is net and optimizer.decorated is opt  # decorate's results


def test_o2_without_optimizer_and_excluded_layers(fake_decorate):
    net = _net()
    model, optimizer = amp.prepare(net, None, 'fp16', 'O2', excluded_layers=[net[2]])
    assert optimizer is None and model.decorated is net
    assert 'optimizers' not in fake_decorate[0]
    assert fake_decorate[0]['excluded_layers'] == [net[2]]


@pytest.mark.parametrize('precision, level', [('fp16', 'O1'), ('fp32', 'O1'), ('fp32', 'O2')])
def test_o1_and_fp32_do_not_decorate(fake_decorate, precision, level):
    net = _net()
    opt = paddle.optimizer.SGD(parameters=net.parameters())
    assert amp.prepare(net, opt, precision, level) == (net, opt)
    assert fake_decorate == []


def test_the_real_decorate_accepts_the_call():
    """On a CPU paddle's decorate leaves the weights float32, but it parses
    and checks every argument (a bad level or save_dtype raises)."""
    net = _net()
    opt = paddle.optimizer.Momentum(parameters=net.parameters(), learning_rate=0.1)
    model, optimizer = amp.prepare(net, opt, 'fp16', 'O2')
    assert model is net and optimizer is opt
    assert all(v.dtype == paddle.float32 for v in model.state_dict().values())


# -- autocast -----------------------------------------------------------------------
def test_autocast_fp32_is_a_no_op_and_fp16_asks_paddle(monkeypatch):
    with amp.autocast('fp32', 'O2'):
        assert not paddle.amp.is_autocast_enabled()
    seen = []
    monkeypatch.setattr(paddle.amp, 'auto_cast', lambda **kw: seen.append(kw) or 'ctx')
    assert amp.autocast('fp16', 'O2') == 'ctx'
    assert seen == [dict(enable=True, level='O2', dtype='float16',
                         custom_white_list=None, custom_black_list=None)]


# -- the loss scaler --------------------------------------------------------------
@pytest.fixture
def enabled_scaler(monkeypatch):
    """A real GradScaler made while paddle believes the place is a GPU
    (on a CPU place paddle disables every scaler)."""
    return lambda **kwargs: gpu_grad_scaler(monkeypatch, **kwargs)


def test_scaler_state_round_trip_through_a_file(enabled_scaler, tmp_path):
    scaler = enabled_scaler()
    assert scaler.get_init_loss_scaling() == amp.INIT_LOSS_SCALING
    scaler.set_init_loss_scaling(256.0)
    scaler.set_incr_every_n_steps(7)
    scaler.set_decr_ratio(0.25)
    scaler._incr_count, scaler._decr_count = 5, 1  # as after some steps
    path = str(tmp_path / 'scaler.pdstate')
    paddle.save(amp.scaler_state(scaler), path)

    fresh = enabled_scaler()
    assert amp.load_scaler_state(fresh, paddle.load(path)) is True
    restored = fresh.state_dict()
    np.testing.assert_array_equal(restored.pop('scale'), [256.0])
    assert restored == {'incr_ratio': 2.0, 'decr_ratio': 0.25, 'incr_every_n_steps': 7,
                        'decr_every_n_nan_or_inf': 1, 'incr_count': 5, 'decr_count': 1,
                        'use_dynamic_loss_scaling': True}
    # the scale as a Tensor (paddle.load(..., return_numpy=False) style)
    state = amp.scaler_state(scaler)
    state['scale'] = paddle.to_tensor(state['scale'])
    other = enabled_scaler()
    assert amp.load_scaler_state(other, state)
    assert float(other.state_dict()['scale'][0]) == 256.0


def test_scaler_states_across_precisions(enabled_scaler):
    fp32 = amp.make_grad_scaler('fp32')
    assert not fp32.is_enable() and amp.scaler_state(fp32) == {}
    fp16_state = amp.scaler_state(enabled_scaler())
    assert amp.load_scaler_state(fp32, fp16_state) is False  # fp16 ckpt, fp32 run
    fresh = enabled_scaler()
    assert amp.load_scaler_state(fresh, {}) is False           # fp32 ckpt, fp16 run
    assert amp.load_scaler_state(fresh, None) is False
    assert float(fresh.state_dict()['scale'][0]) == amp.INIT_LOSS_SCALING


# -- resuming an O2 model ----------------------------------------------------------
def test_match_state_dtypes_lets_fp32_checkpoints_into_fp16_weights():
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}  # float32
    half = _net()
    # what decorate(level='O2') does to a conv on a GPU (Layer.float16()
    # keeps float32 on a CPU build)
    half[0].weight = paddle.create_parameter([4, 3, 3, 3], dtype='float16')
    assert half[0].weight.dtype == paddle.float16
    with pytest.raises(AssertionError, match='dtype'):
        half.set_state_dict(state)  # paddle refuses mixed dtypes
    matched = amp.match_state_dtypes(half, state)
    assert matched['0.weight'].dtype == paddle.float16
    assert matched['2.weight'].dtype == paddle.float32
    assert matched['1._mean'].dtype == paddle.float32
    half.set_state_dict(matched)
    np.testing.assert_allclose(half[0].weight.astype('float32').numpy(),
                               state['0.weight'].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(half[2].weight.numpy(), state['2.weight'].numpy())
    # numpy values (safetensors, paddle.load(return_numpy=True)) too
    as_numpy = amp.match_state_dtypes(half, {k: v.numpy() for k, v in state.items()})
    assert as_numpy['0.weight'].dtype == np.float16
    assert as_numpy['2.weight'].dtype == np.float32
