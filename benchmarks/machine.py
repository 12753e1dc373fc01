"""What machine a benchmark row was measured on: CPU model and instruction sets.

Owns :func:`cpu_model`, :func:`isa_text` (the SIMD and matrix extensions
of the CPU that the engines here can use: AVX2/FMA, AVX-512 and its VNNI
(int8) and BF16 subsets, AMX), :func:`mkl_path_text` (the code path of
Paddle's MKL a side runs, from ``MKL_DEBUG_CPU_TYPE``: MKL 2019's verbose
log does not name it on AMD) and :func:`machine_line`, which every
benchmark printout and ``--write``'s heading carry.
"""

import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from paddleseg import mkl_dispatch  # noqa: E402

# (cpuinfo flag, name in the report), in the order they are listed
ISA_FLAGS = (('avx2', 'AVX2'), ('fma', 'FMA'), ('avx512f', 'AVX-512F'),
             ('avx512bw', 'AVX-512BW'), ('avx512_vnni', 'AVX-512 VNNI'),
             ('avx512_bf16', 'AVX-512 BF16'), ('avx512_fp16', 'AVX-512 FP16'),
             ('avx_vnni', 'AVX-VNNI'), ('amx_tile', 'AMX'), ('amx_int8', 'AMX-INT8'),
             ('amx_bf16', 'AMX-BF16'))
MKL_PATHS = {None: 'MKL default', '': 'MKL default', mkl_dispatch.AVX512: 'MKL AVX-512',
             mkl_dispatch.AVX2: 'MKL AVX2'}


def cpu_model(cpuinfo='/proc/cpuinfo'):
    """The ``model name`` of the first processor (``platform.processor()``
    when /proc/cpuinfo has none)."""
    return (mkl_dispatch.cpuinfo_fields(cpuinfo).get('model name')
            or platform.processor() or 'unknown CPU')


def isa_text(flags):
    """'AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16; no AMX' for the
    cpuinfo ``flags`` (a set)."""
    text = ', '.join(name for flag, name in ISA_FLAGS if flag in flags) or 'no AVX2'
    return text if 'amx_tile' in flags else text + '; no AMX'


def mkl_path_text(value, vendor):
    """The MKL code path a process with ``MKL_DEBUG_CPU_TYPE=value`` (None:
    unset) runs on a CPU of ``vendor``: on AMD, unset (or empty) is MKL's
    generic SSE path; on Intel MKL picks the CPU's best path itself."""
    if vendor in mkl_dispatch.OTHER_VENDORS:
        if value in (None, ''):
            return 'MKL generic SSE path (MKL_DEBUG_CPU_TYPE unset)'
        return '{} (MKL_DEBUG_CPU_TYPE={})'.format(MKL_PATHS.get(value, 'MKL'), value)
    return "MKL's own choice for this CPU"


def machine_line(cpuinfo='/proc/cpuinfo'):
    """'AMD EPYC 9654 96-Core Processor (AuthenticAMD; AVX2, ..., no AMX),
    2 cores visible, paddle 3.3.1, Python 3.11.7'."""
    vendor, flags = mkl_dispatch.read_cpuinfo(cpuinfo)
    try:
        import paddle
        paddle_text = ', paddle {}'.format(paddle.__version__)
    except ImportError:
        paddle_text = ''
    return '{} ({}; {}), {} cores visible{}, Python {}'.format(
        cpu_model(cpuinfo), vendor or 'unknown vendor', isa_text(flags),
        len(os.sched_getaffinity(0)), paddle_text, platform.python_version())
