"""``--engine openvino``: OpenVINO Runtime on an ``--format onnx`` export, in
fp32 (ONNX Runtime's class maps, measured equal on every pixel) or bf16 (on a
CPU with AMX-BF16 or AVX512-BF16; refused with one line elsewhere, which is
tested by simulating the capability check, :func:`paddleseg.utils.cpu.bf16_isa`).

Measured on the tiny export (ResNet18_vd PointRendFPN, seeded weights, random
normal images 2x3x64x128, AMD EPYC Zen 4, OpenVINO 2026.4): fp32 class maps
equal to ONNX Runtime's on 100% of the pixels, logits within 2.4e-4; bf16
(the refinement kept fp32) class maps agree on 99.79-99.93% over four
inputs (BF16_AGREEMENT asks 99%).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from robust_helpers import LAUNCH_ENV, ROOT, script
from tiny_data import make_tiny_cityscapes, seeded_model, write_tiny_config

sys.path.insert(0, ROOT)
import export as export_cli  # noqa: E402
import predict as predict_cli  # noqa: E402
import val as val_cli  # noqa: E402

from paddleseg.deploy import DeployOptions, EngineModel, load_engine  # noqa: E402
from paddleseg.deploy import openvino_runtime  # noqa: E402
from paddleseg.errors import DeployError  # noqa: E402
from paddleseg.utils import cpu  # noqa: E402
from paddleseg.utils.openvino_core import openvino_core  # noqa: E402

BF16_AGREEMENT = 0.99
INT8_AGREEMENT = 0.95
LOGITS_ATOL = 1e-3


def _has(*modules):
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    return True


needs_bf16 = pytest.mark.skipif(
    _has('openvino') and cpu.bf16_isa() is None,
    reason='this CPU has no bf16 instructions (AMX-BF16, AVX512-BF16)')


@pytest.fixture
def no_bf16(monkeypatch):
    """A CPU without bf16 instructions, as the capability check sees it."""
    monkeypatch.setattr(cpu, 'bf16_isa', lambda: None)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny data, its config, seeded weights and a dict to cache exports in."""
    import paddle
    base = tmp_path_factory.mktemp('openvino')
    data = make_tiny_cityscapes(str(base / 'data'), n_train=0, n_val=3)
    cfg = write_tiny_config(str(base / 'tiny.yml'), data)
    weights = str(base / 'model.pdparams')
    paddle.save(seeded_model(cfg, 3).state_dict(), weights)
    return {'base': base, 'data': data, 'cfg': cfg, 'weights': weights, 'exports': {}}


def _export(tiny, output_op='argmax', shape=None):
    key = (output_op, shape)
    if key not in tiny['exports']:
        save_dir = str(tiny['base'] / 'onnx_{}_{}'.format(output_op, shape or 'dynamic'))
        argv = ['--config', tiny['cfg'], '--model_path', tiny['weights'], '--save_dir',
                save_dir, '--device', 'cpu', '--format', 'onnx', '--output_op', output_op]
        if shape:
            argv += ['--input_shape'] + [str(v) for v in shape]
        export_cli.main(argv)
        tiny['exports'][key] = save_dir
    return tiny['exports'][key]


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype('float32')


# -- the capability check -------------------------------------------------------

@pytest.mark.parametrize('flags, runtime, want', [
    ('fpu sse avx512f avx512_bf16 amx_bf16 amx_tile', True, 'AMX-BF16'),
    ('fpu sse avx512f avx512_bf16', True, 'AVX512-BF16'),
    ('fpu sse avx512f avx512_bf16', None, 'AVX512-BF16'),   # no OpenVINO: the flags
    ('fpu sse avx2', None, None),
    ('fpu sse avx512f avx512_bf16', False, None),           # the runtime decides
    ('fpu sse avx2 avx_ne_convert', True, 'BF16'),
])
def test_bf16_isa_asks_the_runtime_and_names_the_flags(tmp_path, monkeypatch, flags,
                                                       runtime, want):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {}\n\n'
                    'processor\t: 1\nflags\t\t: none\n'.format(flags))
    monkeypatch.setattr(cpu, 'CPUINFO', str(info))
    monkeypatch.setattr(cpu, '_openvino_has_bf16', lambda: runtime)
    assert cpu.bf16_isa.__wrapped__() == want
    assert cpu.cpu_model() == 'Some CPU'
    monkeypatch.setattr(cpu, 'CPUINFO', str(tmp_path / 'missing'))
    assert cpu.cpu_flags() == set() and cpu.cpu_model() == 'this CPU'


@pytest.mark.skipif(not os.path.exists('/proc/cpuinfo'), reason='no /proc/cpuinfo')
def test_openvinos_answer_matches_the_flags_here():
    """On this machine OpenVINO and /proc/cpuinfo tell the same story (a CPU
    with AVX-NE-CONVERT but neither flag may have OpenVINO's bf16 too)."""
    flags = cpu.cpu_flags()
    runtime = cpu._openvino_has_bf16()
    if flags & {'amx_bf16', 'avx512_bf16'}:
        assert runtime is True
    else:
        assert runtime is False or 'avx_ne_convert' in flags


# -- the options ----------------------------------------------------------------

def test_bf16_is_refused_with_one_line_on_a_cpu_without_it(no_bf16):
    with pytest.raises(DeployError) as exc:
        DeployOptions(engine='openvino', precision='bf16')
    line = str(exc.value)
    assert '\n' not in line
    assert 'neither AMX-BF16 nor AVX512-BF16' in line and 'fp32' in line, line
    # val.py / predict.py's fallbacks refuse it too (only fp16 falls back)
    with pytest.raises(DeployError, match='neither AMX-BF16'):
        DeployOptions.with_fallbacks(engine='openvino', precision='bf16')
    assert DeployOptions(engine='openvino').precision == 'fp32'


def test_bf16_options_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(cpu, 'bf16_isa', lambda: 'AVX512-BF16')
    assert DeployOptions(engine='openvino', precision='bf16').precision == 'bf16'
    for engine in ('onnx', 'inference', 'auto'):
        with pytest.raises(DeployError, match='--precision bf16 on the CPU runs with '
                                              '--engine openvino'):
            DeployOptions(engine=engine, precision='bf16')
    with pytest.raises(DeployError, match="--engine openvino runs on the CPU"):
        DeployOptions(engine='openvino', device='gpu:0')


def test_compile_config():
    assert openvino_runtime.compile_config() == {
        'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY',
        'NUM_STREAMS': 1, 'ENABLE_CPU_PINNING': False}
    config = openvino_runtime.compile_config(3, 'bf16')
    assert config['INFERENCE_PRECISION_HINT'] == 'bf16'
    assert config['INFERENCE_NUM_THREADS'] == 3


# -- load_engine ------------------------------------------------------------------

def test_fp32_equals_onnx_runtime(tiny):
    """Class maps equal on every pixel, logits within LOGITS_ATOL, at two
    sizes and two batch sizes of the dynamic export, and on a fixed-size one."""
    for output_op in ('argmax', 'none'):
        model_dir = _export(tiny, output_op)
        ort = load_engine(model_dir, 'onnx', cpu_threads=2)
        ov = load_engine(model_dir, 'openvino', cpu_threads=2)
        assert ov.engine == 'openvino' and ov.output_op == output_op
        for shape in ((1, 3, 64, 128), (2, 3, 48, 96)):
            x = _images(shape)
            got, want = ov(x), ort(x)
            assert got.shape == want.shape and got.dtype == want.dtype
            if output_op == 'argmax':
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, atol=LOGITS_ATOL)
    fixed = _export(tiny, shape=(1, 3, 64, 128))
    x = _images((1, 3, 64, 128), seed=1)
    np.testing.assert_array_equal(load_engine(fixed, 'openvino')(x),
                                  load_engine(fixed, 'onnx')(x))


def test_fp32_is_asked_explicitly_and_threads_are_passed(tiny):
    """OpenVINO computes in bf16 by default on a CPU that has it; 'fp32'
    must be f32, and cpu_threads its INFERENCE_NUM_THREADS."""
    import openvino
    compiled = openvino_runtime.create_openvino_model(_export(tiny), cpu_threads=1)
    assert compiled.get_property('INFERENCE_PRECISION_HINT') == openvino.Type.f32
    assert compiled.get_property('INFERENCE_NUM_THREADS') == 1
    assert compiled.get_property('ENABLE_CPU_PINNING') is False


@needs_bf16
def test_bf16_runs_in_bf16_and_agrees(tiny):
    model_dir = _export(tiny)
    import openvino
    compiled = openvino_runtime.create_openvino_model(model_dir, 2, 'bf16')
    assert compiled.get_property('INFERENCE_PRECISION_HINT') == openvino.Type.bf16
    x = _images((2, 3, 64, 128))
    want = load_engine(model_dir, 'onnx')(x)
    got = load_engine(model_dir, 'openvino', cpu_threads=2, precision='bf16')(x)
    assert got.shape == want.shape
    agreement = (got == want).mean()
    assert agreement >= BF16_AGREEMENT, agreement  # measured 99.93% here


def _runtime_precisions(compiled):
    """``{layer type: [runtime precision, ...]}`` of a compiled model."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        out.setdefault(info['layerType'].astype(str), []).append(
            info['runtimePrecision'].astype(str))
    return out


def test_refinement_layers_are_found_by_structure(tiny, tmp_path):
    """The marked layers: one Convolution (the coarse logits'), every TopK,
    GridSample and MatMul after it, no layer before it; none in a model
    without the subdivision's TopK."""
    import xml.etree.ElementTree as ET
    import openvino
    core = openvino_core()
    model = core.read_model(os.path.join(_export(tiny), 'model.onnx'))
    openvino.save_model(model, str(tmp_path / 'm.xml'), compress_to_fp16=False)
    root = ET.parse(str(tmp_path / 'm.xml')).getroot()
    types = {layer.get('id'): layer.get('type') for layer in root.find('layers')}
    marked = openvino_runtime.refinement_layers(root)
    kinds = [types[i] for i in marked]
    assert kinds.count('Convolution') == 1 and kinds[0] == 'Convolution'
    for kind in ('TopK', 'GridSample', 'MatMul', 'ScatterElementsUpdate'):
        assert kinds.count(kind) == list(types.values()).count(kind), kind
    assert 'Parameter' not in kinds and 'Result' not in kinds
    _, n = openvino_runtime.keep_refinement_fp32(core, model)
    assert n == len(marked)
    x = openvino.opset13.parameter([1, 3, 8, 8], openvino.Type.f32)
    plain = openvino.Model([openvino.opset13.relu(x)], [x])
    assert openvino_runtime.keep_refinement_fp32(core, plain) == (plain, 0)


@needs_bf16
def test_bf16_keeps_the_refinement_fp32(tiny):
    """Under bf16 the plugin honours the marks: the coarse logits'
    convolution and the subdivision's TopKs run fp32, the other
    convolutions bf16 (without the marks every one runs bf16)."""
    compiled = openvino_runtime.create_openvino_model(_export(tiny), 2, 'bf16')
    precisions = _runtime_precisions(compiled)
    convs = precisions['Convolution']
    assert convs.count('f32') == 1 and convs.count('bf16') == len(convs) - 1, convs
    assert set(precisions['TopK']) == {'f32'}, precisions['TopK']


def test_load_engine_refusals(tiny, no_bf16):
    model_dir = _export(tiny)
    with pytest.raises(DeployError, match='neither AMX-BF16'):
        load_engine(model_dir, 'openvino', precision='bf16')
    with pytest.raises(DeployError, match='takes no Paddle Inference options'):
        load_engine(model_dir, 'openvino', use_trt=True)
    with pytest.raises(DeployError, match='takes no Paddle Inference options'):
        load_engine(model_dir, 'onnx', precision='fp32')
    legacy = str(tiny['base'] / 'legacy')
    export_cli.main(['--config', tiny['cfg'], '--model_path', tiny['weights'],
                     '--save_dir', legacy, '--device', 'cpu'])
    with pytest.raises(DeployError, match='holds a paddle_legacy export; --engine '
                                          'openvino runs onnx'):
        load_engine(legacy, 'openvino')


def test_engine_model_without_openvino_is_one_line(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, 'openvino', None)  # import raises
    with pytest.raises(DeployError, match='openvino.*requirements-deploy.txt'):
        EngineModel(_export(tiny), 'openvino')


# -- the process's one Core ------------------------------------------------------

DROP_IN_ORDER = r"""
import gc, signal, subprocess, sys
from paddleseg.deploy.openvino_runtime import openvino_runner
signal.signal(signal.SIGCHLD, lambda *args: None)  # as paddle's DataLoader sets it
first = openvino_runner(sys.argv[1])
second = openvino_runner(sys.argv[1])
del first
gc.collect()
del second
gc.collect()
for _ in range(5):   # each child's end is a SIGCHLD, handled on the altstack
    subprocess.run(['true'], check=True)
print('alive')
"""


def test_models_dropped_in_the_order_made_leave_signals_deliverable(tiny):
    """Two OpenVINO models dropped in the order they were made, then
    SIGCHLDs handled by Python: the process lives. With a Core each,
    OpenVINO 2026.4's CPU plugin left the thread's alternate signal stack
    unmapped and the first SIGCHLD killed the process (SIGSEGV), which is
    how a full-suite pytest process crashed (docs/deployment.md)."""
    proc = subprocess.run([sys.executable, '-c', DROP_IN_ORDER, _export(tiny)], cwd=ROOT,
                          env=LAUNCH_ENV, capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout.split()[-1:]) == (0, ['alive']), proc.stderr[-2000:]


# -- val.py and predict.py --------------------------------------------------------

def _run(name, argv):
    """``name`` (val.py, predict.py) in a process of its own, as users run
    it (the entry script owns its process)."""
    proc = subprocess.run([sys.executable, script(name)] + argv, cwd=ROOT, env=LAUNCH_ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _val(tiny, name, *extra):
    out = str(tiny['base'] / (name + '.json'))
    _run('val.py', ['--config', tiny['cfg'], '--model_path', _export(tiny), '--device',
                    'cpu', '--save_json', out] + list(extra))
    with open(out) as f:
        return json.load(f)


def test_val_openvino_gives_onnx_runtimes_metrics(tiny):
    want = _val(tiny, 'val_onnx', '--engine', 'onnx')
    got = _val(tiny, 'val_openvino', '--engine', 'openvino', '--cpu_threads', '1')
    assert got['images'] == want['images'] == 3
    assert np.array(want['confusion']).sum() > 0
    assert got['confusion'] == want['confusion'] and got['miou'] == want['miou']


@needs_bf16
def test_val_openvino_bf16_is_close(tiny):
    want = _val(tiny, 'val_onnx_b', '--engine', 'onnx')
    got = _val(tiny, 'val_openvino_bf16', '--engine', 'openvino', '--precision', 'bf16')
    assert abs(got['miou'] - want['miou']) < 0.02, (got['miou'], want['miou'])


def _one_line_error(capsys, main, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if ': error: ' in line]
    assert len(err) == 1, err
    return err[0]


def test_cli_bf16_without_the_cpu_is_one_line(tiny, capsys, no_bf16):
    base = ['--config', tiny['cfg'], '--model_path', _export(tiny), '--device', 'cpu',
            '--engine', 'openvino', '--precision', 'bf16']
    line = _one_line_error(capsys, val_cli.main, base)
    assert line.startswith('val.py: error: --precision bf16') and 'fp32' in line, line
    line = _one_line_error(capsys, predict_cli.main, base + [
        '--image_path', tiny['data'], '--save_dir', str(tiny['base'] / 'refused')])
    assert 'neither AMX-BF16 nor AVX512-BF16' in line, line
    assert not os.path.exists(tiny['base'] / 'refused')


def test_dygraph_refuses_bf16(tiny, capsys):
    base = ['--config', tiny['cfg'], '--model_path', tiny['weights'], '--device', 'cpu',
            '--precision', 'bf16']
    line = _one_line_error(capsys, predict_cli.main,
                           base + ['--image_path', tiny['data']])
    assert 'runs the dygraph model in fp32' in line, line
    line = _one_line_error(capsys, val_cli.main, base)
    assert '--precision bf16 on the CPU runs with --engine openvino' in line, line


def _class_maps(folder):
    root = os.path.join(folder, 'pseudo_color_prediction')
    return {os.path.relpath(os.path.join(dp, f), root): np.array(Image.open(
        os.path.join(dp, f))) for dp, _, fs in os.walk(root) for f in fs}


def test_predict_openvino_writes_onnx_runtimes_class_maps(tiny):
    images = os.path.join(tiny['data'], 'leftImg8bit')
    outs = {}
    for engine in ('onnx', 'openvino'):
        outs[engine] = str(tiny['base'] / 'predict_{}'.format(engine))
        _run('predict.py', ['--config', tiny['cfg'], '--model_path', _export(tiny),
                            '--image_path', images, '--save_dir', outs[engine],
                            '--device', 'cpu', '--engine', engine])
    want, got = _class_maps(outs['onnx']), _class_maps(outs['openvino'])
    assert sorted(got) == sorted(want) and len(want) == 3
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_val_openvino_on_two_processes(tiny):
    """Under paddle.distributed.launch each rank compiles the export on its
    own threads and evaluates its share; the summed matrix is the one of a
    single ONNX Runtime process."""
    want = _val(tiny, 'val_onnx_one', '--engine', 'onnx')
    log_dir, out = tiny['base'] / 'launch_log', tiny['base'] / 'launch.json'
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), script('val.py'), '--config', tiny['cfg'],
           '--model_path', _export(tiny), '--engine', 'openvino', '--device', 'cpu',
           '--save_json', str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=LAUNCH_ENV, capture_output=True, text=True,
                          timeout=600)
    logs = [(log_dir / 'workerlog.{}'.format(r)).read_text(errors='replace')
            for r in (0, 1) if (log_dir / 'workerlog.{}'.format(r)).exists()]
    assert proc.returncode == 0, proc.stdout[-2000:] + ''.join(l[-3000:] for l in logs)
    with open(out) as f:
        got = json.load(f)
    assert got['images'] == 3 and got['confusion'] == want['confusion']


def _quantize_convs(src, dst):
    """An int8 QDQ copy of the export ``src`` (its convolutions, per
    channel, calibrated on one image) in ``dst``, by ONNX Runtime's
    quantiser."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                          quantize_static)

    class OneImage(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{'x': _images((1, 3, 32, 64), seed=7)}])

        def get_next(self):
            return next(self.feeds, None)

    os.makedirs(dst, exist_ok=True)
    quantize_static(os.path.join(src, 'model.onnx'), os.path.join(dst, 'model.onnx'),
                    OneImage(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=['Conv'], per_channel=True)
    with open(os.path.join(src, 'deploy.yaml')) as f:
        deploy = yaml.safe_load(f)
    deploy['Deploy']['precision'] = 'int8'  # more keys: the engine reads what it needs
    with open(os.path.join(dst, 'deploy.yaml'), 'w') as f:
        yaml.safe_dump(deploy, f)
    return dst


def test_an_int8_export_runs_at_each_size(tiny):
    """OpenVINO does not compile a QDQ model with a dynamic height and width;
    the runner compiles it per input size. Its class maps agree with ONNX
    Runtime's int8 ones (measured 99.4% at 1x64x128, 97.3% at 2x48x96:
    the two runtimes' int8 kernels differ)."""
    model_dir = _quantize_convs(_export(tiny), str(tiny['base'] / 'int8'))
    ov = load_engine(model_dir, 'openvino', cpu_threads=2)
    ort = load_engine(model_dir, 'onnx', cpu_threads=2)
    for shape in ((1, 3, 64, 128), (2, 3, 48, 96), (1, 3, 64, 128)):
        x = _images(shape, seed=3)
        got, want = ov(x), ort(x)
        assert got.shape == want.shape == (shape[0],) + shape[2:]
        assert (got == want).mean() >= INT8_AGREEMENT
