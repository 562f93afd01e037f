#!/usr/bin/env bash
# The GPU suite as one call of the lent device machine (docs/benchmarks.md section 7). First, here:
#   bash benchmarks/gpu_suite_device.sh --fetch-wheels      # timm's wheel into .whl/ (git-ignored via .git/info/exclude)
# then one call:
#   run(command="bash benchmarks/gpu_suite_device.sh", carry=[".whl"], timeout_s=560)
# The machine's image has its own timm; the carried wheel is installed only if that one is older than atlas-vision's
# floor (atlas_vision/requirements.py), since nothing can be fetched there (GPU_SUITE_WHEELS names another folder).
# Further arguments go to gpu_suite.py (CPU check here: OUT=/tmp/o bash benchmarks/gpu_suite_device.sh --device cpu --smoke).
# That machine returns at most 8 files from $OUT, two folders down, so the suite writes to a scratch folder and this
# script hands back its summary, its four CSVs, the GPU's description and one archive of everything (logs included).
set -uo pipefail
cd "$(dirname "$0")/.."
TIMM_WHEEL_VERSION=1.0.31  # the timm this project's CI tests with
if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    exec python3 -m pip download --quiet --no-deps --only-binary=:all: -d .whl "timm==$TIMM_WHEEL_VERSION"
fi
OUT="${OUT:?run on the device machine, which sets OUT}"
PY="${PYTHON:-python3}"  # python3 holds PyTorch on the lent machines; gpu_suite.sh takes the same $PYTHON
scratch=/tmp/gpu_suite
rm -rf "$scratch"
timm_is_new_enough() {
    # the check's own file, not the package (whose import registers the models with the timm it is checking)
    "$PY" -c "import runpy, timm; runpy.run_path('src/atlas_vision/requirements.py')['check_timm_version'](timm.__version__)"
}
if ! timm_is_new_enough 2>/dev/null; then
    wheels=("${GPU_SUITE_WHEELS:-.whl}"/timm-*.whl)
    if [ -f "${wheels[0]}" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "${wheels[@]}" && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    timm_is_new_enough || { echo "timm here is too old and no usable wheel was carried (--fetch-wheels, carry .whl)"; exit 3; }
fi
{ nvidia-smi || true; "$PY" -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name(0), 'timm', timm.__version__)"; } > "$OUT/device.txt" 2>&1
PYTHONUNBUFFERED=1 bash benchmarks/gpu_suite.sh "$scratch" "$@" 2>&1 | tee "$scratch.log"
status=${PIPESTATUS[0]}
for f in summary.md train.csv large.csv contract.csv tests.csv; do [ -f "$scratch/$f" ] && cp "$scratch/$f" "$OUT/"; done
cp "$scratch.log" "$scratch/suite.log" 2>/dev/null
tar czf "$OUT/gpu_suite.tgz" -C /tmp gpu_suite
exit "$status"
