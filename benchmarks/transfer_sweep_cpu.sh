#!/usr/bin/env bash
# CPU sweep of the label-fraction experiment on the real data (JSRT -> Montgomery lungs), tiny translator, one seed.
# Usage: benchmarks/transfer_sweep_cpu.sh [OUT] [SIZE] [FRACTIONS]
# The settings are benchmarks/configs/cpu_protocol.json; ITERATIONS, WARMUP, SOURCE_ITERATIONS, FINETUNE_ITERATIONS,
# SELECTION and TRANSFER_KWARGS (a JSON object of TransferConfig fields) override them. The data folder is $CXR_DATA
# (default ../shared/data). A killed run resumes where it stopped when started again with the same OUT.
# SELECTION=label_free reproduces the first documented CPU sweep (docs/results/transfer.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${CXR_DATA:-$HERE/../../shared/data}"
OUT="${1:-runs/cpu_sweep}"
SIZE="${2:-128}"
FRACTIONS="${3:-0,0.05,0.2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"
python "$HERE/make_config.py" "$HERE/configs/cpu_protocol.json" "$OUT/sweep_config.json" "size=$SIZE" \
  "transfer.iterations=${ITERATIONS:-150}" "transfer.warmup_iterations=${WARMUP:-100}" \
  "source_iterations=${SOURCE_ITERATIONS:-400}" "finetune_iterations=${FINETUNE_ITERATIONS:-150}" \
  ${SELECTION:+"transfer.selection=$SELECTION"} "transfer=${TRANSFER_KWARGS:-{\}}"
start=$(date +%s)
cxr-transfer experiment sweep --config "$OUT/sweep_config.json" --source "$DATA/jsrt" --target "$DATA/montgomery" \
  --out "$OUT" --methods transfer,finetune,scratch,source_only,histmatch --fractions "$FRACTIONS" --seeds 0
echo "wall time: $(( $(date +%s) - start )) s"
