"""paddleseg.deploy.build_config / create_predictor: the
``paddle.inference.Config`` they build for the CPU, the GPU and TensorRT.

Unit-tested on the config they build, on the CPU: a tiny model (two
convolutions and a bilinear resize back to the input size) is exported by
:func:`paddleseg.deploy.export` in both Paddle formats with a dynamic
input, and once with a fixed one; :func:`build_config` runs on those folders.

What a CPU-only paddle 3.3.1 does with the GPU calls (measured, and read in
Paddle's analysis_config.cc): ``enable_use_gpu`` logs "Please use
PaddlePaddle with GPU version." and drops the call (``use_gpu()`` stays False,
``gpu_device_id()`` 0, ``memory_pool_init_size_mb()`` 100, its default);
``enable_tensorrt_engine`` raises RuntimeError ("(PreconditionNotMet) To use
Paddle-TensorRT, please compile with TENSORRT first.") once pybind has
accepted its arguments (wrong ones are a TypeError before that);
``set_trt_dynamic_shape_info`` is kept (``tensorrt_dynamic_shape_enabled()``
becomes True). So the GPU and TensorRT cases build the config on a
recording subclass of the real ``Config`` (tests/helpers/config_recorder.py): every
method call is recorded with its arguments and forwarded to the real
method, a RuntimeError is kept in the record instead of raised. The tests
check that each recorded method exists on the real class, that its keyword
names are those of its pybind signature, that the real method took the
arguments (no TypeError; a RuntimeError only where this paddle lacks
TensorRT), and that the arguments are those of Paddle Inference's Python
docs for the case (fp16 -> ``PrecisionType.Half``, the TensorRT workspace
in bytes, the dynamic shape range under the program's input name with
min <= opt <= max, ``use_calib_mode=False``). Where this paddle has CUDA
(and TensorRT), the getters are checked as well.

Nothing here is marked ``gpu``: the GPU run is tests/gpu/test_trt_predictor_gpu.py.
"""

import numpy as np
import paddle
import pytest
import yaml
from paddle import inference

from config_recorder import (REAL_CONFIG, STATIC_SHAPE, TRT_BUILT, RecordingConfig, check_calls,
                             export_tiny_seg)
from paddleseg.deploy import paddle_inference as export_mod
from paddleseg.deploy import (build_config, create_predictor, load_engine,
                                   program_input_name, run_predictor)

HALF = inference.PrecisionType.Half
FP32 = inference.PrecisionType.Float32
CUDA_BUILT = paddle.is_compiled_with_cuda()
DYNAMIC = {'min': [1, 3, 16, 16], 'opt': [1, 3, 32, 48], 'max': [2, 3, 64, 96]}
@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """``{'model': TinySeg, 'paddle_legacy': dir, 'paddle': dir, 'static': dir}``."""
    return export_tiny_seg(tmp_path_factory.mktemp('predictor_config'),
                           ('paddle_legacy', 'paddle'))


@pytest.fixture
def recorded(monkeypatch):
    """``build(model_dir, ...)`` -> ``(config, calls)``: build_config on a
    :class:`RecordingConfig`, with the calls it made (getters called later
    are not in the list)."""
    monkeypatch.setattr(inference, 'Config', RecordingConfig)

    def build(*args, **kwargs):
        config = build_config(*args, **kwargs)
        assert isinstance(config, RecordingConfig)
        calls = list(config.calls)
        check_calls(calls)
        return config, calls
    return build


def _names(calls):
    return [c.name for c in calls]


def _end(fmt):
    """The calls every config ends with: an old-IR program also gets
    buffer reuse (new-IR programs cannot have it on Paddle 3.3.1)."""
    return (['enable_memory_optim'] if fmt == 'paddle_legacy' else []) + ['disable_glog_info']


def _only(calls, name):
    found = [c for c in calls if c.name == name]
    assert len(found) == 1, (name, calls)
    return found[0]


def _model_files(model_dir):
    with open(model_dir + '/deploy.yaml') as f:
        deploy = yaml.safe_load(f)['Deploy']
    return model_dir + '/' + deploy['model'], model_dir + '/' + deploy['params']


def _one_line(exc_info):
    text = str(exc_info.value)
    assert text and '\n' not in text.strip(), text
    return text


# -- CPU --------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
def test_cpu_defaults_are_unchanged(exported, recorded, fmt):
    config, calls = recorded(exported[fmt])
    assert _names(calls) == ['disable_gpu', 'disable_mkldnn'] + _end(fmt)
    assert all(not c.args and not c.kwargs for c in calls)
    fresh = REAL_CONFIG(*_model_files(exported[fmt]))
    assert config.use_gpu() is False
    assert config.mkldnn_enabled() is False  # Paddle 3 turns it on by default
    assert fresh.mkldnn_enabled() is True
    assert config.glog_info_disabled() is True
    assert config.ir_optim() is True
    assert config.tensorrt_engine_enabled() is False
    assert config.cpu_math_library_num_threads() == fresh.cpu_math_library_num_threads()
    assert (config.prog_file(), config.params_file()) == _model_files(exported[fmt])


def test_cpu_threads(exported, recorded):
    config, calls = recorded(exported['paddle_legacy'], cpu_threads=3)
    assert _names(calls) == ['disable_gpu', 'set_cpu_math_library_num_threads',
                             'disable_mkldnn'] + _end('paddle_legacy')
    assert _only(calls, 'set_cpu_math_library_num_threads').args == (3,)
    assert config.cpu_math_library_num_threads() == 3
    assert config.use_gpu() is False


@pytest.mark.parametrize('fmt', ['paddle_legacy', 'paddle'])
def test_onednn_for_both_formats(exported, recorded, fmt):
    config, calls = recorded(exported[fmt], use_onednn=True, cpu_threads=2)
    expected = ['disable_gpu', 'set_cpu_math_library_num_threads', 'enable_mkldnn']
    if fmt == 'paddle':  # new IR: two oneDNN passes left out (see build_config)
        expected += ['delete_pass', 'delete_pass']
    assert _names(calls) == expected + _end(fmt)
    if fmt == 'paddle':
        assert [c.args for c in calls if c.name == 'delete_pass'] == [
            ('onednn_placement_pass',), ('operator_reshape_onednn_fuse_pass',)]
    assert config.mkldnn_enabled() is True
    assert config.cpu_math_library_num_threads() == 2


# -- GPU ----------------------------------------------------------------------------
@pytest.mark.parametrize('precision, device_id, mem, mode', [
    ('fp32', 0, 256, FP32), ('fp16', 1, 512, HALF)])
def test_gpu_config(exported, recorded, precision, device_id, mem, mode):
    kwargs = {} if precision == 'fp32' else dict(precision='fp16', device_id=1,
                                                    gpu_mem_mb=512)
    config, calls = recorded(exported['paddle_legacy'], use_gpu=True, use_onednn=True,
                             cpu_threads=4, **kwargs)
    # the docs' enable_use_gpu(memory_pool_init_size_mb, device_id, precision_mode);
    # no CPU setting (use_onednn and cpu_threads are CPU-only)
    assert _names(calls) == ['enable_use_gpu'] + _end('paddle_legacy')
    gpu = _only(calls, 'enable_use_gpu')
    assert gpu.args == ()
    assert gpu.kwargs == {'memory_pool_init_size_mb': mem, 'device_id': device_id,
                          'precision_mode': mode}
    assert config.tensorrt_engine_enabled() is False
    if CUDA_BUILT:
        assert config.use_gpu() is True
        assert config.gpu_device_id() == device_id
        assert config.memory_pool_init_size_mb() == mem
    else:  # a CPU-only paddle logs an error and keeps the CPU
        assert config.use_gpu() is False
        assert config.gpu_device_id() == 0
        assert config.memory_pool_init_size_mb() == 100


# -- TensorRT ----------------------------------------------------------------------
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_tensorrt_with_dynamic_shape(exported, recorded, precision, tmp_path):
    model_dir = exported['paddle_legacy']
    cache = str(tmp_path / 'trt_cache')
    config, calls = recorded(model_dir, use_gpu=True, precision=precision, use_trt=True,
                             trt_dynamic_shape=DYNAMIC, trt_min_subgraph_size=5,
                             trt_workspace_mb=512, trt_use_static=True,
                             trt_cache_dir=cache)
    assert _names(calls) == ['enable_use_gpu', 'enable_tensorrt_engine',
                             'set_trt_dynamic_shape_info', 'set_optim_cache_dir'] + \
        _end('paddle_legacy')
    mode = HALF if precision == 'fp16' else FP32
    # TensorRT fp16 runs its subgraphs in fp16; the ops outside stay fp32
    # (the docs' TensorRT FP16 example: enable_use_gpu(100, 0), then Half)
    assert _only(calls, 'enable_use_gpu').kwargs['precision_mode'] == FP32
    trt = _only(calls, 'enable_tensorrt_engine')
    assert trt.args == ()
    assert trt.kwargs == {'workspace_size': 512 * 1024 * 1024, 'max_batch_size': 2,
                          'min_subgraph_size': 5, 'precision_mode': mode,
                          'use_static': True, 'use_calib_mode': False}
    shape = _only(calls, 'set_trt_dynamic_shape_info')
    assert shape.args == ()
    # the input's name is the program's: the predictor's first input
    name = create_predictor(model_dir).get_input_names()[0]
    assert name == program_input_name(model_dir) == 'x'
    assert shape.kwargs == {'min_input_shape': {name: DYNAMIC['min']},
                            'max_input_shape': {name: DYNAMIC['max']},
                            'optim_input_shape': {name: DYNAMIC['opt']}}
    low, opt, high = (shape.kwargs[k][name] for k in
                      ('min_input_shape', 'optim_input_shape', 'max_input_shape'))
    assert all(a <= b <= c for a, b, c in zip(low, opt, high))
    assert _only(calls, 'set_optim_cache_dir').args == (cache,)
    assert config.tensorrt_dynamic_shape_enabled() is True  # kept even without CUDA
    if TRT_BUILT and CUDA_BUILT:
        assert config.tensorrt_engine_enabled() is True
        assert config.tensorrt_precision_mode() == mode
    else:  # enable_tensorrt_engine raised (kept in the record, checked above)
        assert trt.error is not None
        assert config.tensorrt_engine_enabled() is False


def test_tensorrt_dynamic_shape_names_the_input(exported, recorded):
    spec = dict(DYNAMIC, name='x')
    _, calls = recorded(exported['paddle_legacy'], use_gpu=True, use_trt=True,
                        trt_dynamic_shape=spec)
    shape = _only(calls, 'set_trt_dynamic_shape_info')
    assert set(shape.kwargs['min_input_shape']) == {'x'}
    trt = _only(calls, 'enable_tensorrt_engine')
    assert trt.kwargs['workspace_size'] == 1 << 30  # 1024 MB, the docs' 1 << 30
    assert trt.kwargs['min_subgraph_size'] == 3
    assert trt.kwargs['use_static'] is False
    # Paddle's default cache folder, passed explicitly (int8 tables and engines go there)
    assert _only(calls, 'set_optim_cache_dir').args == (
        exported['paddle_legacy'] + '/_opt_cache',)
    with pytest.raises(ValueError, match='trt_dynamic_shape') as exc:
        build_config(exported['paddle_legacy'], use_gpu=True, use_trt=True,
                     trt_dynamic_shape=dict(DYNAMIC, name='image'))
    assert "'x'" in _one_line(exc)


def test_tensorrt_static_export_gets_min_opt_max_of_its_shape(exported, recorded):
    # no dynamic shape would leave Paddle-TensorRT in its static implicit-batch
    # mode, which the point head's [N*P, C] rows break and TensorRT 10 lacks
    _, calls = recorded(exported['static'], use_gpu=True, use_trt=True, precision='fp16')
    assert _names(calls) == ['enable_use_gpu', 'enable_tensorrt_engine',
                             'set_trt_dynamic_shape_info', 'set_optim_cache_dir'] + \
        _end('paddle_legacy')
    trt = _only(calls, 'enable_tensorrt_engine')
    assert trt.kwargs['max_batch_size'] == STATIC_SHAPE[0]
    assert trt.kwargs['precision_mode'] == HALF
    assert _only(calls, 'set_trt_dynamic_shape_info').kwargs == {
        'min_input_shape': {'x': STATIC_SHAPE}, 'max_input_shape': {'x': STATIC_SHAPE},
        'optim_input_shape': {'x': STATIC_SHAPE}}
    # a range that keeps the fixed sizes is accepted, one that does not is refused
    fixed = {k: list(STATIC_SHAPE) for k in ('min', 'opt', 'max')}
    _, calls = recorded(exported['static'], use_gpu=True, use_trt=True,
                        trt_dynamic_shape=fixed)
    assert 'set_trt_dynamic_shape_info' in _names(calls)
    with pytest.raises(ValueError, match='trt_dynamic_shape') as exc:
        build_config(exported['static'], use_gpu=True, use_trt=True,
                     trt_dynamic_shape=DYNAMIC)
    assert 'fixed' in _one_line(exc)


def test_tensorrt_dynamic_export_without_dynamic_shape_is_a_one_line_error(exported):
    with pytest.raises(ValueError, match='trt_dynamic_shape') as exc:
        build_config(exported['paddle_legacy'], use_gpu=True, use_trt=True)
    assert 'dynamic' in _one_line(exc)


def test_tensorrt_needs_the_old_ir_format(exported):
    with pytest.raises(ValueError, match='paddle_legacy') as exc:
        build_config(exported['paddle'], use_gpu=True, use_trt=True,
                     trt_dynamic_shape=DYNAMIC)
    assert 'enable_tensorrt_engine' in _one_line(exc)


@pytest.mark.skipif(TRT_BUILT, reason='this paddle is built with TensorRT')
def test_tensorrt_without_tensorrt_in_paddle_is_a_one_line_error(exported):
    with pytest.raises(RuntimeError, match='use_trt') as exc:
        build_config(exported['paddle_legacy'], use_gpu=True, use_trt=True,
                     trt_dynamic_shape=DYNAMIC)
    assert 'TENSORRT' in _one_line(exc)


# -- bad values ---------------------------------------------------------------------
BAD = [
    (dict(precision='int8', use_gpu=True), "'int8' on the GPU is TensorRT's"),
    (dict(precision='bf16', use_gpu=True, use_trt=True, trt_dynamic_shape=DYNAMIC),
     "'bf16' has no TensorRT mode"),
    (dict(precision='int4', use_gpu=True), 'precision must be one of'),
    (dict(precision='int8'), "'int8'.*needs use_gpu"),
    (dict(precision='fp16'), 'fp16.*use_gpu'),
    (dict(use_trt=True), 'use_trt.*use_gpu'),
    (dict(use_trt=True, trt_dynamic_shape=DYNAMIC), 'use_trt.*use_gpu'),
    (dict(use_gpu=True, device_id=-1), 'device_id'),
    (dict(use_gpu=True, device_id=True), 'device_id'),
    (dict(use_gpu=True, gpu_mem_mb=-256), 'gpu_mem_mb'),
    (dict(use_gpu=True, gpu_mem_mb=0), 'gpu_mem_mb'),
    (dict(use_gpu=True, gpu_mem_mb=1.5), 'gpu_mem_mb'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=DYNAMIC,
          trt_workspace_mb=-1), 'trt_workspace_mb'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=DYNAMIC,
          trt_min_subgraph_size=0), 'trt_min_subgraph_size'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=[1, 3, 32, 32]),
     'trt_dynamic_shape'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape={'min': [1, 3, 8, 8],
                                                          'max': [1, 3, 64, 64]}),
     'trt_dynamic_shape'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, step=[1])),
     'trt_dynamic_shape'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, min=[3, 16, 16])),
     r"trt_dynamic_shape\['min'\]"),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, max=[2, 3, 64, 0])),
     r"trt_dynamic_shape\['max'\]"),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, opt=[1, 3, 32, 4.5])),
     r"trt_dynamic_shape\['opt'\]"),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, min=[1, 3, 128, 16])),
     'trt_dynamic_shape.*min <= opt <= max'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, opt=[3, 3, 32, 48])),
     'trt_dynamic_shape.*min <= opt <= max'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(
        min=[1, 4, 16, 16], opt=[1, 4, 32, 32], max=[1, 4, 64, 64])), 'trt_dynamic_shape'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=dict(DYNAMIC, name='')),
     r"trt_dynamic_shape\['name'\]"),
    (dict(use_gpu=True, trt_dynamic_shape=DYNAMIC), 'trt_dynamic_shape.*use_trt'),
    (dict(use_gpu=True, trt_use_static=True), 'trt_use_static.*use_trt'),
    (dict(use_gpu=True, trt_cache_dir='/tmp/cache'), 'trt_cache_dir.*use_trt'),
    (dict(use_gpu=True, trt_auto_tune=True), 'trt_auto_tune.*use_trt'),
    (dict(use_gpu=True, trt_shape_file='a.pbtxt'), 'trt_shape_file.*use_trt'),
    (dict(use_gpu=True, use_trt=True, trt_dynamic_shape=DYNAMIC, trt_shape_file=3),
     'trt_shape_file must be a path'),
    (dict(use_gpu=True, use_trt=True, trt_auto_tune=True), 'trt_auto_tune.*dynamic'),
    (dict(use_gpu=True, use_trt=True, trt_shape_file='/nonexistent/s.pbtxt'),
     'no such file'),
]


@pytest.mark.parametrize('kwargs, match', BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_values_are_one_line_errors_naming_the_argument(exported, recorded,
                                                            kwargs, match):
    _ = recorded  # the recording Config: no call may reach Paddle before the check
    with pytest.raises(ValueError, match=match) as exc:
        build_config(exported['paddle_legacy'], **kwargs)
    _one_line(exc)


def test_bad_values_are_refused_before_any_config_is_made(exported, monkeypatch):
    made = []
    monkeypatch.setattr(inference, 'Config', lambda *a: made.append(a))
    for kwargs, match in BAD:
        with pytest.raises(ValueError, match=match):
            build_config(exported['paddle_legacy'], **kwargs)
    assert made == []


def test_onnx_folder_is_refused(tmp_path):
    folder = tmp_path / 'onnx'
    folder.mkdir()
    (folder / 'deploy.yaml').write_text(yaml.safe_dump({'Deploy': {
        'model': 'model.onnx', 'transforms': [], 'input_shape': [-1, 3, -1, -1],
        'output_op': 'argmax', 'format': 'onnx'}}))
    for call in (build_config, create_predictor):
        with pytest.raises(ValueError, match='ONNX') as exc:
            call(str(folder))
        _one_line(exc)
    with pytest.raises(ValueError, match='onnx') as exc:
        load_engine(str(folder), engine='onnx', precision='fp16')
    _one_line(exc)


# -- the predictor ----------------------------------------------------------------
def _dygraph_class_map(model, x):
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0]
    return paddle.argmax(logits, axis=1).numpy().astype(np.int32)


@pytest.mark.parametrize('fmt, options', [
    ('paddle_legacy', {}), ('paddle_legacy', dict(use_onednn=True, cpu_threads=1)),
    ('paddle', {}), ('paddle', dict(use_onednn=True))])
def test_cpu_predictor_runs_and_matches_dygraph(exported, fmt, options):
    predictor = create_predictor(exported[fmt], **options)
    for n, h, w in ((1, 32, 48), (2, 40, 24)):
        x = np.random.default_rng(n + h + w).standard_normal((n, 3, h, w)).astype('float32')
        out = run_predictor(predictor, x)
        assert out.dtype == np.int32 and out.shape == (n, h, w)
        np.testing.assert_array_equal(out, _dygraph_class_map(exported['model'], x))


def test_create_predictor_passes_the_options_to_build_config(exported, monkeypatch):
    seen = []
    real = export_mod.build_config

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(export_mod, 'build_config', spy)
    create_predictor(exported['paddle_legacy'], False, False, 2)
    assert seen == [((exported['paddle_legacy'], False, False, 2), {})]
    with pytest.raises(TypeError):
        create_predictor(exported['paddle_legacy'], use_tensorrt=True)  # not an argument


def test_load_engine_forwards_the_predictor_options(exported, monkeypatch):
    seen = []
    monkeypatch.setattr(export_mod, 'create_predictor',
                        lambda *args, **kwargs: seen.append((args, kwargs)))
    options = dict(device_id=1, precision='fp16', use_trt=True, trt_dynamic_shape=DYNAMIC)
    run = load_engine(exported['paddle_legacy'], 'inference', True, False, None, **options)
    assert run.engine == 'inference'
    assert seen == [((exported['paddle_legacy'], True, False, None), options)]
