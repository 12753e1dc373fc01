"""What this CPU can compute: its bf16 instructions.

Owns :func:`bf16_isa`, the one capability check behind ``--precision
bf16`` (:mod:`paddleseg.deploy.options` asks it; tests replace it to
simulate a CPU without bf16), and :func:`cpu_flags` / :func:`cpu_model`,
read from ``/proc/cpuinfo`` (Linux; elsewhere empty).
"""

import functools

from paddleseg.mkl_dispatch import cpuinfo_fields
from paddleseg.utils.openvino_core import openvino_core

BF16_FLAGS = (('amx_bf16', 'AMX-BF16'), ('avx512_bf16', 'AVX512-BF16'))
"""The ``/proc/cpuinfo`` flags of bf16 instructions (best first) and their
names."""

CPUINFO = '/proc/cpuinfo'


def cpu_flags(path=None):
    """The instruction-set flags of the first CPU (a set of str; empty
    where ``/proc/cpuinfo`` is missing)."""
    return set(cpuinfo_fields(path or CPUINFO).get('flags', '').split())


def cpu_model(path=None):
    """The CPU's model name ('this CPU' when unknown)."""
    return cpuinfo_fields(path or CPUINFO).get('model name') or 'this CPU'


def _openvino_has_bf16():
    """OpenVINO's own answer (its CPU plugin lists 'BF16' among its
    OPTIMIZATION_CAPABILITIES when it will compute in bf16), or None
    without OpenVINO."""
    try:
        core = openvino_core()
    except ImportError:
        return None
    try:
        caps = core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    except Exception:  # no CPU plugin: ask the flags
        return None
    return 'BF16' in caps


@functools.lru_cache(maxsize=None)
def bf16_isa():
    """The bf16 instructions this CPU has, by name ('AMX-BF16',
    'AVX512-BF16'), or None when it has none.

    OpenVINO's answer decides when it is installed (it is the runtime that
    will or will not compute in bf16); the name comes from
    ``/proc/cpuinfo`` ('BF16' when the flags do not say). Without OpenVINO,
    the flags decide.
    """
    flags = cpu_flags()
    named = next((name for flag, name in BF16_FLAGS if flag in flags), None)
    runtime = _openvino_has_bf16()
    if runtime is None:
        return named
    return (named or 'BF16') if runtime else None
