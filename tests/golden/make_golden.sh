#!/usr/bin/env bash
# Rebuild the golden fixtures from PyPI paddleseg 2.8.0 in a throw-away venv.
#   bash tests/golden/make_golden.sh [VENV_DIR]   (default: /tmp/paddleseg-2.8.0-venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-/tmp/paddleseg-2.8.0-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "paddlepaddle==3.3.1" "paddleseg==2.8.0"
    # paddleseg pins an opencv-python that does not import with numpy 2:
    # replace it by the headless build.
    "$venv/bin/pip" uninstall -q -y opencv-python opencv-python-headless
    "$venv/bin/pip" install -q opencv-python-headless
fi
cd /tmp   # so that this repo's own paddleseg/ is not imported
"$venv/bin/python" "$here/make_pointrend_golden.py"
