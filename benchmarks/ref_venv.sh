#!/usr/bin/env bash
# Make (or reuse) a throw-away venv with PyPI paddleseg 2.8.0, for the
# comparisons with PaddleSeg itself (tests/conftest.py's `paddleseg_ref`
# fixture, tests/golden/make_golden.sh, benchmarks/run.py).
#   bash benchmarks/ref_venv.sh [VENV_DIR]
# VENV_DIR defaults to $SEG_REF_VENV, else
# ${XDG_CACHE_HOME:-~/.cache}/pointrend-paddle/paddleseg-2.8.0-paddle-3.3.1.
# Prints the venv's python on stdout (everything else goes to stderr).
# A venv is reused only if, run from outside any checkout and without
# PYTHONPATH, it imports paddleseg 2.8.0 (from the venv) and paddle 3.3.1;
# otherwise it is made again from scratch. paddleseg 2.8.0 pins an
# opencv-python that does not import with numpy 2: it is replaced by the
# headless build.
set -euo pipefail
PADDLESEG_VERSION=2.8.0
PADDLE_VERSION=3.3.1
default="${XDG_CACHE_HOME:-$HOME/.cache}/pointrend-paddle/paddleseg-${PADDLESEG_VERSION}-paddle-${PADDLE_VERSION}"
venv="${1:-${SEG_REF_VENV:-$default}}"

check() {  # the venv's versions, read where no checkout shadows them
    (cd / && env -u PYTHONPATH "$venv/bin/python" - "$venv" <<EOF
import os, sys
import paddle, paddleseg, cv2
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(paddleseg.__file__)
assert where.startswith(venv + os.sep), 'paddleseg imported from ' + where
assert paddleseg.__version__ == '$PADDLESEG_VERSION', 'paddleseg ' + paddleseg.__version__
assert paddle.__version__ == '$PADDLE_VERSION', 'paddle ' + paddle.__version__
EOF
    ) >/dev/null 2>&1
}

if [ -x "$venv/bin/python" ] && check; then
    echo "ref_venv.sh: reusing $venv (paddleseg $PADDLESEG_VERSION, paddle $PADDLE_VERSION)" >&2
else
    echo "ref_venv.sh: making $venv (paddleseg $PADDLESEG_VERSION, paddle $PADDLE_VERSION)" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
    "${pip[@]}" install "paddlepaddle==$PADDLE_VERSION" "paddleseg==$PADDLESEG_VERSION" >&2
    "${pip[@]}" uninstall -y opencv-python opencv-python-headless >&2
    "${pip[@]}" install opencv-python-headless >&2
    if ! check; then
        echo "ref_venv.sh: $venv does not import paddleseg $PADDLESEG_VERSION and paddle $PADDLE_VERSION" >&2
        exit 1
    fi
fi
echo "$venv/bin/python"
