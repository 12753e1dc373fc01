import functools
import http.server
import os
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the repository (paddleseg, the entry scripts) and the test helpers
# (tests/helpers: data makers, drivers run as scripts), importable by name
for _path in (os.path.join(ROOT, 'tests', 'helpers'), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import paddle  # noqa: E402
import paddleseg  # noqa: E402,F401
from paddleseg.utils.env import tune_process  # noqa: E402

# the test session owns its process, as the entry scripts do: the suite and
# the processes it starts run on the MKL code path the entry scripts choose
tune_process(training=False)

# Every test runs on CPU, with a CPU or a GPU build of paddle, and so do the
# processes the tests start (no visible CUDA device), except the tests
# marked `gpu` (tests/gpu): they get paddle's own default device and the
# CUDA_VISIBLE_DEVICES the session started with.
_SESSION_CUDA_DEVICES = os.environ.get('CUDA_VISIBLE_DEVICES')
if paddle.is_compiled_with_cuda():
    # the CUDA runtime reads CUDA_VISIBLE_DEVICES once: let it read the
    # session's before a CPU test hides the devices from its subprocesses
    paddle.device.cuda.device_count()
_DEFAULT_DEVICE = paddle.get_device()
paddle.set_device('cpu')


def _set_cuda_devices(value):
    if value is None:
        os.environ.pop('CUDA_VISIBLE_DEVICES', None)
    else:
        os.environ['CUDA_VISIBLE_DEVICES'] = value


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Pin the device before any fixture of the test is set up (module- and
    session-scoped ones included, which an autouse fixture would come after)."""
    if item.get_closest_marker('gpu') is None:
        paddle.set_device('cpu')
        _set_cuda_devices('')
    else:
        paddle.set_device(_DEFAULT_DEVICE)
        _set_cuda_devices(_SESSION_CUDA_DEVICES)


# Outside the GPU suite a test may skip only by a declared condition: a
# ``skipif`` marker (a platform or build it cannot run on, or an explicit
# opt-in, marked ``opt_in``, that an environment variable turns on). A skip
# decided while the test runs, ``pytest.importorskip`` of an optional
# package of the test requirements for instance, is turned into a failure:
# CI must not silently leave a check out.
def _may_skip(item):
    from _pytest.skipping import evaluate_skip_marks
    return (any(item.get_closest_marker(name) is not None for name in ('gpu', 'opt_in'))
            or evaluate_skip_marks(item) is not None)


def _no_silent_skip(report, where):
    if report.skipped and not hasattr(report, 'wasxfail'):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = 'failed'
        report.longrepr = ('{} skipped ({}), but a test may skip only by a skipif marker '
                           '(GPU, platform, opt-in): install the test requirements '
                           '(bash run.sh test)'.format(where, reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if not _may_skip(item):
        _no_silent_skip(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()   # a module that skips itself when collected
    if isinstance(collector, pytest.Module) and os.sep + 'gpu' + os.sep not in str(collector.path):
        _no_silent_skip(report, collector.nodeid)


def pytest_unconfigure(config):
    _set_cuda_devices(_SESSION_CUDA_DEVICES)


@pytest.fixture(scope='session')
def paddleseg_ref():
    """The python of a venv with PyPI paddleseg 2.8.0 and paddle 3.3.1,
    made on first use and reused after, version-checked
    (``benchmarks/ref_venv.sh``; location: ``$SEG_REF_VENV``, else
    ``~/.cache/pointrend-paddle/paddleseg-2.8.0-paddle-3.3.1``). A venv
    that cannot be made fails the tests that compare with PaddleSeg itself
    (marked ``paddleseg_ref``): they are never skipped."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'ref_venv.sh')],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        pytest.fail('benchmarks/ref_venv.sh could not make the PaddleSeg 2.8.0 venv:\n'
                    + proc.stderr[-3000:], pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope='session')
def tiny_exports(tmp_path_factory):
    """One tiny model exported once per format and output op, shared by
    the export, deploy and engine tests (``deploy_helpers.TinyExports``)."""
    from deploy_helpers import TinyExports
    return TinyExports(tmp_path_factory.mktemp('exports'))


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, counts requests and has two misbehaving paths."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path == '/slow':
            self.server.release.wait(5)
            return
        if self.path == '/truncated.pdparams':
            self.send_response(200)
            self.send_header('Content-Length', '1000')
            self.end_headers()
            self.wfile.write(b'x' * 10)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``; yields it."""
    root = tmp_path / 'www'
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    httpd.daemon_threads = True
    httpd.requests = []
    httpd.release = threading.Event()
    httpd.root = root
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05})
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
