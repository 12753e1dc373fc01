"""Paddle-TensorRT on the CPU: the passes before a TensorRT predictor and the
configs they lead to (paddleseg.deploy.tensorrt, create_predictor), the
precisions of Paddle Inference on a GPU, and the TensorRT flags of val.py /
predict.py.

* The shape-range collection (``trt_auto_tune``) really runs here: a
  CPU-only paddle drops ``enable_use_gpu`` and runs the tuning predictor on
  the CPU, where ``collect_shape_range_info`` works the same. On an export of
  the toolkit's PointRend model (narrow ResNet18_vd) the file must hold the
  ranges of the point head's tensors (top_k, grid_sampler, put_along_axis
  outputs): the inputs of the TensorRT subgraphs after the ops TensorRT does
  not take, which a range of ``x`` alone leaves unset.
* The TensorRT config is built on the recording Config
  (tests/helpers/config_recorder.py); ``paddle.inference.create_predictor``
  is replaced for TensorRT configs only (a CPU-only paddle cannot make one).

* ``export.py --format paddle_legacy --quantize int8`` on a simulated GPU
  with TensorRT (``tensorrt_missing`` answers None): the tuning run is real,
  the calibration run is recorded (its batches kept, a table written in
  its cache folder as Paddle would); then val.py's ``--use_trt`` on the
  export builds the int8 config from deploy.yaml.

The GPU runs: tests/gpu/test_trt_predictor_gpu.py.
"""

import os
import re

import numpy as np
import paddle
import pytest
from paddle import inference

from config_recorder import STATIC_SHAPE, RecordingConfig, check_calls, export_tiny_seg
from paddleseg.deploy import DeployError, DeployOptions, build_config, create_predictor
from paddleseg.deploy import export, load_deploy
from paddleseg.deploy import tensorrt as trt_mod

DYNAMIC = {'min': [1, 3, 16, 16], 'opt': [1, 3, 32, 48], 'max': [2, 3, 64, 96]}
POINT_RANGE = {'min': [1, 3, 32, 32], 'opt': [1, 3, 64, 96], 'max': [2, 3, 96, 128]}
FP32, HALF = inference.PrecisionType.Float32, inference.PrecisionType.Half
INT8, BF16 = inference.PrecisionType.Int8, inference.PrecisionType.Bfloat16
MISSING_RANGE = ('(InvalidArgument) some trt inputs dynamic shape info not set, check '
                 'the INFO log above for more details.')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """``{'dynamic': dir, 'static': dir}``: TinySeg exported (paddle_legacy)
    in folders of this module's own (auto-tuning writes beside the model)."""
    dirs = export_tiny_seg(tmp_path_factory.mktemp('trt_tiny'))
    return {'dynamic': dirs['paddle_legacy'], 'static': dirs['static']}


@pytest.fixture(scope='module')
def point_export(tmp_path_factory):
    """The narrow PointRendFPN of the robustness tests, exported with a dynamic input."""
    from robust_helpers import NARROW_MODEL
    from tiny_data import make_tiny_cityscapes, write_tiny_config

    from paddleseg.cvlibs import Config, builder
    base = tmp_path_factory.mktemp('trt_point')
    root = make_tiny_cityscapes(str(base / 'data'), n_train=1, n_val=1)
    cfg_path = str(write_tiny_config(str(base / 'tiny.yml'), root, iters=1, batch_size=1,
                                     crop=32, model=NARROW_MODEL))
    paddle.seed(3)
    model = builder.build_model(Config(cfg_path, for_training=False).dic, cfg_path)
    model.eval()
    export(model, str(base / 'export'))
    return str(base / 'export')


class Made:
    """``paddle.inference.create_predictor`` for the tests: the real one for
    configs without TensorRT (the tuning run), a stand-in for the others
    (kept in ``trt``)."""

    def __init__(self, real, error=None):
        self.real, self.error, self.trt, self.plain = real, error, [], []

    def __call__(self, config):
        if not any(c.name == 'enable_tensorrt_engine' for c in config.calls):
            self.plain.append(config)
            return self.real(config)
        if self.error:
            raise ValueError(self.error)
        self.trt.append(config)
        return 'trt predictor'


@pytest.fixture
def made(monkeypatch):
    """The recording Config and :class:`Made` in paddle.inference."""
    monkeypatch.setattr(inference, 'Config', RecordingConfig)
    stand_in = Made(inference.create_predictor)
    monkeypatch.setattr(inference, 'create_predictor', stand_in)
    return stand_in


def _names(config):
    check_calls(config.calls)
    return [c.name for c in config.calls]


def _only(config, name):
    found = [c for c in config.calls if c.name == name]
    assert len(found) == 1, (name, config.calls)
    return found[0]


# -- the tuning run -------------------------------------------------------------
def test_auto_tune_collects_the_point_heads_tensors(point_export, tmp_path):
    opts = DeployOptions(engine='inference', device='gpu', use_trt=True, trt_auto_tune=True,
                         trt_dynamic_shape=POINT_RANGE, trt_cache_dir=str(tmp_path))
    ranges = trt_mod.collect_shape_ranges(point_export, load_deploy(point_export), opts)
    shape_file = str(tmp_path / trt_mod.SHAPE_FILE)
    assert os.path.isfile(shape_file) and trt_mod.read_shape_ranges(shape_file) == ranges
    assert ranges['x'] == POINT_RANGE  # opt fed twice: Paddle's tuned opt is the mode
    # the point head's tensors, inputs of the subgraphs after the ops TensorRT
    # does not take, have ranges too; the number of points (rows) follows the size
    for op in ('top_k_v2', 'grid_sampler', 'put_along_axis'):
        names = [n for n in ranges if n.startswith(op + '_')]
        assert names, (op, sorted(ranges)[:20])
    points = [ranges[n] for n in ranges if n.startswith('top_k_v2_')]
    assert any(r['min'][0] == 1 and r['max'][0] == 2 and r['min'][1] < r['max'][1]
               for r in points), points


def test_tuning_shapes_feed_opt_twice():
    settings = trt_mod.TrtSettings(2, ('x', DYNAMIC), None, 'c')
    assert trt_mod.tuning_shapes(settings) == [DYNAMIC['min'], DYNAMIC['opt'],
                                               DYNAMIC['opt'], DYNAMIC['max']]
    fixed = {k: STATIC_SHAPE for k in ('min', 'opt', 'max')}
    assert trt_mod.tuning_shapes(trt_mod.TrtSettings(2, ('x', fixed), None, 'c')) == \
        [STATIC_SHAPE]


def test_auto_tune_then_tuned_tensorrt(tiny, made, tmp_path):
    cache = str(tmp_path / 'cache')
    out = create_predictor(tiny['dynamic'], use_gpu=True, use_trt=True, trt_auto_tune=True,
                           trt_dynamic_shape=DYNAMIC, trt_cache_dir=cache, precision='fp16')
    assert out == 'trt predictor'
    shape_file = os.path.join(cache, trt_mod.SHAPE_FILE)
    tuning, = made.plain
    assert _names(tuning) == ['enable_use_gpu', 'disable_glog_info',
                              'collect_shape_range_info']
    assert _only(tuning, 'enable_use_gpu').kwargs['precision_mode'] == FP32
    written, = _only(tuning, 'collect_shape_range_info').args
    assert written == '{}.{}.tmp'.format(shape_file, os.getpid())
    assert not os.path.exists(written)  # moved onto shape_file
    assert trt_mod.read_shape_ranges(shape_file)['x'] == DYNAMIC
    config, = made.trt
    assert _names(config) == ['enable_use_gpu', 'enable_tensorrt_engine',
                              'enable_tuned_tensorrt_dynamic_shape', 'set_optim_cache_dir',
                              'enable_memory_optim', 'disable_glog_info']
    assert _only(config, 'enable_tuned_tensorrt_dynamic_shape').kwargs == {
        'shape_range_info_path': shape_file, 'allow_build_at_runtime': True}
    trt = _only(config, 'enable_tensorrt_engine').kwargs
    assert trt['precision_mode'] == HALF and trt['max_batch_size'] == 2
    assert trt['use_calib_mode'] is False
    # the real Config keeps the tuned mode even without CUDA
    assert config.tuned_tensorrt_dynamic_shape() is True
    assert config.shape_range_info_path() == shape_file
    assert config.trt_allow_build_at_runtime() is True

    # the file, kept beside the export, serves a later run without tuning
    config = build_config(tiny['dynamic'], use_gpu=True, use_trt=True,
                          trt_shape_file=shape_file)
    assert 'set_trt_dynamic_shape_info' not in _names(config)
    assert _only(config, 'enable_tensorrt_engine').kwargs['max_batch_size'] == 2


def test_auto_tune_of_a_fixed_export_runs_its_shape(tiny, made):
    create_predictor(tiny['static'], use_gpu=True, use_trt=True, trt_auto_tune=True)
    shape_file = os.path.join(tiny['static'], trt_mod.SHAPE_FILE)  # beside the model
    assert trt_mod.read_shape_ranges(shape_file)['x'] == {
        k: STATIC_SHAPE for k in ('min', 'opt', 'max')}
    config, = made.trt
    assert _only(config, 'enable_tuned_tensorrt_dynamic_shape').kwargs[
        'shape_range_info_path'] == shape_file


def test_shape_file_without_the_input_is_refused(tiny, tmp_path):
    bad = tmp_path / 'other.pbtxt'
    bad.write_text('shape_range_info {\n  name: "y"\n  min_shape: 1\n  max_shape: 1\n'
                   '  opt_shape: 1\n}\n')
    with pytest.raises(DeployError, match="no shape range of the input 'x'"):
        build_config(tiny['dynamic'], use_gpu=True, use_trt=True, trt_shape_file=str(bad))


def test_missing_subgraph_ranges_name_auto_tune(tiny, made):
    made.error = MISSING_RANGE
    with pytest.raises(DeployError, match='trt_auto_tune=True') as exc:
        create_predictor(tiny['dynamic'], use_gpu=True, use_trt=True,
                         trt_dynamic_shape=DYNAMIC)
    assert '\n' not in str(exc.value)


# -- precisions on a GPU -----------------------------------------------------------
@pytest.mark.parametrize('precision, mode', [('fp32', FP32), ('fp16', HALF), ('bf16', BF16)])
def test_gpu_precision_without_tensorrt(tiny, made, precision, mode):
    config = build_config(tiny['dynamic'], use_gpu=True, precision=precision)
    assert _names(config) == ['enable_use_gpu', 'enable_memory_optim', 'disable_glog_info']
    assert _only(config, 'enable_use_gpu').kwargs['precision_mode'] == mode


def test_int8_tensorrt_calibrates_first(tiny, made, tmp_path):
    cache = tmp_path / 'cache'
    options = dict(use_gpu=True, use_trt=True, precision='int8', trt_cache_dir=str(cache))
    config = build_config(tiny['static'], **options)
    assert _only(config, 'enable_use_gpu').kwargs['precision_mode'] == FP32
    trt = _only(config, 'enable_tensorrt_engine').kwargs
    assert trt['precision_mode'] == INT8 and trt['use_calib_mode'] is True
    assert _only(config, 'set_optim_cache_dir').args == (str(cache),)
    assert cache.is_dir()  # made (Paddle makes one folder level only)
    # without a calibration table Paddle would run its calibration mode: refused
    with pytest.raises(DeployError, match='calibrate_int8'):
        create_predictor(tiny['static'], **options)
    assert made.trt == []
    (cache / (trt_mod.CALIB_PREFIX + '123')).write_text('table')
    assert create_predictor(tiny['static'], **options) == 'trt predictor'


def test_calibrate_int8_runs_the_batches_on_the_int8_config(tiny, made, monkeypatch,
                                                            tmp_path):
    seen = []
    monkeypatch.setattr(trt_mod, '_run_and_release',
                        lambda config, batches: seen.append((config, batches)))
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / (trt_mod.CALIB_PREFIX + '7')).write_text('table')
    images = [np.zeros(STATIC_SHAPE, 'float32')] * 2
    tables = trt_mod.calibrate_int8(tiny['static'], images, trt_cache_dir=str(cache))
    assert tables == [str(cache / (trt_mod.CALIB_PREFIX + '7'))]
    (config, batches), = seen
    assert len(list(batches)) == 2
    trt = _only(config, 'enable_tensorrt_engine').kwargs
    assert trt['precision_mode'] == INT8 and trt['use_calib_mode'] is True


# -- val.py / predict.py ------------------------------------------------------------
@pytest.fixture
def on_gpu(monkeypatch):
    monkeypatch.setattr(paddle, 'get_device', lambda: 'gpu:0')


def _options(script, *flags):
    import predict
    import val

    from paddleseg.cli.engine_args import deploy_options
    module = {'val': val, 'predict': predict}[script]
    base = ['--config', 'c.yml', '--model_path', 'm', '--engine', 'inference']
    if script == 'predict':
        base += ['--image_path', 'i']
    return deploy_options(module.parse_args(base + list(flags)))


@pytest.mark.parametrize('script', ['val', 'predict'])
def test_trt_flags_make_the_deploy_options(on_gpu, script):
    opts = _options(script, '--use_trt', '--trt_precision', 'fp16', '--auto_tune',
                    '--trt_dynamic_shape', '1,3,64,128', '1x3x96x160', '2,3,128,256',
                    '--min_subgraph_size', '5', '--auto_tuned_shape_file', 's.pbtxt')
    assert (opts.device, opts.precision, opts.use_trt, opts.trt_auto_tune) == \
        ('gpu:0', 'fp16', True, True)
    assert opts.trt_dynamic_shape == {'min': [1, 3, 64, 128], 'opt': [1, 3, 96, 160],
                                      'max': [2, 3, 128, 256]}
    assert (opts.trt_min_subgraph_size, opts.trt_shape_file) == (5, 's.pbtxt')
    # PaddleSeg's spellings
    opts = _options(script, '--use_trt', 'True', '--enable_auto_tune', 'True',
                    '--trt_precision', 'int8')
    assert (opts.use_trt, opts.trt_auto_tune, opts.precision) == (True, True, 'int8')
    assert _options(script).use_trt is False


@pytest.mark.parametrize('flags, match', [
    (['--trt_precision', 'fp16'], '--trt_precision.*--use_trt'),
    (['--use_trt', '--precision', 'fp16', '--trt_precision', 'int8'], 'disagree'),
    (['--use_trt', '--trt_dynamic_shape', '1,3,64', '1,3,64,64', '1,3,64,64'],
     '--trt_dynamic_shape'),
    (['--use_trt', '--trt_precision', 'bf16'], "'bf16' has no TensorRT mode"),
    (['--auto_tune'], 'trt_auto_tune.*use_trt'),
])
def test_bad_trt_flags_are_one_line_errors(on_gpu, flags, match):
    with pytest.raises(DeployError, match=match) as exc:
        _options('val', *flags)
    assert '\n' not in str(exc.value)


# -- export.py --format paddle_legacy --quantize int8 (simulated GPU) -------------------
CLI_SHAPE = [1, 3, 64, 128]  # the tiny val images' size


def _fake_calibration(real_run, runs):
    """``_run_and_release`` for the tests: the real one for configs without
    TensorRT (the tuning run); for the int8 ones the batches are kept in
    ``runs`` and a table written in the config's cache folder."""
    def run(config, batches):
        if not any(c.name == 'enable_tensorrt_engine' for c in config.calls):
            return real_run(config, batches)
        cache, = _only(config, 'set_optim_cache_dir').args
        runs.append((config, [np.array(b) for b in batches]))
        with open(os.path.join(cache, trt_mod.CALIB_PREFIX + '42'), 'w') as f:
            f.write('table')
    return run


@pytest.fixture(scope='module')
def cli_int8(tmp_path_factory):
    """The tiny config, its random weights, and export.py's int8 paddle_legacy
    export of them on a simulated GPU with TensorRT (with the recorded
    calibration runs)."""
    import export as export_cli
    from tiny_data import make_tiny_cityscapes, write_tiny_config

    from paddleseg.cvlibs import Config, SegBuilder
    base = tmp_path_factory.mktemp('trt_cli')
    root = make_tiny_cityscapes(str(base / 'data'), n_train=1, n_val=3)
    cfg = str(write_tiny_config(str(base / 'tiny.yml'), root))
    paddle.seed(11)
    weights = str(base / 'model.pdparams')
    paddle.save(SegBuilder(Config(cfg)).model.state_dict(), weights)
    t = {'base': base, 'cfg': cfg, 'weights': weights, 'runs': [],
         'argv': ['--config', cfg, '--model_path', weights, '--device', 'cpu']}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trt_mod, 'tensorrt_missing', lambda: None)
        mp.setattr(inference, 'Config', RecordingConfig)
        mp.setattr(trt_mod, '_run_and_release',
                   _fake_calibration(trt_mod._run_and_release, t['runs']))
        t['dir'] = str(base / 'int8')
        export_cli.main(t['argv'] + ['--save_dir', t['dir'], '--quantize', 'int8',
                                     '--calib_num', '2', '--input_shape'] +
                        [str(v) for v in CLI_SHAPE])
    return t


def test_export_quantize_int8_calibrates_tensorrt_on_the_val_images(cli_int8):
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.deploy import quantize as quant
    (config, batches), = cli_int8['runs']
    trt = _only(config, 'enable_tensorrt_engine').kwargs
    assert trt['precision_mode'] == INT8 and trt['use_calib_mode'] is True
    assert trt['max_batch_size'] == 1
    tuned = _only(config, 'enable_tuned_tensorrt_dynamic_shape').kwargs
    assert os.path.basename(tuned['shape_range_info_path']) == trt_mod.SHAPE_FILE
    cache, = _only(config, 'set_optim_cache_dir').args
    assert os.path.basename(cache) == trt_mod.DEFAULT_CACHE
    # the images of the ONNX path: 2 of the val set through the export transforms
    builder = SegBuilder(Config(cli_int8['cfg']))
    paths, _ = quant.calibration_images(builder, calib_num=2)
    expected = list(quant.calibration_batches(paths, builder.export_transforms))
    assert len(batches) == 2 and all(b.shape == tuple(CLI_SHAPE) for b in batches)
    for got, want in zip(batches, expected):
        np.testing.assert_array_equal(got, want)


def test_export_quantize_int8_writes_the_calibration(cli_int8):
    out = cli_int8['dir']
    assert sorted(os.listdir(out)) == sorted([
        'deploy.yaml', 'model.pdmodel', 'model.pdiparams', trt_mod.DEFAULT_CACHE,
        trt_mod.SHAPE_FILE])
    assert trt_mod.calibration_tables(os.path.join(out, trt_mod.DEFAULT_CACHE))
    assert trt_mod.read_shape_ranges(os.path.join(out, trt_mod.SHAPE_FILE))['x'] == {
        k: CLI_SHAPE for k in ('min', 'opt', 'max')}
    deploy = load_deploy(out)
    assert (deploy['precision'], deploy['format'], deploy['input_shape']) == \
        ('int8', 'paddle_legacy', CLI_SHAPE)
    assert deploy['calibration'] == {
        'images': 2, 'method': 'EntropyCalibration2', 'engine': 'paddle_tensorrt',
        'tables': 1, 'cache_dir': trt_mod.DEFAULT_CACHE, 'shape_file': trt_mod.SHAPE_FILE,
        'source': 'val'}
    assert 'quantization' not in deploy  # the program stays float


@pytest.mark.parametrize('flags, mode', [([], INT8), (['--trt_precision', 'fp16'], HALF)])
def test_val_use_trt_runs_the_int8_export_as_int8(cli_int8, made, on_gpu, capsys, flags,
                                                  mode):
    import val

    from paddleseg.cli.engine_args import load_exported
    from paddleseg.cvlibs import Config
    out = cli_int8['dir']
    args = val.parse_args(['--config', cli_int8['cfg'], '--model_path', out,
                           '--engine', 'inference', '--use_trt'] + flags)
    load_exported(args, Config(cli_int8['cfg'], for_training=False))
    assert 'calibrated for TensorRT int8; TensorRT runs {}'.format(
        'int8' if mode == INT8 else 'fp16') in capsys.readouterr().out
    assert made.plain == []  # no tuning run: the export's shape ranges
    config, = made.trt
    trt = _only(config, 'enable_tensorrt_engine').kwargs
    assert trt['precision_mode'] == mode and trt['use_calib_mode'] is (mode == INT8)
    assert _only(config, 'enable_tuned_tensorrt_dynamic_shape').kwargs[
        'shape_range_info_path'] == os.path.join(out, trt_mod.SHAPE_FILE)
    assert _only(config, 'set_optim_cache_dir').args == (
        os.path.join(out, trt_mod.DEFAULT_CACHE),)


@pytest.mark.parametrize('flags, match', [
    (['--format', 'paddle'], 'use --format paddle_legacy'),
    ([], r'fixed --input_shape N 3 H W.*got \[-1, 3, -1, -1\]'),
    (['--input_shape', '1', '3', '64', '64'], r'1x3x64x128 after the export transforms.*'
                                               r'fixed input 1x3x64x64 \(--input_shape\)'),
])
def test_export_quantize_int8_refusals_on_a_gpu(cli_int8, monkeypatch, capsys, flags, match):
    import export as export_cli
    monkeypatch.setattr(trt_mod, 'tensorrt_missing', lambda: None)
    calls = []
    monkeypatch.setattr(trt_mod, 'calibrate_int8', lambda *a, **k: calls.append(a))
    save_dir = str(cli_int8['base'] / 'refused')
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        export_cli.main(cli_int8['argv'] + ['--save_dir', save_dir, '--quantize', 'int8']
                        + flags)
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(match, line), line
    assert calls == [] and (not os.path.exists(save_dir) or os.listdir(save_dir) == [])


def test_tensorrt_missing_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(paddle, 'is_compiled_with_cuda', lambda: False)
    assert 'CPU-only build (no CUDA, no TensorRT)' in trt_mod.tensorrt_missing()
    monkeypatch.setattr(paddle, 'is_compiled_with_cuda', lambda: True)
    monkeypatch.setattr(inference, 'get_trt_compile_version', lambda: (0, 0, 0))
    assert trt_mod.tensorrt_missing().endswith('is built without TensorRT')
    monkeypatch.setattr(inference, 'get_trt_compile_version', lambda: (10, 1, 0))
    monkeypatch.setattr(inference, 'get_trt_runtime_version', lambda: (0, 0, 0))
    assert 'finds no TensorRT library at run time' in trt_mod.tensorrt_missing()
    monkeypatch.setattr(inference, 'get_trt_runtime_version', lambda: (10, 1, 0))
    monkeypatch.setattr(paddle.device.cuda, 'device_count', lambda: 0)
    assert trt_mod.tensorrt_missing().endswith('sees no GPU')
    monkeypatch.setattr(paddle.device.cuda, 'device_count', lambda: 1)
    assert trt_mod.tensorrt_missing() is None
