#!/usr/bin/env bash
# Make (or reuse) a throw-away venv with PyPI paddleseg 2.8.0 for comparisons.
#   bash benchmarks/ref_venv.sh [VENV_DIR]   (default: /tmp/paddleseg-2.8.0-venv)
# Prints the venv's python. paddleseg 2.8.0 pins an opencv-python that does
# not import with numpy 2: it is replaced by the headless build.
set -euo pipefail
venv="${1:-/tmp/paddleseg-2.8.0-venv}"
if [ ! -x "$venv/bin/python" ] || ! (cd /tmp && "$venv/bin/python" -c "import paddleseg" 2>/dev/null); then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "paddlepaddle==3.3.1" "paddleseg==2.8.0" >&2
    "$venv/bin/pip" uninstall -q -y opencv-python opencv-python-headless >&2
    "$venv/bin/pip" install -q --disable-pip-version-check opencv-python-headless >&2
fi
echo "$venv/bin/python"
