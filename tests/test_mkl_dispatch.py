"""MKL's code path on AMD CPUs (paddleseg.mkl_dispatch)."""

import os
import subprocess
import sys

import pytest

from paddleseg import mkl_dispatch as md

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZEN4 = 'fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl'
ZEN2 = 'fpu sse2 avx avx2 fma'


def _cpuinfo(tmp_path, vendor, flags, processors=2):
    path = tmp_path / 'cpuinfo'
    path.write_text(''.join(
        'processor\t: {}\nvendor_id\t: {}\nmodel name\t: x\nflags\t\t: {}\n\n'.format(
            i, vendor, flags) for i in range(processors)))
    return str(path)


def test_read_cpuinfo_takes_the_first_processor(tmp_path):
    vendor, flags = md.read_cpuinfo(_cpuinfo(tmp_path, 'AuthenticAMD', ZEN2))
    assert vendor == 'AuthenticAMD' and flags == frozenset(ZEN2.split())
    assert md.read_cpuinfo(str(tmp_path / 'none')) == ('', frozenset())


@pytest.mark.parametrize('vendor, flags, expected', [
    ('AuthenticAMD', ZEN4, '7'),
    ('HygonGenuine', ZEN2, '5'),
    ('AuthenticAMD', ZEN2, '5'),
    ('AuthenticAMD', 'fpu sse2 avx avx2', None),          # no FMA
    ('AuthenticAMD', 'avx2 fma avx512f avx512cd', '5'),   # AVX-512 without BW/DQ/VL
    ('GenuineIntel', ZEN4, None),                         # MKL's own choice
    ('', '', None),
])
def test_cpu_type_by_vendor_and_flags(vendor, flags, expected):
    assert md.mkl_cpu_type(vendor, frozenset(flags.split())) == expected


def test_set_only_when_unset(tmp_path):
    info = _cpuinfo(tmp_path, 'AuthenticAMD', ZEN4)
    env = {}
    assert md.set_mkl_code_path(env, info) == '7' and env == {md.VARIABLE: '7'}
    env = {md.VARIABLE: ''}  # the user's opt-out stays
    assert md.set_mkl_code_path(env, info) == '' and env == {md.VARIABLE: ''}
    env = {}
    assert md.set_mkl_code_path(env, _cpuinfo(tmp_path, 'GenuineIntel', ZEN4)) is None
    assert env == {}


def test_import_leaves_it_and_tune_process_sets_it_before_the_first_product():
    """A fresh interpreter: ``import paddleseg`` leaves the variable unset;
    ``tune_process`` (as the entry scripts call it, after ``import paddle``)
    sets it as this CPU calls for, and paddle's matrix product on that path
    still agrees with numpy's."""
    probe = ('import os, numpy as np, paddle, paddleseg\n'
             'print(repr(os.environ.get("MKL_DEBUG_CPU_TYPE")))\n'
             'from paddleseg.utils.env import tune_process\n'
             'tune_process(training=False)\n'
             'print(repr(os.environ.get("MKL_DEBUG_CPU_TYPE")))\n'
             'r = np.random.default_rng(0)\n'
             'a, b = r.standard_normal((300, 700)), r.standard_normal((700, 90))\n'
             'p = paddle.matmul(paddle.to_tensor(a, "float32"), paddle.to_tensor(b, "float32"))\n'
             'print(float(np.abs(p.numpy() - a @ b).max()))\n')
    env = {k: v for k, v in os.environ.items() if k != md.VARIABLE}
    out = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.split('\n')
    assert out[0] == 'None'
    assert out[1] == repr(md.mkl_cpu_type(*md.read_cpuinfo()))
    assert float(out[2]) < 1e-3  # float32 sums of 700 products of N(0,1) values
