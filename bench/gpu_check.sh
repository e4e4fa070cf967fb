#!/usr/bin/env bash
# The GPU check of issue 13, in one prepared run on a CUDA machine (e.g. one H200, 16 cores):
# install what is missing, check the GPU JPEG path against the CPU path, then the scan
# benchmark on CUDA and, if time is left, on the CPU alone for comparison. Under 8 minutes
# in all: every step has its own timeout and prints its start time.
#
#   bash bench/gpu_check.sh            # on the GPU machine, from the repository root
#   bash bench/gpu_check.sh --dry-run  # anywhere: checks the steps (no GPU, no benchmark)
#
# The machine may have no network. Python packages it lacks travel as wheels in .whl/
# (made beforehand, where a registry is reachable, by `bash bench/gpu_wheels.sh`); without
# .whl/ the script tries `pip install -e .`. Results: the tables on stdout, and
# gpu_parity.json, bench_cuda.json, bench_cpu.json and gpu_check.log in $OUT when it is set.
#
# Environment: PYTHON (default python3), WHEELS (default .whl), PHOTOS (default 480),
# BUDGET_S (default 450: the CPU comparison starts only with 90 s of that left).
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
PHOTOS=${PHOTOS:-480}
BUDGET_S=${BUDGET_S:-450}
RESULTS=${OUT:-$ROOT/bench/out/gpu_check}
mkdir -p "$RESULTS"
LOG=$RESULTS/gpu_check.log
STARTED=$(date +%s)
CORES=$(nproc)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$ROOT/daemon${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee "$LOG") 2>&1

step() { echo; echo "== [$(date -u +%H:%M:%S) +$(( $(date +%s) - STARTED ))s] $*"; }
left() { echo $(( BUDGET_S - ($(date +%s) - STARTED) )); }
cap() {  # a step's timeout: at most $1 s, and never past the budget
  local t; t=$(left); [ "$t" -gt "$1" ] && t=$1; [ "$t" -lt 5 ] && t=5; echo "$t"
}

step "machine"
uname -m; "$PYTHON" --version; echo "cores: $CORES"; free -g | head -2
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv 2>/dev/null \
  || echo "no NVIDIA GPU visible (nvidia-smi missing or failing)"

step "install (wheels in $WHEELS, else pip install -e .)"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  SITE=/tmp/photoscribe-site
  if [ $DRY = 1 ]; then
    echo "dry run: would install $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE"
  else
    timeout "$(cap 120)" "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$SITE" "$WHEELS"/*.whl || { echo "wheel install failed"; exit 2; }
    export PYTHONPATH="$ROOT/daemon:$SITE"
  fi
elif ! "$PYTHON" -c "import open_clip, pyexiv2" 2>/dev/null; then
  if [ $DRY = 1 ]; then
    echo "dry run: would run pip install -e . (open_clip or pyexiv2 missing)"
  else
    timeout "$(cap 180)" "$PYTHON" -m pip install -q -e . || { echo "pip install -e . failed"; exit 2; }
  fi
else
  echo "open_clip and pyexiv2 already importable: nothing to install"
fi

step "imports and the CUDA JPEG decoder"
timeout "$(cap 90)" "$PYTHON" - <<'EOF' || { echo "import check failed: see above"; exit 3; }
import importlib
for name in ("torch", "torchvision", "open_clip", "pyexiv2", "PIL", "numpy", "skimage", "yaml"):
    mod = importlib.import_module(name)
    print(f"{name:12} {getattr(mod, '__version__', '?')}")
import photoscribe.service  # noqa: F401  the scan's own imports
import torch
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    import io
    from PIL import Image
    from torchvision.io import decode_jpeg
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    out = decode_jpeg([data, data], device="cuda")
    print("nvJPEG batch decode:", [tuple(t.shape) for t in out], out[0].device)
EOF

PARITY_DEVICE=cuda
PARITY_ARGS=()
if [ $DRY = 1 ] || ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  PARITY_DEVICE=cpu
  PARITY_ARGS=(--quick)
fi
step "GPU JPEG path: parity with the CPU path, fallback, speed ($PARITY_DEVICE)"
timeout "$(cap 120)" "$PYTHON" bench/gpu_parity.py --device $PARITY_DEVICE "${PARITY_ARGS[@]}" \
  --json "$RESULTS/gpu_parity.json" || echo "!! gpu_parity failed or timed out (rc $?)"

BENCH_FLAGS="--device --photos --sizes --repeats --json --batch-size --decode-workers --no-mixed"
HELP=$(timeout "$(cap 60)" "$PYTHON" bench/bench_scan.py --help 2>&1)
MISSING=""
for flag in $BENCH_FLAGS; do
  grep -q -- "$flag" <<<"$HELP" || MISSING="$MISSING $flag"
done
MIXED_FLAG=--no-mixed  # MIXED=1: also the mixed folder (PNG, RAW previews: the CPU fallback)
[ "${MIXED:-0}" = 1 ] && MIXED_FLAG=--mixed
GPU_CMD=("$PYTHON" bench/bench_scan.py --device cuda --photos "$PHOTOS" --sizes 12 --repeats 3
  $MIXED_FLAG --batch-size 64 --decode-workers "$CORES" --json "$RESULTS/bench_cuda.json")
CPU_CMD=("$PYTHON" bench/bench_scan.py --device cpu --photos "$PHOTOS" --sizes 12 --repeats 1
  --no-mixed --decode-workers "$CORES" --json "$RESULTS/bench_cpu.json")

step "scan benchmark on CUDA"
if [ -n "$MISSING" ]; then
  echo "!! bench/bench_scan.py lacks$MISSING: it is not the issue-13 version; skipping benchmarks"
elif [ $DRY = 1 ]; then
  echo "dry run: would run (timeout $(cap 270) s): ${GPU_CMD[*]}"
else
  timeout "$(cap 270)" "${GPU_CMD[@]}" || echo "!! CUDA benchmark failed or timed out (rc $?)"
fi

step "scan benchmark on the CPU alone, for comparison ($(left) s of the budget left)"
if [ -n "$MISSING" ]; then
  echo "skipped (see above)"
elif [ $DRY = 1 ]; then
  echo "dry run: would run (timeout: what is left of the budget): ${CPU_CMD[*]}"
elif [ "$(left)" -lt 90 ]; then
  echo "skipped: under 90 s left"
else
  timeout "$(left)" "${CPU_CMD[@]}" || echo "!! CPU benchmark failed or timed out (rc $?)"
fi

step "done in $(( $(date +%s) - STARTED )) s; results in $RESULTS"
ls -la "$RESULTS"
sleep 1  # let tee write the last lines
