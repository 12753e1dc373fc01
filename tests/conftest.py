import functools
import http.server
import os
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import paddleseg  # noqa: E402,F401  (MKL's code path is chosen before any kernel runs)


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
