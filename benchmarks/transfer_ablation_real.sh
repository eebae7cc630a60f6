#!/usr/bin/env bash
# One transfer ablation at 0% labels on the real data (JSRT -> Montgomery lungs), at the CPU sweep's settings, reusing
# the cached M_A and warmed-up translator of a finished CPU sweep (benchmarks/transfer_sweep_cpu.sh), then scoring
# every prediction view of the cell (benchmarks/transfer_views_real.py).
# FRACTION=0.05 runs the cell at another label fraction (default 0). SELECTION picks the rule (default shape_cycle, the
# product's default); label_free or shape_prior reproduce rows measured before it (docs/results/transfer.md says which
# rule each row used).
# Usage: benchmarks/transfer_ablation_real.sh NAME 'TRANSFER_KWARGS_JSON' [BASE=runs/cpu_sweep_128] [SIZE=128]
# e.g.   benchmarks/transfer_ablation_real.sh nopseudo '{"weight_pseudo": 0}'
# Each ablation gets its own folder runs/transfer_ablation/NAME; the shared caches (source/, warmup/, splits) are
# symlinked from BASE, so only the transfer cell is trained.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
NAME="$1"; KWARGS="${2:-{\}}"; BASE="${3:-runs/cpu_sweep_128}"; SIZE="${4:-128}"
DATA="${CXR_DATA:-$HERE/../../shared/data}"
OUT="runs/transfer_ablation/$NAME"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"
for shared in source warmup splits.json source_splits.json; do
  [ -e "$OUT/$shared" ] || ln -s "$(cd "$BASE" && pwd)/$shared" "$OUT/$shared"
done
python "$HERE/make_config.py" "$HERE/configs/cpu_protocol.json" "$OUT/cell_config.json" "size=$SIZE" \
  "transfer.iterations=${ITERATIONS:-100}" "transfer.warmup_iterations=${WARMUP:-60}" \
  "source_iterations=${SOURCE_ITERATIONS:-300}" "finetune_iterations=${FINETUNE_ITERATIONS:-100}" \
  "transfer.selection=${SELECTION:-shape_cycle}" "transfer=$KWARGS"
start=$(date +%s)
cxr-transfer experiment run --method transfer --fraction "${FRACTION:-0}" --seed 0 --config "$OUT/cell_config.json" \
  --source "$DATA/jsrt" --target "$DATA/montgomery" --out "$OUT"
echo "transfer cell wall time: $(( $(date +%s) - start )) s"
cell=$(ls -d "$OUT"/cells/transfer/f*/s0-* | head -1)
[ "${FRACTION:-0}" = 0 ] && python "$HERE/transfer_views_real.py" --cell "$cell"
python -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['key'], 'jaccard', round(100*r['jaccard'], 2), '+-', round(100*r['jaccard_std'], 2))" "$cell/metrics.json"
