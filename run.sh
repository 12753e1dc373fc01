#!/usr/bin/env bash
# Entry points of PointRend-Paddle.
#   bash run.sh            4-GPU training of the reference recipe (as the seed's run.sh)
#   bash run.sh train      the same
#   bash run.sh demo       install, make the synthetic demo data, train, evaluate, predict (CPU)
#   bash run.sh test       install the test requirements and run the test suite (slowest 25 listed)
#   bash run.sh test-gpu   install the test requirements and run the GPU suite (tests/gpu)
#   bash run.sh install    install the requirements only (--dry-run: print the pip command)
# Installing never replaces an installed PaddlePaddle build (paddlepaddle-gpu,
# paddlepaddle-xpu, ...): see utils/install_requirements.py.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
CONFIG=${CONFIG:-configs/pointrendfpn/pointrend_resnet101_os8_cityscapes_512×1024_80k.yml}

install() {  # install FILE [--dry-run ...]: pip, keeping an installed paddle build
    "$PY" utils/install_requirements.py "$@"
}

case "${1:-train}" in
    install)
        shift
        install requirements.txt "$@" ;;
    test)
        shift
        install requirements-dev.txt
        "$PY" -m pytest -q tests --durations=25 "$@" ;;
    test-gpu)
        shift
        install requirements-dev.txt
        "$PY" -m pytest -q tests/gpu "$@" ;;
    demo)
        shift
        install requirements.txt
        "$PY" utils/demo.py "$@" ;;
    train)
        export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0,1,2,3}
        "$PY" -m paddle.distributed.launch train.py --config "$CONFIG" \
            --num_workers 4 --use_vdl --do_eval --save_interval 1000 \
            --save_dir output ;;
    *)
        echo "usage: bash run.sh [train|demo|test|test-gpu|install [--dry-run]]" >&2
        exit 2 ;;
esac
