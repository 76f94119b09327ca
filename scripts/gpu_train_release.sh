#!/usr/bin/env bash
# One prepared run on a lent GPU machine: train the released model, distil the student from it,
# benchmark both with PyTorch CUDA. Tried on the CPU first with GPU_SMOKE=1.
# Needs .gpu/fashion-mnist (the four .gz files) and .gpu/whl (pydantic wheels for the image's Python).
set -euo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
if ls .gpu/whl/*.whl >/dev/null 2>&1 && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
EXTRA=()
if [ "${GPU_SMOKE:-0}" = 1 ]; then
  EXTRA=(--set train.epochs=1 --set data.subset_fraction=0.02)
fi
PC=(python3 -m product_classifier.cli.main)
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) | tee "$OUT/gpu.txt"
"${PC[@]}" train -c configs/release.yaml --set train.device="$DEVICE" \
  --set data.data_dir=.gpu/fashion-mnist --run-dir runs/release "${EXTRA[@]}" 2>&1 | tee "$OUT/release.log"
cp runs/release/best.pt "$OUT/release.pt"
"${PC[@]}" train -c configs/student.yaml --set train.device="$DEVICE" \
  --set data.data_dir=.gpu/fashion-mnist --run-dir runs/student "${EXTRA[@]}" 2>&1 | tee "$OUT/student.log"
cp runs/student/best.pt "$OUT/student.pt"
if [ "$DEVICE" = cuda ]; then
  python3 scripts/gpu_torch_benchmark.py runs/release/best.pt runs/student/best.pt > "$OUT/gpu_torch_benchmark.json" || true
fi
echo "done"
