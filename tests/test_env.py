"""Tests of paddleseg.utils.env."""

import random

import numpy as np
import paddle
import pytest

from paddleseg.errors import ConfigError
from paddleseg.utils import env


def _draw():
    return random.random(), np.random.rand(3).tolist(), paddle.rand([3]).numpy().tolist()


def test_seed_everything_is_deterministic():
    env.seed_everything(7)
    first = _draw()
    env.seed_everything(7)
    assert _draw() == first
    env.seed_everything(8)
    assert _draw() != first


@pytest.fixture
def thread_calls(monkeypatch):
    """Record the counts passed to paddle's set_num_threads instead of applying them."""
    calls = []
    monkeypatch.setattr(paddle.base.core, 'set_num_threads', calls.append)
    monkeypatch.delenv(env.THREADS_ENV, raising=False)
    return calls


def test_threads_default_to_all_usable_cores_on_cpu(thread_calls, monkeypatch):
    monkeypatch.setattr(env, 'device_kind', lambda: 'cpu')
    assert env.set_cpu_threads() == env.usable_cpu_count()
    assert thread_calls == [env.usable_cpu_count()]


def test_threads_honour_env_var_and_argument(thread_calls, monkeypatch):
    monkeypatch.setenv(env.THREADS_ENV, '3')
    assert env.set_cpu_threads() == 3
    assert env.set_cpu_threads(5) == 5
    assert thread_calls == [3, 5]


def test_threads_env_var_must_be_positive(thread_calls, monkeypatch):
    for bad in ('0', 'two', '-1'):
        monkeypatch.setenv(env.THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=env.THREADS_ENV):
            env.set_cpu_threads()
    assert thread_calls == []


def test_threads_untouched_on_gpu_without_request(thread_calls, monkeypatch):
    monkeypatch.setattr(env, 'device_kind', lambda: 'gpu')
    assert env.set_cpu_threads() is None
    monkeypatch.setenv(env.THREADS_ENV, '2')
    assert env.set_cpu_threads() == 2
    assert thread_calls == [2]


def test_real_call_and_device():
    assert env.device_kind() in ('cpu', 'gpu')
    assert env.set_cpu_threads(1) == 1
    env.set_cpu_threads(env.usable_cpu_count())


_HEAP_PROBE = '''
import sys
import numpy as np
from paddleseg.utils.env import tune_host_allocator
print(tune_host_allocator(None if sys.argv[1] == 'env' else int(sys.argv[1])))

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096

a = np.ones(16 << 20, np.uint8)  # mmapped; freeing it makes glibc raise its threshold
del a
before = rss()
b = np.ones(8 << 20, np.uint8)
del b
print(rss() - before)  # what the freed 8 MB block left resident
'''


def _freed_but_resident(arg, extra_env=None):
    """(threshold set, bytes still resident after an 8 MB block is freed)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ = {k: v for k, v in os.environ.items() if k != env.MMAP_ENV}
    environ.update(PYTHONPATH=root, **(extra_env or {}))
    out = subprocess.run([sys.executable, '-c', _HEAP_PROBE, arg], env=environ,
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(__import__('platform').libc_ver()[0] != 'glibc', reason='glibc only')
def test_host_allocator_returns_freed_blocks_to_the_system():
    # glibc's default: the 8 MB block came from the heap and stays resident
    threshold, kept = _freed_but_resident('0')
    assert threshold == 0 and kept >= 7 << 20
    # SEG_MMAP_THRESHOLD=0: glibc's own behaviour, as if never called
    threshold, kept = _freed_but_resident('env', {env.MMAP_ENV: '0'})
    assert threshold == 0 and kept >= 7 << 20
    # by default (variable unset) 4 MiB: the 8 MB block had its own mapping
    threshold, kept = _freed_but_resident('env')
    assert threshold == env.DEFAULT_MMAP_THRESHOLD == 4 << 20 and kept < 1 << 20
    # a 1 MiB threshold from the environment
    threshold, kept = _freed_but_resident('env', {env.MMAP_ENV: str(1 << 20)})
    assert threshold == 1 << 20 and kept < 1 << 20


def test_host_allocator_env_var_must_be_bytes(monkeypatch):
    monkeypatch.setenv(env.MMAP_ENV, 'lots')
    with pytest.raises(ConfigError, match=env.MMAP_ENV):
        env.tune_host_allocator()


def _cpuinfo(tmp_path, vendor, flags):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nvendor_id\t: {}\nflags\t\t: {}\n\n'.format(vendor, flags))
    return str(path)


def test_tune_process_for_inference_sets_only_the_mkl_path(tmp_path):
    amd = _cpuinfo(tmp_path, 'AuthenticAMD', 'avx avx2 fma')
    environ = {'PATH': '/bin'}
    done = env.tune_process(training=False, environ=environ, cpuinfo=amd)
    assert environ == {'PATH': '/bin', 'MKL_DEBUG_CPU_TYPE': '5'}
    assert done == {'mkl_cpu_type': '5', 'kmp_blocktime_0': False, 'mmap_threshold': 0}
    # the user's choice stays, an empty one (MKL's own path) included
    for users in ('', '7'):
        environ = {'MKL_DEBUG_CPU_TYPE': users}
        assert env.tune_process(False, environ, amd)['mkl_cpu_type'] == users
        assert environ == {'MKL_DEBUG_CPU_TYPE': users}
    environ = {}
    intel = _cpuinfo(tmp_path, 'GenuineIntel', 'avx avx2 fma avx512f')
    assert env.tune_process(False, environ, intel)['mkl_cpu_type'] is None
    assert environ == {}


_TUNE_PROBE = '''
import ctypes, json, os, sys
import paddle  # OpenMP starts here: tune_process runs after it in the entry scripts
from paddleseg.utils.env import tune_process
done = tune_process(training=sys.argv[1] == 'train')

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096

import numpy as np
a = np.ones(16 << 20, np.uint8)
del a
before = rss()
b = np.ones(8 << 20, np.uint8)
del b
omp = ctypes.CDLL('libiomp5.so', mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
print(json.dumps(dict(done, blocktime=omp.kmp_get_blocktime(), kept=rss() - before,
                      KMP_BLOCKTIME=os.environ.get('KMP_BLOCKTIME'),
                      MKL=os.environ.get('MKL_DEBUG_CPU_TYPE'))))
'''


def _tuned(kind, **extra):
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ = {k: v for k, v in os.environ.items()
               if k not in ('KMP_BLOCKTIME', 'MKL_DEBUG_CPU_TYPE', env.MMAP_ENV)}
    environ.update(PYTHONPATH=root, **extra)
    out = subprocess.run([sys.executable, '-c', _TUNE_PROBE, kind], env=environ, cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(__import__('platform').libc_ver()[0] != 'glibc', reason='glibc only')
def test_tune_process_in_a_fresh_process():
    """Training: OpenMP's idle threads sleep at once (block time 0 although
    OpenMP started at ``import paddle``), freed large blocks leave the
    process (4 MiB threshold); inference: both left as they were. Both:
    MKL's path for this CPU. (Untuned, the freed 8 MiB block stays resident,
    in part: 6.3-8 MiB measured, depending on what the heap held before.)"""
    from paddleseg import mkl_dispatch
    this_cpu = mkl_dispatch.mkl_cpu_type(*mkl_dispatch.read_cpuinfo())
    train = _tuned('train')
    assert train['blocktime'] == 0 and train['KMP_BLOCKTIME'] == '0'
    assert train['kmp_blocktime_0'] is True
    assert train['mmap_threshold'] == env.DEFAULT_MMAP_THRESHOLD and train['kept'] < 1 << 20
    assert train['MKL'] == train['mkl_cpu_type'] == this_cpu
    infer = _tuned('eval')
    assert infer['blocktime'] == 200 and infer['KMP_BLOCKTIME'] is None
    assert infer['mmap_threshold'] == 0 and infer['kept'] >= 4 << 20
    assert infer['MKL'] == this_cpu
    # the user's settings win
    users = _tuned('train', KMP_BLOCKTIME='50', SEG_MMAP_THRESHOLD='0')
    assert users['blocktime'] == 50 and users['kmp_blocktime_0'] is False
    assert users['mmap_threshold'] == 0 and users['kept'] >= 4 << 20
