"""The process's one ``openvino.Core``.

Every Core makes its own CPU plugin, and OpenVINO 2026.4's CPU plugin gives
the thread that makes it an alternate signal stack of its own (``mmap``),
which it unmaps when the plugin is destroyed, putting the previous one back
only if its own is still current. So two Cores destroyed in the order they
were made (the per-size runner's evicted models, two runners in one
process) leave the thread's altstack at unmapped memory, and the next
signal handled there kills the process with SIGSEGV (si_code SI_KERNEL):
Python installs every handler it sets (SIGINT's, our entry scripts'
SIGTERM, paddle's DataLoader SIGCHLD) with SA_ONSTACK. With one Core, the
plugin lives as long as the process. Every OpenVINO call of the toolkit,
its tests and benchmarks takes it from :func:`openvino_core`
(``tests/test_openvino.py::test_models_dropped_in_the_order_made_leave_signals_deliverable``).
"""

import functools


@functools.lru_cache(maxsize=None)
def openvino_core():
    """The one ``openvino.Core`` of this process, made at the first call
    and kept until the process exits. Raises ImportError without OpenVINO
    (not cached: a later call tries again)."""
    import openvino
    return openvino.Core()
