#!/usr/bin/env bash
# The GPU suite as one call of the lent device machine (docs/benchmarks.md section 7):
#   run(command="bash benchmarks/gpu_suite_device.sh", timeout_s=560)
# Further arguments go to gpu_suite.py (CPU check here: OUT=/tmp/o bash benchmarks/gpu_suite_device.sh --device cpu --smoke).
# That machine returns at most 8 files from $OUT, two folders down, so the suite writes to a scratch folder and this
# script hands back its summary, its four CSVs, the GPU's description and one archive of everything (logs included).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?run on the device machine, which sets OUT}"
scratch=/tmp/gpu_suite
rm -rf "$scratch"
{ nvidia-smi || true; python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name(0), 'timm', timm.__version__)"; } > "$OUT/device.txt" 2>&1
PYTHONUNBUFFERED=1 bash benchmarks/gpu_suite.sh "$scratch" "$@" 2>&1 | tee "$scratch.log"
status=${PIPESTATUS[0]}
for f in summary.md train.csv large.csv contract.csv tests.csv; do [ -f "$scratch/$f" ] && cp "$scratch/$f" "$OUT/"; done
cp "$scratch.log" "$scratch/suite.log" 2>/dev/null
tar czf "$OUT/gpu_suite.tgz" -C /tmp gpu_suite
exit "$status"
