"""MKL's code path on AMD CPUs.

Paddle's CPU build does its matrix products (and so its convolutions, as
im2col + GEMM) with Intel MKL (``libmklml_intel.so``), which on a CPU that
is not Intel's takes its generic SSE path whatever the CPU supports. The
variable ``MKL_DEBUG_CPU_TYPE`` makes it take another one: on this
project's AMD EPYC machine (2 threads, a 8192x2304 by 2304x128 product),
the default ran at 27 GMAC/s, 5 (AVX2) at 62, 7 (AVX-512) at 84, and a
ResNet18_vd PointRend eval pass at 256x512 took 1.2 s instead of 2.5 s.

MKL reads the variable at its first product (importing paddle does not
run one), so the entry scripts set it through
:func:`paddleseg.utils.env.tune_process`, which calls
:func:`set_mkl_code_path`, before their first kernel, to the best path the
CPU has: 7 with the AVX-512 subsets that path uses, else 5 with AVX2 and
FMA, else nothing. Intel CPUs are left alone (MKL picks their best path
itself), and so is a value already set: ``MKL_DEBUG_CPU_TYPE=`` (set but
empty) keeps MKL's own choice. ``import paddleseg`` sets nothing. This
module imports nothing but ``os``.
"""

import os

VARIABLE = 'MKL_DEBUG_CPU_TYPE'
AVX512 = '7'
AVX2 = '5'
_AVX512_FLAGS = frozenset(('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'))
_AVX2_FLAGS = frozenset(('avx2', 'fma'))
# CPU makers whose x86 CPUs MKL does not dispatch on by their features
OTHER_VENDORS = frozenset(('AuthenticAMD', 'HygonGenuine'))


def cpuinfo_fields(path='/proc/cpuinfo'):
    """``{key: value}`` of the first processor listed in ``path`` (its
    lines up to the first blank one); ``{}`` when it cannot be read (not
    Linux). The one reader of /proc/cpuinfo (:func:`read_cpuinfo`,
    :mod:`paddleseg.utils.cpu`, the benchmarks' machine line)."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(':')
                if not line.strip() and fields:
                    break
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def read_cpuinfo(path='/proc/cpuinfo'):
    """``(vendor_id, flags)`` of the first processor listed in ``path``;
    ``('', frozenset())`` when it cannot be read (not Linux, not x86)."""
    fields = cpuinfo_fields(path)
    return fields.get('vendor_id', ''), frozenset(fields.get('flags', '').split())


def mkl_cpu_type(vendor, flags):
    """The ``MKL_DEBUG_CPU_TYPE`` value for a CPU, or None to leave MKL alone.

    Args:
        vendor (str): ``vendor_id`` as in /proc/cpuinfo.
        flags (set[str]): Its ``flags``.

    Returns:
        str|None: ``'7'`` (AVX-512) or ``'5'`` (AVX2) on AMD and Hygon CPUs
        that have them; None on Intel's and on CPUs without AVX2 and FMA.
    """
    if vendor not in OTHER_VENDORS:
        return None
    if _AVX512_FLAGS <= flags:
        return AVX512
    if _AVX2_FLAGS <= flags:
        return AVX2
    return None


def set_mkl_code_path(environ=None, cpuinfo='/proc/cpuinfo'):
    """Set ``MKL_DEBUG_CPU_TYPE`` for this CPU unless it is set already.

    Args:
        environ (dict, optional): The environment to change. Default: ``os.environ``.
        cpuinfo (str, optional): Where to read the CPU's vendor and flags.

    Returns:
        str|None: The value now in force (the user's, ours, or None).
    """
    environ = os.environ if environ is None else environ
    if VARIABLE in environ:
        return environ[VARIABLE]
    value = mkl_cpu_type(*read_cpuinfo(cpuinfo))
    if value is not None:
        environ[VARIABLE] = value
    return value
