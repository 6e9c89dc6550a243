#!/usr/bin/env bash
# Set up everything attnzoo needs on a fresh Debian/Ubuntu machine, idempotently:
# the Fashion-MNIST package (when apt is available), a virtual environment in .venv, torch, and attnzoo.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC=${ATTNZOO_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
FMNIST_DIR=/usr/share/datasets/fashion-mnist

if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian package dataset-fashion-mnist"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
            || echo "setup: could not install dataset-fashion-mnist; attnzoo will try torchvision's downloader"
    else
        echo "setup: Fashion-MNIST not in $FMNIST_DIR; run 'sudo apt-get install dataset-fashion-mnist'"
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.attnzoo-setup
want="$(cat pyproject.toml) $TORCH_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $TORCH_SPEC
    .venv/bin/python -m pip install -q -e ".[dev]"
    printf '%s' "$want" > "$stamp"
fi
# build the fused CPU kernels now rather than in the first forward (falls back with a warning if it cannot)
.venv/bin/python -c "from attnzoo.attention.kernels import fused_ops; print('setup: fused CPU kernels', 'ready' if fused_ops() else 'unavailable')"
echo "setup: ready (.venv)"
