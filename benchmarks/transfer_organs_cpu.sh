#!/usr/bin/env bash
# Heart and clavicle overlays on Montgomery test images (issue 5's qualitative PNGs): M_A is trained on JSRT with
# lungs, heart and clavicles; Montgomery is scored on lungs only; the source_only and transfer cells at 0% labels draw
# all three classes on 8 target test images, and `experiment report` gathers them under OUT/report/overlays/.
# Usage: benchmarks/transfer_organs_cpu.sh [OUT=runs/cpu_sweep_128_organs] [SIZE=128]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${CXR_DATA:-$HERE/../../shared/data}"
OUT="${1:-runs/cpu_sweep_128_organs}"
SIZE="${2:-128}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"
python "$HERE/make_config.py" "$HERE/configs/cpu_protocol.json" "$OUT/sweep_config.json" "size=$SIZE" \
  'source_classes=["lungs","heart","clavicles"]' "transfer.iterations=${ITERATIONS:-100}" \
  "transfer.warmup_iterations=${WARMUP:-60}" "source_iterations=${SOURCE_ITERATIONS:-300}" \
  "finetune_iterations=${FINETUNE_ITERATIONS:-100}"
start=$(date +%s)
cxr-transfer experiment sweep --config "$OUT/sweep_config.json" --source "$DATA/jsrt" --target "$DATA/montgomery" \
  --out "$OUT" --classes lungs --methods transfer,source_only --fractions 0 --seeds 0
cxr-transfer experiment report --runs "$OUT"
echo "wall time: $(( $(date +%s) - start )) s"
