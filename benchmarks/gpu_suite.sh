#!/usr/bin/env bash
# One-shot GPU measurement suite (issue 11): bash benchmarks/gpu_suite.sh OUT_DIR [options of gpu_suite.py]
# e.g. bash benchmarks/gpu_suite.sh docs/results/gpu/h200-$(date +%F)        (<= 8 minutes on one H100/H200)
#      bash benchmarks/gpu_suite.sh /tmp/gs --device cpu --smoke              (tiny sizes, CPU, seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/gpu_suite.sh OUT_DIR [--device cuda|cpu] [--smoke] [--budget-s 480] [--backends sdpa,split,flex]" >&2
  exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu_suite.py "$@"
