#!/usr/bin/env bash
# Does --compile change a cell's result beyond run-to-run noise? (issue 14)
# One transfer cell (JSRT -> Montgomery lungs, the CPU protocol at SIZE, fold 0 of 5, seed 0, fraction FRACTION) run
# three times in separate output folders: eager and --compile at the same time on one thread each, then eager on two
# threads alone (the same computation in another float order: the run-to-run noise to compare with). Prints each
# run's test Jaccard, wall time and loop seconds per iteration.
# Usage: benchmarks/compile_cell.sh [OUT=runs/compile_cell] [SIZE=64] [FRACTION=0] [METHOD=transfer]
# NOISE=0 skips the two-thread run (when the noise is known from another run).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${CXR_DATA:-$HERE/../../shared/data}"
OUT="${1:-runs/compile_cell}"; SIZE="${2:-64}"; FRACTION="${3:-0}"; METHOD="${4:-transfer}"
mkdir -p "$OUT"
python "$HERE/make_config.py" "$HERE/configs/cpu_protocol.json" "$OUT/config.json" "size=$SIZE"
cell() {  # cell NAME THREADS [FLAGS...]
  local name=$1 threads=$2
  shift 2
  local start
  start=$(date +%s)
  OMP_NUM_THREADS=$threads cxr-transfer experiment run --config "$OUT/config.json" --source "$DATA/jsrt" \
    --target "$DATA/montgomery" --out "$OUT/$name" --folds 5 --fold 0 --method "$METHOD" --fraction "$FRACTION" \
    "$@" > "$OUT/$name.log" 2>&1
  echo "$name: $(grep -E "^$METHOD\|" "$OUT/$name.log" | tail -1); wall $(( $(date +%s) - start )) s;" \
       "loop $(grep -oE '[0-9.]+ s/it' "$OUT/$name.log" | tail -1)"
}
cell eager 1 & first=$!
cell compiled 1 --compile
wait "$first"
[ "${NOISE:-1}" = 0 ] || cell eager_2threads 2
