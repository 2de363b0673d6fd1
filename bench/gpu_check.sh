#!/usr/bin/env bash
# The GPU check (issue 12): one script, at most ~8 minutes on one GPU, JSON lines into a folder.
#
#   bash bench/gpu_check.sh [OUT_DIR]          # default OUT_DIR: $OUT if set (the device tool), else ./gpu-check
#
# On a machine whose python3 already has a CUDA PyTorch but not automel's other dependencies (optuna,
# SQLAlchemy, ...), bring them as wheels in ./.whl (git-ignored there): they are installed into /tmp/site
# and automel runs from this checkout through PYTHONPATH, so the CUDA torch is never replaced. Prepare the
# wheels on a machine with pip access:
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .whl optuna sqlalchemy alembic colorlog mako greenlet safetensors soundfile soxr
# (add --no-deps and name each package if pip would also fetch torch).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import optuna" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:$PWD/plugins/automel-ecapa/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export AUTOMEL_BENCH_HOME="${AUTOMEL_BENCH_HOME:-/tmp/automel-bench}"

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true
timeout 480 "$PY" bench/gpu_check.py --out "$OUT_DIR" --device cuda "${@:2}" 2>&1 | tee "$OUT_DIR/gpu_check.log"
