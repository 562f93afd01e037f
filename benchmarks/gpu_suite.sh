#!/usr/bin/env bash
# One-shot GPU measurement suite (issue 11): bash benchmarks/gpu_suite.sh OUT_DIR [options of gpu_suite.py]
# e.g. bash benchmarks/gpu_suite.sh docs/results/gpu/h200-$(date +%F)        (<= 8 minutes on one H100/H200)
#      bash benchmarks/gpu_suite.sh /tmp/gs --device cpu --smoke              (tiny sizes, CPU, seconds)
# The interpreter is $PYTHON if set, else python3 (the one that holds PyTorch on the lent GPU machines), else python.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/gpu_suite.sh OUT_DIR [--device cuda|cpu] [--smoke] [--budget-s 480] [--backends sdpa,split,flex]" >&2
  exit 2
fi
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_suite.py "$@"
