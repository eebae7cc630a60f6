#!/usr/bin/env bash
# CPU sweep of the label-fraction experiment on the real data (JSRT -> Montgomery lungs), tiny translator, one seed.
# Usage: benchmarks/transfer_sweep_cpu.sh [OUT] [SIZE] [FRACTIONS]
# The data folder is $CXR_DATA (default ../shared/data).
# A killed run resumes where it stopped when started again with the same OUT.
# Selection: the library's default rule unless SELECTION is set; SELECTION=label_free reproduces the first documented
# CPU sweep (runs/cpu_sweep_full_128 in docs/results/transfer.md), made before shape_prior / shape_cycle existed.
# TRANSFER_KWARGS (JSON) passes TransferConfig overrides to the transfer cells.
set -euo pipefail
DATA="${CXR_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}"
OUT="${1:-runs/cpu_sweep}"
SIZE="${2:-128}"
FRACTIONS="${3:-0,0.05,0.2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$(date +%s)
cxr-transfer experiment sweep --source "$DATA/jsrt" --target "$DATA/montgomery" --out "$OUT" \
  --size "$SIZE" --preset tiny --segmenter-kwargs '{"depth": 4, "base_channels": 8}' \
  --iterations "${ITERATIONS:-150}" --warmup "${WARMUP:-100}" --steps-per-epoch 50 --batch-size 8 \
  --source-iterations "${SOURCE_ITERATIONS:-400}" --finetune-iterations "${FINETUNE_ITERATIONS:-150}" \
  --methods transfer,finetune,scratch,source_only,histmatch --fractions "$FRACTIONS" --seeds 0 --device cpu \
  ${SELECTION:+--selection "$SELECTION"} --transfer-kwargs "${TRANSFER_KWARGS:-{\}}"
echo "wall time: $(( $(date +%s) - start )) s"
