#!/usr/bin/env bash
# Rebuild the golden fixtures from PyPI paddleseg 2.8.0 in a throw-away venv.
#   bash tests/golden/make_golden.sh [VENV_DIR]   (default: benchmarks/ref_venv.sh's)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="$(bash "$here/../../benchmarks/ref_venv.sh" ${1:+"$1"})"
cd /tmp   # so that this repo's own paddleseg/ is not imported; nor from PYTHONPATH
# (the script also stops unless it imports paddleseg 2.8.0 from outside the repo).
# MKL picks its own code path (as on the CPU the fixtures were first made on)
env -u PYTHONPATH -u MKL_DEBUG_CPU_TYPE "$python" "$here/make_pointrend_golden.py"
