#!/usr/bin/env bash
# `make gpu-check`: on a bare machine with an NVIDIA GPU and Python 3.10+, set up .venv
# (make venv: the hashed lock), run the tests marked `gpu` and bench/gpu_check.py on one GPU, print
# their results and leave them under $GPU_CHECK_OUT (default outputs/gpu_check). About 8 minutes:
# the install takes most of it on a fresh machine. Without an NVIDIA GPU it says so, installs
# nothing and exits 0. A GPU that the installed torch cannot use is a failure (exit 1).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-outputs/gpu_check}
PYTHON=${PYTHON:-python3}
START=$(date +%s)
say() { echo "[gpu-check +$(($(date +%s) - START))s] $*"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "skipped: no NVIDIA GPU on this machine (nvidia-smi is missing or lists no GPU);" \
        "nothing was installed or run"
    exit 0
fi
nvidia-smi -L
say "setting up .venv with $PYTHON (make venv: requirements/dev.lock.txt)"
if ! make --no-print-directory venv PYTHON="$PYTHON"; then
    say "failed: make venv"
    exit 1
fi
PY=.venv/bin/python
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "failed: torch in .venv cannot use the GPU ($("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'));" \
        "install a CUDA build for this driver, e.g." \
        ".venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126"
    exit 1
fi
mkdir -p "$OUT"

say "tests marked gpu (tests/gpu)"
timeout 300 "$PY" -m pytest -m gpu tests/gpu -q -rA -s -p no:cacheprovider \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log"
TESTS=${PIPESTATUS[0]}

say "GPU benchmark (bench/gpu_check.py)"
timeout 450 "$PY" -m bench.gpu_check --json "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
BENCH=${PIPESTATUS[0]}

say "done: gpu tests exit $TESTS, benchmark exit $BENCH; results in $OUT/" \
    "(gpu_tests.log, gpu_tests.xml, gpu_check.log, gpu_check.json)"
[ "$TESTS" = 0 ] && [ "$BENCH" = 0 ]
