#!/usr/bin/env bash
# Heart and clavicle overlays on Montgomery test images (issue 5's qualitative PNGs): M_A is trained on JSRT with
# lungs, heart and clavicles; Montgomery is scored on lungs only; the source_only and transfer cells at 0% labels draw
# all three classes on 8 target test images, and `experiment report` gathers them under OUT/report/overlays/.
# Usage: benchmarks/transfer_organs_cpu.sh [OUT=runs/cpu_sweep_128_organs] [SIZE=128]
set -euo pipefail
DATA="${CXR_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}"
OUT="${1:-runs/cpu_sweep_128_organs}"
SIZE="${2:-128}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$(date +%s)
cxr-transfer experiment sweep --source "$DATA/jsrt" --target "$DATA/montgomery" --out "$OUT" \
  --size "$SIZE" --preset tiny --segmenter-kwargs '{"depth": 4, "base_channels": 8}' --classes lungs \
  --source-classes lungs,heart,clavicles --iterations "${ITERATIONS:-100}" --warmup "${WARMUP:-60}" \
  --steps-per-epoch 50 --batch-size 8 --source-iterations "${SOURCE_ITERATIONS:-300}" \
  --finetune-iterations "${FINETUNE_ITERATIONS:-100}" --methods transfer,source_only --fractions 0 --seeds 0 \
  --device cpu
cxr-transfer experiment report --runs "$OUT"
echo "wall time: $(( $(date +%s) - start )) s"
