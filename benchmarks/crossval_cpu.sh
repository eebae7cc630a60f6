#!/usr/bin/env bash
# The cross-validated comparison at CPU scale (issue 12): JSRT -> Montgomery lungs, every method of the registry,
# K folds over all 138 Montgomery images (each tested once), one seed, label fractions 0 and 5%.
# Usage: benchmarks/crossval_cpu.sh [OUT=runs/crossval_cpu] [SIZE=64] [FOLDS=3] [FRACTIONS=0,0.05] [SEEDS=0]
# Settings: benchmarks/configs/cpu_protocol.json with SIZE; METHODS overrides the method list. Resumable: run it again
# with the same OUT and finished cells are skipped; new methods only add their cells. Across sessions (OUT is gone):
# RESULTS=docs/results/crossval_cpu_64px.jsonl seeds a new OUT with the committed per-image results, so only the
# cells missing from it run (a cell's key hashes its configuration and data: a changed setting reruns it).
# JOBS=2 runs two cells at once (experiment sweep --jobs). SETTINGS adds make_config.py overrides, e.g.
# SETTINGS="dark_gate=0.02" (a setting in the cells' identity gets its own cells beside the others).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${CXR_DATA:-$HERE/../../shared/data}"
OUT="${1:-runs/crossval_cpu}"; SIZE="${2:-64}"; FOLDS="${3:-3}"; FRACTIONS="${4:-0,0.05}"; SEEDS="${5:-0}"
METHODS="${METHODS:-source_only,histmatch,finetune,scratch,transfer,paper,selftrain,semisup,adabn,augsource,fda}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"
if [ -n "${RESULTS:-}" ] && [ ! -s "$OUT/results.jsonl" ]; then cp "$RESULTS" "$OUT/results.jsonl"; fi
python "$HERE/make_config.py" "$HERE/configs/cpu_protocol.json" "$OUT/sweep_config.json" "size=$SIZE" ${SETTINGS:-}
start=$(date +%s)
cxr-transfer experiment sweep --config "$OUT/sweep_config.json" --source "$DATA/jsrt" --target "$DATA/montgomery" \
  --out "$OUT" --folds "$FOLDS" --methods "$METHODS" --fractions "$FRACTIONS" --seeds "$SEEDS" \
  --jobs "${JOBS:-1}"
echo "wall time: $(( $(date +%s) - start )) s"
