"""The GPU suite: what runs only where paddle sees a CUDA device.

Every test collected from this folder gets the ``gpu`` marker (registered
in pyproject.toml; tests/conftest.py leaves such tests on paddle's default
device instead of pinning them to the CPU), and, when
paddle is a CPU build (``paddle.is_compiled_with_cuda()`` is False) or sees
no GPU (``paddle.device.cuda.device_count() == 0``), a skip whose reason says
which. Tests that need two GPUs skip themselves (:func:`need_gpus`).

The test modules reach the helpers below through the ``tools`` fixture
(a conftest is not importable by name: tests/ has one too).

Subprocesses (train.py, val.py, predict.py, export.py, the launcher) get
:func:`gpu_env`: this process's environment without an empty
``CUDA_VISIBLE_DEVICES`` (the CPU suite's setting, which hides every GPU).

TF32: on Ampere and newer GPUs paddle lets cuDNN and cuBLAS compute float32
convolutions and products in TF32 (10-bit mantissa), which moves the logits
by about 1e-3 relative, enough to flip many near-ties of a randomly
initialised model against the 0.1% of pixels the GPU-vs-CPU comparisons
allow. This suite sets NVIDIA's
``NVIDIA_TF32_OVERRIDE=0`` (unless it is set), here at collection, before any
GPU kernel runs, and in every subprocess, so that those comparisons measure
the toolkit's code paths, not TF32.
"""

import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
for _path in (ROOT, os.path.join(TESTS, 'helpers')):  # the repository and tests/helpers/
    if _path not in sys.path:
        sys.path.insert(0, _path)

import paddle  # noqa: E402

from robust_helpers import NARROW_MODEL  # noqa: E402  (the CPU robustness tests' narrow head)
from tiny_data import make_tiny_cityscapes, write_tiny_config  # noqa: E402

DEVICE = 'gpu'
"""The ``--device`` of every run of this suite."""

TF32_OVERRIDE = 'NVIDIA_TF32_OVERRIDE'
os.environ.setdefault(TF32_OVERRIDE, '0')  # see the module doc

SUBPROCESS_TIMEOUT = 900


# -- skipping -------------------------------------------------------------------
def no_gpu_reason():
    """Why this suite cannot run here, or None when paddle sees a GPU."""
    if not paddle.is_compiled_with_cuda():
        return ('no CUDA: paddle {} is a CPU-only build (paddle.is_compiled_with_cuda() '
                'is False); install paddlepaddle-gpu to run tests/gpu'
                .format(paddle.__version__))
    try:
        count = paddle.device.cuda.device_count()
    except Exception as exc:  # a broken driver or runtime
        return ('no GPU: paddle {} is built with CUDA but paddle.device.cuda.device_count() '
                'failed: {}'.format(paddle.__version__, str(exc).strip().splitlines()[0]
                                    if str(exc).strip() else type(exc).__name__))
    if count == 0:
        return ('no GPU: paddle {} is built with CUDA but paddle.device.cuda.device_count() '
                '== 0 (CUDA_VISIBLE_DEVICES={!r})'.format(
                    paddle.__version__, os.environ.get('CUDA_VISIBLE_DEVICES')))
    return None


def need_gpus(n):
    """Skip the calling test unless paddle sees at least ``n`` GPUs."""
    count = paddle.device.cuda.device_count()
    if count < n:
        pytest.skip('needs {} GPUs; paddle.device.cuda.device_count() == {} '
                    '(CUDA_VISIBLE_DEVICES={!r})'.format(
                        n, count, os.environ.get('CUDA_VISIBLE_DEVICES')))


def need_fp16():
    """Skip the calling test unless GPU 0 runs float16 AMP (paddle turns AMP
    off, with a warning, below compute capability 7.0)."""
    if not paddle.amp.is_float16_supported('gpu:0'):
        major, minor = paddle.device.cuda.get_device_capability(0)
        pytest.skip('float16 AMP is not supported on GPU 0 ({}, compute capability '
                    '{}.{}; paddle needs 7.0 or higher)'.format(
                        paddle.device.cuda.get_device_name(0), major, minor))


def _in_this_folder(item):
    path = str(getattr(item, 'path', None) or item.fspath)
    return path.startswith(HERE + os.sep)


def pytest_collection_modifyitems(config, items):
    # a conftest hook sees every item of the session: only this folder's
    mine = [item for item in items if _in_this_folder(item)]
    if not mine:
        return
    reason = no_gpu_reason()
    for item in mine:
        item.add_marker(pytest.mark.gpu)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


# -- subprocesses ---------------------------------------------------------------
def gpu_env(**extra):
    """The environment of this suite's subprocesses (see the module doc)."""
    env = dict(os.environ)
    if env.get('CUDA_VISIBLE_DEVICES', None) is not None \
            and not env['CUDA_VISIBLE_DEVICES'].strip():
        del env['CUDA_VISIBLE_DEVICES']
    env.setdefault(TF32_OVERRIDE, '0')
    env.update(PYTHONUNBUFFERED='1', SEG_CPU_THREADS='1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(args, timeout=SUBPROCESS_TIMEOUT, env=None):
    """Run ``python args...`` in the repository; return the CompletedProcess."""
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=ROOT,
                          env=env or gpu_env(), capture_output=True, text=True,
                          timeout=timeout)


def script(name):
    return os.path.join(ROOT, name)


def check_ok(proc, what):
    """Assert that ``proc`` exited 0; the message shows the end of its output."""
    assert proc.returncode == 0, '{} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}'.format(
        what, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])


def train_cmd(cfg, save_dir, *extra, device=DEVICE):
    """train.py and its arguments for a run of this suite."""
    return [script('train.py'), '--config', str(cfg), '--save_dir', str(save_dir),
            '--seed', '3', '--log_iters', '1', '--device', device] + [str(e) for e in extra]


_TRAIN_LINE = re.compile(r'\[TRAIN\] iter: (\d+)/(\d+), loss: (\S+) \(([^)]*)\)')


def train_log(text):
    """``[(iteration, loss, [terms])]`` of the ``[TRAIN]`` lines of a train.py log."""
    rows = []
    for m in _TRAIN_LINE.finditer(text):
        terms = [float(t) for t in m.group(4).split(',') if t.strip()]
        rows.append((int(m.group(1)), float(m.group(3)), terms))
    return rows


def assert_finite_losses(rows, text):
    assert rows, 'no [TRAIN] lines in the log:\n' + text[-3000:]
    for it, loss, terms in rows:
        assert math.isfinite(loss) and all(math.isfinite(t) for t in terms), \
            'non-finite loss at iter {}: {} ({})'.format(it, loss, terms)


# -- comparisons ----------------------------------------------------------------
FP16_MIN_AGREEMENT = 0.995
"""Least share of pixels on which an fp16 class map of the tiny model with
random weights (the ``exported``/``random_weights`` fixtures) must agree
with the fp32 CPU one.

Measured on the CPU (tests/helpers/fp16_agreement.py, float16 rounding
emulated in float32), on test_trt_predictor_gpu.py's three inputs: rounding
the weights and the input to float16 leaves 99.80-99.88% of the pixels
unchanged, rounding every layer's output too 99.79-99.95%: a 10-bit mantissa
flips up to 0.21% of the pixels of a random model, whose classes are
near-ties (its logits differ by ~1e-3). So 99.9% would fail a correct fp16
run; 99.5% allows ~2.4 times the measured flips (GPU kernels round at other
points than the emulation) and still fails a wrong model, weights or
preprocessing, which move far more pixels. For reference, the demo's trained model
(configs/demo, val mIoU 0.62) keeps 99.977% of the pixels of its 24 val
images (each >= 99.946%) under the same emulation."""


def agreement(a, b):
    """Fraction of positions where the class maps ``a`` and ``b`` agree."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, 'class maps of shapes {} and {}'.format(a.shape, b.shape)
    assert a.size > 0, 'empty class maps'
    return float(np.count_nonzero(a == b)) / a.size


# -- fixtures -------------------------------------------------------------------
@pytest.fixture(scope='session')
def tiny(tmp_path_factory):
    """A 64x128 Cityscapes-layout set (4 train, 2 val images) and a narrow
    ResNet18_vd PointRendFPN config on it (batch 1, 32x32 crops, 4 iters),
    as the CPU robustness tests make them."""
    base = tmp_path_factory.mktemp('gpu_tiny')
    root = make_tiny_cityscapes(str(base / 'data'), n_train=4, n_val=2)
    cfg = write_tiny_config(str(base / 'tiny.yml'), root, iters=4, batch_size=1,
                            crop=32, model=NARROW_MODEL)
    return {'base': base, 'root': root, 'cfg': str(cfg)}


@pytest.fixture
def on_device():
    """Run the test's in-process paddle code on :data:`DEVICE` (GPU 0);
    the previous device is restored afterwards."""
    previous = paddle.get_device()
    paddle.set_device(DEVICE + ':0' if DEVICE == 'gpu' else DEVICE)
    try:
        yield DEVICE
    finally:
        paddle.set_device(previous)


def build(cfg_path, for_training=True):
    """``(cfg, model)`` of a config, on the current device."""
    from paddleseg.cvlibs import Config, builder
    cfg = Config(cfg_path, for_training=for_training).dic
    return cfg, builder.build_model(cfg, cfg_path)


@pytest.fixture(scope='session')
def random_weights(tiny):
    """``model.pdparams`` of the tiny model with seeded random weights (built
    on the CPU, so the file is the same wherever the suite runs)."""
    path = tiny['base'] / 'random.pdparams'
    previous = paddle.get_device()
    paddle.set_device('cpu')
    try:
        paddle.seed(11)
        _, model = build(tiny['cfg'], for_training=False)
        paddle.save(model.state_dict(), str(path))
    finally:
        paddle.set_device(previous)
    return str(path)


# export.py's tiny model with a dynamic input and with a fixed 1x3x64x128 one
EXPORT_ARGS = {'dynamic': [], 'fixed': ['--input_shape', 1, 3, 64, 128]}


@pytest.fixture(scope='session')
def exported(tiny, random_weights, tmp_path_factory):
    """``{'dynamic': dir, 'fixed': dir}``: export.py's default format of the
    tiny model with seeded random weights (:data:`EXPORT_ARGS`)."""
    base = tmp_path_factory.mktemp('gpu_export')
    dirs = {}
    for name, extra in EXPORT_ARGS.items():
        save_dir = base / name
        proc = run_python([script('export.py'), '--config', tiny['cfg'],
                           '--model_path', random_weights, '--save_dir', save_dir,
                           '--device', DEVICE] + extra)
        check_ok(proc, 'export.py ({})'.format(name))
        dirs[name] = str(save_dir)
    return dirs


@pytest.fixture(scope='session')
def tools():
    """This module's helpers, for the test modules."""
    return types.SimpleNamespace(
        DEVICE=DEVICE, ROOT=ROOT, need_gpus=need_gpus, need_fp16=need_fp16,
        gpu_env=gpu_env, run_python=run_python, script=script, check_ok=check_ok,
        train_cmd=train_cmd, train_log=train_log,
        assert_finite_losses=assert_finite_losses, agreement=agreement,
        FP16_MIN_AGREEMENT=FP16_MIN_AGREEMENT, build=build)
