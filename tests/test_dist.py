"""paddleseg.utils.dist: device checks, and the decisions rank 0 makes for
every rank, with one process and under a real two-process CPU launch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import paddle
import pytest

from robust_helpers import LAUNCH_ENV, ROOT, make_data, one_error_line, run_cli, write_config
from paddleseg.errors import ConfigError
from paddleseg.utils import dist
from paddleseg.utils.checkpoint import save_checkpoint
from paddleseg.cli.build import setup_device

DRIVER = os.path.join(ROOT, 'tests', 'helpers', 'dist_resume_driver.py')


# -- devices ---------------------------------------------------------------------
def test_device_kind_keeps_xpu_and_custom_devices_apart():
    assert dist.device_kind('gpu:0') == 'gpu'
    assert dist.device_kind('xpu:1') == 'xpu'
    assert dist.device_kind('npu:0') == 'npu'
    assert dist.device_kind('iluvatar_gpu:0') == 'iluvatar_gpu'
    assert dist.device_kind('cpu') == 'cpu'
    assert dist.device_kind() == 'cpu'  # the test suite's device


def test_parse_device_is_the_one_parse_of_an_index():
    assert dist.parse_device('gpu:1') == ('gpu', 1)
    assert dist.parse_device(' GPU ') == ('gpu', None)
    assert dist.parse_device('npu:0') == ('npu', 0)
    with pytest.raises(ConfigError, match='--device gpu:x: expected gpu or gpu:N'):
        dist.parse_device('gpu:x')


def test_single_process_collectives_keep_the_own_values():
    assert dist.init_distributed() == (0, 1)
    assert dist.max_over_ranks([True, 0, 15]) == [1, 0, 15]
    out = dist.sum_over_ranks(np.array([[1, 2], [3, 4]], np.int32))
    assert out.dtype == np.int64 and out.tolist() == [[1, 2], [3, 4]]
    assert dist.all_gather_objects(('a', 1)) == [('a', 1)]


def test_derive_seed_is_the_seeds_of_earlier_versions():
    """A step's and a sample's seeds stay what they were (resume exactness
    across versions): ``(seed, it, rank, 7)`` and ``(seed, epoch, position)``."""
    assert dist.derive_seed(1, 5, 0, 7) == int(
        np.random.default_rng([1, 5, 0, 7]).integers(2 ** 31))
    assert dist.derive_seed(3, 0, 9) == int(np.random.default_rng([3, 0, 9]).integers(2 ** 31))
    assert dist.derive_seed(3, 0, 9) != dist.derive_seed(3, 0, 10)


def test_utils_never_import_paddleseg_core():
    """Layering: what utils/dist.py, env.py and checkpoint.py import (even
    inside a function) is below paddleseg.core."""
    import ast
    for name in ('dist.py', 'env.py', 'checkpoint.py'):
        path = os.path.join(ROOT, 'paddleseg', 'utils', name)
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith('paddleseg.core') for n in names), (name, names)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args):
            func = getattr(call.func, 'attr', getattr(call.func, 'id', ''))
            arg = getattr(call.args[0], 'value', None)
            assert not (func in ('import_module', '__import__') and isinstance(arg, str)
                        and arg.startswith('paddleseg.core')), (name, arg)


@pytest.mark.parametrize('device, words', [
    ('gpu', ['--device gpu:', 'CPU-only build', 'paddlepaddle-gpu', '--device cpu']),
    ('xpu', ['--device xpu:', 'cannot run on xpu', 'XPU build']),
    ('npu', ['--device npu:', 'cannot run on npu', 'paddle-custom-npu']),
])
def test_devices_this_build_lacks_are_one_line_errors(device, words):
    """This machine's paddle is a CPU-only build: every other device is
    refused before paddle.set_device, naming it."""
    before = paddle.get_device()
    with pytest.raises(ConfigError) as info:
        setup_device(device)
    message = str(info.value)
    assert '\n' not in message
    for word in words:
        assert word in message
    assert paddle.get_device() == before


@pytest.fixture
def set_device_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(paddle, 'set_device', calls.append)
    return calls


def test_a_registered_custom_device_and_an_xpu_build_are_used(monkeypatch, set_device_calls):
    monkeypatch.setattr(paddle.device, 'get_all_custom_device_type', lambda: ['npu'])
    monkeypatch.setattr(paddle.device, 'get_available_custom_device',
                        lambda: ['npu:0', 'npu:1'])
    setup_device('npu', cpu_threads=1)
    setup_device('npu:1', cpu_threads=1)
    with pytest.raises(ConfigError, match=r'--device npu:2: only 2 npu device\(s\) visible'):
        setup_device('npu:2', cpu_threads=1)
    monkeypatch.setattr(paddle, 'is_compiled_with_xpu', lambda: True)
    monkeypatch.setattr(paddle.device.xpu, 'device_count', lambda: 1)
    setup_device('xpu', cpu_threads=1)
    assert set_device_calls == ['npu', 'npu:1', 'xpu']


def test_a_cuda_build_without_visible_gpus_says_so(monkeypatch, set_device_calls):
    monkeypatch.setattr(paddle, 'is_compiled_with_cuda', lambda: True)
    monkeypatch.setattr(paddle.device.cuda, 'device_count', lambda: 0)
    with pytest.raises(ConfigError, match='sees no gpu device.*CUDA_VISIBLE_DEVICES'):
        setup_device('gpu', cpu_threads=1)
    assert dist.resolve_device(None) == 'cpu'  # the default falls back
    monkeypatch.setattr(paddle.device.cuda, 'device_count', lambda: 2)
    assert dist.resolve_device(None) == 'gpu'
    setup_device('GPU:1', cpu_threads=1)
    assert set_device_calls == ['gpu:1']


@pytest.mark.parametrize('script, device', [('train.py', 'gpu'), ('val.py', 'npu')])
def test_entry_scripts_print_one_line_for_a_missing_device(tmp_path, script, device):
    cfg = write_config(tmp_path / 'tiny.yml', make_data(tmp_path / 'data'))
    args = ['--config', cfg, '--device', device]
    args += (['--save_dir', tmp_path / 'out'] if script == 'train.py'
             else ['--model_path', tmp_path / 'missing.pdparams'])
    proc = run_cli(script, *args)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr, script)
    assert '--device {}: PaddlePaddle'.format(device) in line
    assert 'cannot run on {}'.format(device) in line


# -- one process ---------------------------------------------------------------------
def _checkpoint(folder, it):
    save_checkpoint({'model.pdparams': {'w': paddle.full([2], float(it))}},
                    str(folder), meta={'iter': it})


def test_single_process_resume_and_seed(tmp_path):
    save_dir = tmp_path / 'out'
    assert dist.resolve_resume(str(save_dir), 'auto') is None
    _checkpoint(save_dir / 'iter_2', 2)
    _checkpoint(save_dir / 'iter_10', 10)
    (save_dir / 'iter_12').mkdir()  # incomplete: no meta.json
    assert dist.resolve_resume(str(save_dir), 'auto') == str(save_dir / 'iter_10')
    assert dist.resolve_resume(str(save_dir), None) is None
    assert dist.resolve_resume(str(save_dir), 'elsewhere/iter_3') == 'elsewhere/iter_3'
    assert dist.shared_seed(5) == 5
    seeds = {dist.shared_seed() for _ in range(4)}
    assert len(seeds) > 1 and all(0 <= s < 2 ** 31 for s in seeds)
    assert dist.broadcast_object({'a': 1}) == {'a': 1}
    assert dist.all_gather_objects(3) == [3]


# -- two processes (paddle.distributed.launch on CPU) ----------------------------------
# The four scenarios run in one launch of the driver (one scenario after the
# other on both ranks; each has its own folders and records).
SCENARIOS = ('shared', 'missing', 'copied', 'explicit')


def _scenario_folders(base):
    """Each scenario's checkpoints; returns its (save_dir, resume) arguments."""
    shared = base / 'shared' / 'disk'
    _checkpoint(shared / 'iter_4', 4)
    _checkpoint(shared / 'iter_8', 8)
    (shared / 'iter_9').mkdir()  # half-written: skipped
    # no shared disk: rank 1's save_dir lacks the iter_8 rank 0 resumes from
    # (it has an older one, iter_4)
    missing = base / 'missing'
    _checkpoint(missing / 'node0' / 'iter_4', 4)
    _checkpoint(missing / 'node0' / 'iter_8', 8)
    _checkpoint(missing / 'node1' / 'iter_4', 4)
    copied = base / 'copied'
    for node in ('node0', 'node1'):
        _checkpoint(copied / node / 'iter_8', 8)
    _checkpoint(copied / 'node1' / 'iter_12', 12)  # newer, but rank 0 decides
    explicit = base / 'explicit'
    _checkpoint(explicit / 'node0' / 'iter_8', 8)
    (explicit / 'node1' / 'iter_8').mkdir(parents=True)  # half-copied: no meta.json
    return {'shared': (shared, 'auto'),
            'missing': (missing / 'node{rank}', 'auto'),
            'copied': (copied / 'node{rank}', 'auto'),
            'explicit': (explicit / 'node{rank}', explicit / 'node{rank}' / 'iter_8')}


@pytest.fixture(scope='module')
def launched(tmp_path_factory):
    """One launch of the driver on 2 ranks over every scenario: the exit
    status, ``{scenario: {rank: record}}``, the workers' logs and output."""
    base = tmp_path_factory.mktemp('dist_resume')
    folders = _scenario_folders(base)
    log_dir = base / 'log'
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), DRIVER]
    for name in SCENARIOS:
        save_dir, resume = folders[name]
        cmd += [str(base / name / 'records'), str(save_dir), str(resume)]
    proc = subprocess.run(cmd, cwd=ROOT, env=LAUNCH_ENV, capture_output=True, text=True,
                          timeout=300)
    records = {name: {rank: json.loads((base / name / 'records' /
                                        'rank{}.json'.format(rank)).read_text())
                      for rank in (0, 1)
                      if (base / name / 'records' / 'rank{}.json'.format(rank)).exists()}
               for name in SCENARIOS}
    logs = {rank: (log_dir / 'workerlog.{}'.format(rank)).read_text(errors='replace')
            if (log_dir / 'workerlog.{}'.format(rank)).exists() else ''
            for rank in (0, 1)}
    output = proc.stdout + proc.stderr + logs[0][-2000:] + logs[1][-2000:]
    return {'base': base, 'status': proc.returncode, 'records': records, 'logs': logs,
            'output': output}


def _error_lines(log):
    return [line for line in log.splitlines() if line.startswith('dist_resume_driver: error: ')]


def test_the_launch_fails_for_the_failing_scenarios_only(launched):
    assert launched['status'] == 2, launched['output'][-5000:]
    for name in SCENARIOS:
        assert sorted(launched['records'][name]) == [0, 1], (name, launched['output'][-3000:])
    # one line per failing scenario on each rank, the record's message
    for rank in (0, 1):
        assert _error_lines(launched['logs'][rank]) == [
            'dist_resume_driver: error: ' + launched['records'][name][rank]['error']
            for name in ('missing', 'explicit')]


def test_two_ranks_on_a_shared_disk_follow_rank_0(launched):
    records, shared = launched['records']['shared'], launched['base'] / 'shared' / 'disk'
    assert records[0]['world'] == records[1]['world'] == 2
    assert records[0]['resume'] == records[1]['resume'] == str(shared / 'iter_8')
    assert records[0]['seed'] == records[1]['seed']  # rank 0's fresh seed
    assert records[0]['given_seed'] == records[1]['given_seed'] == 17


def test_a_rank_without_the_checkpoint_fails_clearly_on_every_rank(launched):
    """No shared disk: each rank has its own save_dir, and rank 1's lacks
    the iter_8 that rank 0 resumes from (it has an older one, iter_4):
    training from iter_4 there, or from scratch, would silently diverge."""
    records, base = launched['records']['missing'], launched['base'] / 'missing'
    missing = str(base / 'node1' / 'iter_8')
    host = socket.gethostname()
    message = records[1]['error']
    assert 'rank 1 on host {}: {} does not exist'.format(host, missing) in message
    assert 'rank 0 (host {}) resumes from {} (iter 8)'.format(
        host, base / 'node0' / 'iter_8') in message
    assert 'copy' in message and 'shared by all machines' in message
    assert 'rank 0 on host' not in message  # rank 0 has it
    assert 'resume' not in records[1]
    assert records[0]['error'] == message  # rank 0 fails with the same line


def test_once_copied_both_ranks_resume_their_own_copy(launched):
    records, base = launched['records']['copied'], launched['base'] / 'copied'
    assert 'error' not in records[0] and 'error' not in records[1]
    assert records[0]['resume'] == str(base / 'node0' / 'iter_8')
    assert records[1]['resume'] == str(base / 'node1' / 'iter_8')


def test_an_explicit_checkpoint_missing_on_one_rank_fails_clearly(launched):
    records, base = launched['records']['explicit'], launched['base'] / 'explicit'
    message = records[1]['error']
    assert message.startswith('--resume_model {}: rank 1 on host {}: {} is not a complete '
                              'checkpoint'.format(base / 'node1' / 'iter_8',
                                                  socket.gethostname(),
                                                  base / 'node1' / 'iter_8'))
    assert 'rank 0 on host' not in message
    assert 'error' in records[0] and 'resume' not in records[0]  # rank 0 stops too
