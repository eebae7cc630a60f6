#!/usr/bin/env bash
# The GPU checks and figures, in stages that each fit one 10-minute call on the device machine (one NVIDIA H200,
# Python 3.12, torch 2.11 + torchvision, no kornia, no internet; at most 8 files of 16 MiB come back).
#
#   bash benchmarks/gpu_check.sh STAGE [OUT] [PART]          OUT defaults to $OUT, else runs/gpu_check/STAGE
#
# Stages:
#   install  offline install: the wheels of a carried folder (kornia, kornia-rs, ...), then
#            `pip install --no-index --no-build-isolation --no-deps -e .` (pyproject.toml needs setuptools>=64 and
#            wheel, which the GPU image has, so nothing is fetched), then an import check of setup.cfg's dependencies.
#            The other stages run the same install first when kornia is missing (a fresh machine).
#   smoke    (sized for < 5 min on the GPU) every CUDA path, PASS/FAIL each: kill -9 and --resume of `segment train`,
#            `translate train` and `experiment run --method transfer` against uninterrupted runs (bit-identical on
#            CPU; on CUDA within RESUME_TOL, since cuDNN/bf16 kernels are not deterministic); the translator's
#            divergence-guard rollback on an injected NaN; a short `experiment sweep --source-classes` (run twice on
#            the GPU: the second must skip every cell); `segment predict` and `translate apply` on a folder; bf16
#            autocast with channels_last.
#   figures  (< 9 min) translation, transfer-iteration (bench_iteration.py, eager and --compile) and segmenter
#            throughput (bench_translation.py, bench_segmenters.py) and the
#            JSRT 256 px U-Net run (lungs, heart, clavicles; 150 epochs), which is skipped without the real data.
#   table    the label-fraction sweep (JSRT -> Montgomery lungs at 256) in parts: PART is 1..N (the Nth group of
#            fractions in TABLE_PARTS), `all` or `report`. A part stops after TABLE_TIMEOUT (540 s); run it again
#            and `experiment sweep` skips the finished cells.
#
# Every stage writes under OUT/work, then OUT/results.tar.gz (logs, JSON, CSV, reports, a few PNGs; no weights) and
# OUT/summary.json (stage, each path's PASS / FAIL / SKIP / TIMEOUT with seconds and message, device name, torch
# version), removes OUT/work (KEEP_WORK=1 keeps it) and exits non-zero when a path failed or timed out. One
# exception: the table's sweep folder is TABLE_ROOT (runs/gpu_check_table_$DEVICE), outside OUT, since the device
# tool empties $OUT before each command while a warm machine keeps the ignored runs/ folder, so the next part finds
# the cached source segmenter M_A, the warmed-up translator and the checkpoints of an interrupted cell there.
#
# DEVICE=cpu runs every stage on the CPU at a tiny setting (32 px, a few steps; the real data when it is there, else
# phantoms); tests/benchmarks/test_gpu_check.py runs the smoke stage so. Sizes and step counts are the environment
# variables below (CPU value, GPU value). ONLY=name,name runs only those paths (e.g. to retry a failed one; a path
# that needs another's model, segment_predict or translate_apply, needs that one listed too).
#
# Carrying data and wheels: the device machine receives only the repository (64 MiB at most per call), so here:
#   echo /gpu_carry/ >> .git/info/exclude
#   mkdir -p gpu_carry/wheels gpu_carry/data && cp -r ../shared/data/jsrt ../shared/data/montgomery gpu_carry/data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d gpu_carry/wheels kornia==0.9.0 kornia-rs==0.2.0          # 7 MB of wheels; the data is 38 MB
# then one device call per stage with carry ["gpu_carry"] (CXR_DATA: default ../shared/data, else gpu_carry/data):
#   bash benchmarks/gpu_check.sh smoke "$OUT"
#   bash benchmarks/gpu_check.sh figures "$OUT"
#   bash benchmarks/gpu_check.sh table "$OUT" 1        # then 2, 3, 4; a part that timed out: the same part again
# Wheels are looked for in $WHEELS, gpu_carry/wheels, wheels/ and .whl/ (Python 3.12 manylinux x86_64 wheels).
# On a fresh machine the table's caches are gone: carry the results.tar.gz of the previous part as
# gpu_carry/table_state.tar.gz (or set TABLE_STATE) and its finished cells are skipped; M_A and the warm-up are
# retrained then (M_A at 256 px is 31 MB and the warm-up 38 MB: they cannot travel), on CUDA not bit for bit the
# earlier part's, and the restore path says so.
set -uo pipefail

STAGE="${1:-help}"
CALLER_DIR="$(pwd)"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_ARG="${2:-${OUT:-runs/gpu_check/$STAGE}}"
PART="${3:-${PART:-1}}"
case "$OUT_ARG" in /*) ;; *) OUT_ARG="$CALLER_DIR/$OUT_ARG" ;; esac
cd "$REPO" || exit 2

DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # `python -m experiments` runs with or without the install
export PYTHONUNBUFFERED=1
HELPER=("$PY" "$REPO/benchmarks/gpu_check_paths.py")
CLI=("$PY" -m experiments)
KEEP_WORK="${KEEP_WORK:-0}"
ONLY="${ONLY:-}"                                        # comma-separated paths to run (default: every path)

if [ -n "${CXR_DATA:-}" ]; then
  case "$CXR_DATA" in /*) DATA="$CXR_DATA" ;; *) DATA="$CALLER_DIR/$CXR_DATA" ;; esac
elif [ -d ../shared/data ]; then DATA="$REPO/../shared/data"
else DATA="$REPO/gpu_carry/data"
fi

cpu() { [ "$DEVICE" = cpu ]; }
pick() { if cpu; then echo "$1"; else echo "$2"; fi; }   # pick CPU_VALUE GPU_VALUE
DEVICE_FLAGS=(--device "$DEVICE")
cpu && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # tiny nets, several processes at once on 2 cores

# ------------------------------------------------------------------------------------------------------- settings
CMD_TIMEOUT="${CMD_TIMEOUT:-150}"                       # seconds for any one command of the smoke stage
RESUME_TOL="${RESUME_TOL:-$(pick '' 1e-2)}"             # empty: bit-identical; else the relative L2 tolerance
SMOKE_DATA="${SMOKE_DATA:-auto}"                        # auto (a subset of the real data when there), real, phantom
SMOKE_N="${SMOKE_N:-$(pick 12 40)}"                     # images per domain
SMOKE_SIZE="${SMOKE_SIZE:-$(pick 32 128)}"
SMOKE_PRESET="${SMOKE_PRESET:-$(pick tiny default)}"
SMOKE_SEG_KWARGS="${SMOKE_SEG_KWARGS:-$(pick '{"depth": 2, "base_channels": 4}' '{}')}"
SMOKE_SEG_EPOCHS="${SMOKE_SEG_EPOCHS:-$(pick 5 12)}"
SMOKE_SEG_STEPS="${SMOKE_SEG_STEPS:-$(pick 3 5)}"
SMOKE_SEG_BATCH="${SMOKE_SEG_BATCH:-$(pick 2 4)}"
SMOKE_TR_ITERS="${SMOKE_TR_ITERS:-$(pick 12 40)}"
SMOKE_TR_EVERY="${SMOKE_TR_EVERY:-$(pick 4 10)}"
SMOKE_TR_BATCH="${SMOKE_TR_BATCH:-$(pick 1 2)}"
SMOKE_TF_ITERS="${SMOKE_TF_ITERS:-$(pick 9 40)}"
SMOKE_TF_SPE="${SMOKE_TF_SPE:-$(pick 3 10)}"
SMOKE_TF_WARMUP="${SMOKE_TF_WARMUP:-$(pick 4 20)}"
SMOKE_TF_SOURCE_ITERS="${SMOKE_TF_SOURCE_ITERS:-$(pick 6 60)}"
SMOKE_TF_FT_ITERS="${SMOKE_TF_FT_ITERS:-$(pick 4 20)}"
SMOKE_TF_BATCH="${SMOKE_TF_BATCH:-$(pick 2 4)}"
SMOKE_TF_KWARGS="${SMOKE_TF_KWARGS:-$(pick '{}' '{"n_blocks": 6, "base_channels": 32}')}"
SMOKE_FRACTION="${SMOKE_FRACTION:-0.5}"
SMOKE_SWEEP_FRACTIONS="${SMOKE_SWEEP_FRACTIONS:-0,0.5}"
SMOKE_JOBS="${SMOKE_JOBS:-$(pick 1 2)}"                  # cells at once in the short sweep
SMOKE_SWEEP_AGAIN="${SMOKE_SWEEP_AGAIN:-$(pick 0 1)}"   # run the sweep twice: the second must skip every cell
SMOKE_LANES="${SMOKE_LANES:-2}"                         # 1: the paths one after another

FIG_BUDGET="${FIG_BUDGET:-$(pick 300 530)}"            # seconds for the whole figures stage
FIG_SIZE="${FIG_SIZE:-$(pick 32 256)}"
FIG_PRESET="${FIG_PRESET:-$(pick tiny default)}"
FIG_TR_ITERS="${FIG_TR_ITERS:-$(pick 2 30)}"
FIG_TR_WARMUP="${FIG_TR_WARMUP:-$(pick 1 10)}"
FIG_TR_BATCHES="${FIG_TR_BATCHES:-$(pick 2 '8 16 32')}"
FIG_SEG_MODELS="${FIG_SEG_MODELS:-$(pick 'unet invertednet' '')}"  # empty: every architecture
FIG_SEG_BATCH="${FIG_SEG_BATCH:-$(pick 2 16)}"
FIG_SEG_ITERS="${FIG_SEG_ITERS:-$(pick 2 20)}"
FIG_SEG_WARMUP="${FIG_SEG_WARMUP:-$(pick 1 5)}"
FIG_TF_BATCH="${FIG_TF_BATCH:-$(pick 2 8)}"              # the transfer iteration's batch (per domain)
FIG_TF_KWARGS="${FIG_TF_KWARGS:-$(pick '{}' '{"n_blocks": 9}')}"  # the ResNet-9 CycleGAN of the paper on the GPU
FIG_TF_SEG_KWARGS="${FIG_TF_SEG_KWARGS:-$(pick '{"depth": 2, "base_channels": 4}' '{}')}"
FIG_TF_COMPILE="${FIG_TF_COMPILE:-$(pick 0 1)}"          # also time --compile (minutes of inductor work on a CPU)
FIG_JSRT_SIZE="${FIG_JSRT_SIZE:-$(pick 32 256)}"
FIG_JSRT_EPOCHS="${FIG_JSRT_EPOCHS:-$(pick 2 150)}"
FIG_JSRT_LIMIT="${FIG_JSRT_LIMIT:-$(pick 20 '')}"       # empty: all 247 images
FIG_JSRT_KWARGS="${FIG_JSRT_KWARGS:-$(pick '{"depth": 2, "base_channels": 4}' '{"depth": 4, "base_channels": 32}')}"
FIG_JSRT_CKPT="${FIG_JSRT_CKPT:-$(pick 1 25)}"
FIG_JSRT_RUN="${FIG_JSRT_RUN:-}"                        # run folder (default OUT/work/...); resumed when it has one

TABLE_ROOT="${TABLE_ROOT:-runs/gpu_check_table_$DEVICE}"
TABLE_STATE="${TABLE_STATE:-gpu_carry/table_state.tar.gz}"
TABLE_PARTS="${TABLE_PARTS:-$(pick '0;0.5' '0,0.0125;0.025,0.05;0.1,0.2;0.5,1')}"
TABLE_TIMEOUT="${TABLE_TIMEOUT:-$(pick 300 540)}"
TABLE_N="${TABLE_N:-$(pick 24 120)}"                    # phantoms per domain when the real data is absent
TABLE_SIZE="${TABLE_SIZE:-$(pick 32 256)}"
TABLE_PRESET="${TABLE_PRESET:-$(pick tiny default)}"
TABLE_TRANSLATOR_KWARGS="${TABLE_TRANSLATOR_KWARGS:-$(pick '{}' '{"n_blocks": 6, "base_channels": 32}')}"
TABLE_SEG_KWARGS="${TABLE_SEG_KWARGS:-$(pick '{"depth": 2, "base_channels": 4}' '{}')}"
TABLE_METHODS="${TABLE_METHODS:-transfer,finetune,scratch,source_only,histmatch}"
TABLE_SEEDS="${TABLE_SEEDS:-0}"
TABLE_JOBS="${TABLE_JOBS:-$(pick 1 4)}"
TABLE_ITERATIONS="${TABLE_ITERATIONS:-$(pick 6 3000)}"
TABLE_WARMUP="${TABLE_WARMUP:-$(pick 3 1000)}"
TABLE_SPE="${TABLE_SPE:-$(pick 3 250)}"
TABLE_BATCH="${TABLE_BATCH:-$(pick 4 8)}"
TABLE_SOURCE_ITERS="${TABLE_SOURCE_ITERS:-$(pick 10 3000)}"
TABLE_FT_ITERS="${TABLE_FT_ITERS:-$(pick 4 1500)}"

# ------------------------------------------------------------------------------------------------------- plumbing
now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
note() { echo "NOTE: $*"; }
helper() { "${HELPER[@]}" "$@"; }
last_line() { grep -v '^\s*$' "$1" 2>/dev/null | tail -n 1; }
# background COMMAND...: an external command that a failed check must not leave running; reap PID waits for it.
background() { "$@" & BG_PIDS="$BG_PIDS $!"; }
stop_background() { local pid; for pid in ${BG_PIDS:-}; do kill "$pid" 2>/dev/null; done; }
reap() { local rc=0; wait "$1" || rc=$?; BG_PIDS="${BG_PIDS/ $1/}"; return "$rc"; }

# checked RC LOG WHAT: turn the exit status of a command into a FAIL or TIMEOUT that names it and its last line.
checked() {
  local rc=$1 log=$2 what=$3
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 124 ] && { echo "TIMEOUT: $what ran past CMD_TIMEOUT=$CMD_TIMEOUT s (see $log)"; exit 124; }
  fail "$what failed (exit $rc): $(last_line "$log")"
}

# cli LOG WHAT ARGS...: one cxr-transfer command within CMD_TIMEOUT, its output in LOG.
cli() {
  local log=$1 what=$2 rc=0
  shift 2
  timeout -k 10 "$CMD_TIMEOUT" "${CLI[@]}" "$@" > "$log" 2>&1 || rc=$?
  checked "$rc" "$log" "$what"
}

begin_stage() {
  OUT="$OUT_ARG"; WORK="$OUT/work"; LOGS="$WORK/logs"; TSV="$WORK/paths.tsv"
  rm -rf "$WORK" "$OUT/summary.json" "$OUT/results.tar.gz"
  mkdir -p "$LOGS" || exit 2
  STAGE_T0=$(now); DATA_NOTE=""
  echo "gpu_check $STAGE: DEVICE=$DEVICE OUT=$OUT data folder $DATA"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$WORK/nvidia-smi.csv" 2>/dev/null || true
}

# path NAME FUNCTION [ARGS]: run one check in a subshell (set -e), log it, record PASS / FAIL / SKIP / TIMEOUT.
path() {
  local name=$1 log="$LOGS/$1.log" t0 secs rc status message
  shift
  case ",${ONLY:-$name},environment,data,wheels,editable," in *",$name,"*) ;; *) return 0 ;; esac
  t0=$(now)
  echo "-- $name ..."
  ( set -eo pipefail; BG_PIDS=""; trap stop_background EXIT; "$@" ) > "$log" 2>&1
  rc=$?
  secs=$(since "$t0")
  case $rc in
    0) status=PASS
       message=$(grep -E '^NOTE: ' "$log" | sed 's/^NOTE: //' | awk 'NR > 1 { printf "; " } { printf "%s", $0 }') ;;
    77) status=SKIP; message=$(grep -E '^SKIP: ' "$log" | tail -1 | sed 's/^SKIP: //') ;;
    124|137) status=TIMEOUT; message=$(grep -E '^(FAIL|TIMEOUT): ' "$log" | tail -1 | sed -E 's/^[A-Z]+: //') ;;
    *) status=FAIL; message=$(grep -E '^FAIL: ' "$log" | tail -1 | sed 's/^FAIL: //') ;;
  esac
  [ -n "$message" ] || [ "$status" = PASS ] || message="exit $rc: $(last_line "$log")"
  message=$(printf '%s' "$message" | tr '\t\n' '  ' | cut -c1-1500)
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$message" >> "$TSV"
  printf '%-8s %-22s %7s s  %s\n' "$status" "$name" "$secs" "$message"
  if [ "$status" = FAIL ] || [ "$status" = TIMEOUT ]; then
    echo "   last lines of $log:"; tail -n 15 "$log" | sed 's/^/   | /'
  fi
  [ "$status" = PASS ] || [ "$status" = SKIP ]
}

finish_stage() {
  local archive="$OUT/results.tar.gz" info="$WORK/environment.json" failed
  [ -f "$info" ] || helper env --device "$DEVICE" --json "$info" > /dev/null 2>&1 || true
  # logs, JSON, CSV, Markdown, a few PNGs and TensorBoard events; no weights, no data, no file over 8 MiB
  (cd "$OUT" && find work -type f ! -name '*.pt' ! -name '*.pth' ! -path 'work/data/*' ! -path '*/checkpoints/*' \
      -size -8M -print0 | tar --null -czf "$archive" -T -)
  if [ "$(stat -c %s "$archive" 2>/dev/null || echo 0)" -gt 16000000 ]; then  # over what comes back: text only
    (cd "$OUT" && find work -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.log' -o -name '*.csv' \
        -o -name '*.md' -o -name '*.tsv' -o -name '*.txt' \) ! -path 'work/data/*' -size -8M -print0 \
        | tar --null -czf "$archive" -T -)
  fi
  helper summary --out "$OUT/summary.json" --stage "$STAGE" --tsv "$TSV" --info "$info" --figures "$WORK/figures" \
      --archive "$archive" --data "$DATA_NOTE" --seconds "$(since "$STAGE_T0")" || echo "FAIL: no summary.json"
  failed=$(awk -F'\t' '$2 == "FAIL" || $2 == "TIMEOUT"' "$TSV" | wc -l)
  echo "gpu_check $STAGE on $DEVICE: $(awk -F'\t' '{ n[$2]++ } END { for (s in n) printf "%s %d, ", s, n[s] }' \
      "$TSV")$(since "$STAGE_T0") s; $OUT/summary.json, $archive ($(du -h "$archive" | cut -f1))"
  [ "$KEEP_WORK" = 1 ] || rm -rf "$WORK"
  [ "$failed" -eq 0 ]
}

# ------------------------------------------------------------------------------------------------------- install
find_wheels() {
  local dir
  for dir in ${WHEELS:-} gpu_carry/wheels wheels .whl; do
    if compgen -G "$dir/*.whl" > /dev/null; then echo "$dir"; return 0; fi
  done
  return 1
}

pip_offline() {  # pip install without the network; a Python that refuses (PEP 668) gets --break-system-packages
  local log="$LOGS/pip_$RANDOM.txt"
  "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir "$@" 2>&1 | tee "$log" && return 0
  grep -q externally-managed "$log" || return 1
  "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir --break-system-packages "$@"
}

install_wheels() {
  local dir places="\$WHEELS, gpu_carry/wheels, wheels/, .whl/"
  if ! dir=$(find_wheels); then
    "$PY" -c "import kornia" 2> /dev/null && skip "no wheels ($places); kornia is there"
    fail "no wheels ($places) and no kornia: carry kornia and kornia-rs wheels (header of benchmarks/gpu_check.sh)"
  fi
  ls "$dir"/*.whl
  pip_offline "$dir"/*.whl || fail "pip could not install the wheels of $dir offline (see the log)"
  note "pip installed (or found installed) $(ls "$dir"/*.whl | wc -l) wheel(s) from $dir without the network"
}

install_editable() {
  "$PY" - <<'EOF' || fail "pip install -e . without build isolation needs setuptools>=64 (below 70.1 also wheel)"
import importlib.util, setuptools, sys
version = tuple(int(v) for v in setuptools.__version__.split(".")[:2])
wheel = importlib.util.find_spec("wheel") is not None  # setuptools >= 70.1 builds wheels without it
print(f"setuptools {setuptools.__version__}, wheel {'present' if wheel else 'absent'}")
sys.exit(version < (64, 0) or (version < (70, 1) and not wheel))
EOF
  pip_offline -e . || fail "pip install -e . failed offline (see the log)"
  (cd / && env -u PYTHONPATH "$PY" -c "import experiments, segmentation, translation, transfer, runtime, sys; \
print('installed:', experiments.__file__)") || fail "the installed package does not import outside the repository"
  command -v cxr-transfer > /dev/null && cxr-transfer --version
  note "editable install of cxr-transfer without the network ($("$PY" -m pip --version | cut -d' ' -f1-2))"
}

check_imports() {
  "$PY" - <<'EOF'
import importlib
missing, versions = [], {}
for module, package in [("torch", "torch"), ("torchvision", "torchvision"), ("kornia", "kornia"), ("numpy", "numpy"),
                        ("skimage", "scikit-image"), ("tensorboard", "tensorboard"), ("click", "click"),
                        ("tqdm", "tqdm"), ("PIL", "pillow"), ("scipy", "scipy"), ("matplotlib", "matplotlib")]:
    try:
        versions[package] = getattr(importlib.import_module(module), "__version__", "?")
    except Exception as err:  # noqa: BLE001 - report any import failure
        missing.append(f"{package} ({type(err).__name__}: {err})")
if missing:
    print("FAIL: missing dependencies of setup.cfg: " + ", ".join(missing) + "; carry their wheels")
    raise SystemExit(1)
print("NOTE: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
try:
    import pydicom  # noqa: F401
except ImportError:
    print("NOTE: the optional pydicom is absent (DICOM input only)")
EOF
}

stage_install() {
  begin_stage
  path wheels install_wheels
  path editable install_editable
  path imports check_imports
  path environment helper env --device "$DEVICE" --json "$WORK/environment.json"
  finish_stage
}

# Before any other stage: install when kornia is missing (a fresh device machine), then check the device.
preflight() {
  if ! "$PY" -c "import kornia" 2> /dev/null; then
    echo "kornia is not importable: installing from the carried wheels first"
    path wheels install_wheels || return 1
    path editable install_editable || true   # not fatal: PYTHONPATH finds the repository anyway
  fi
  path environment helper env --device "$DEVICE" --json "$WORK/environment.json"
}

# The data of a stage: DATA_SOURCE / DATA_TARGET / DATA_KIND from the data.env that `gpu_check_paths.py data` wrote.
load_data() {
  [ -f "$1" ] || return 1
  eval "$(grep -E '^DATA_(SOURCE|TARGET|KIND)=' "$1")"
  DATA_NOTE="$DATA_KIND"
}

# experiment_args FILE SIZE PRESET SEGMENTER_KWARGS TRANSLATOR_KWARGS ITERATIONS WARMUP STEPS_PER_EPOCH BATCH
#                 SOURCE_ITERATIONS FINETUNE_ITERATIONS SOURCE_CLASSES: EXP_ARGS, the settings of `experiment run` and
# `experiment sweep` beyond --source/--target/--out/--classes/--device: a --config file (FILE) where the command takes
# one, else the options of the older command line.
experiment_args() {
  local file=$1 size=$2 preset=$3 seg=$4 tr=$5 it=$6 warm=$7 spe=$8 batch=$9 src=${10} ft=${11} classes=${12}
  if grep -q '"--config"' experiments/commands/experiment.py; then
    mkdir -p "$(dirname "$file")"
    printf '{"size": %s, "translator_preset": "%s", "segmenter_kwargs": %s, "translator_kwargs": %s,
 "source_iterations": %s, "finetune_iterations": %s, "source_classes": [%s],
 "transfer": {"iterations": %s, "warmup_iterations": %s, "steps_per_epoch": %s, "batch_size": %s}}\n' \
      "$size" "$preset" "$seg" "$tr" "$src" "$ft" "$(sed -E 's/([^,]+)/"\1"/g' <<< "$classes")" \
      "$it" "$warm" "$spe" "$batch" > "$file"
    EXP_ARGS=(--config "$file")
  else
    EXP_ARGS=(--size "$size" --preset "$preset" --segmenter-kwargs "$seg" --translator-kwargs "$tr"
              --iterations "$it" --warmup "$warm" --steps-per-epoch "$spe" --batch-size "$batch"
              --source-iterations "$src" --finetune-iterations "$ft")
    [ -z "$classes" ] || EXP_ARGS+=(--source-classes "$classes")
  fi
}

smoke_experiment_args() {  # experiment_args at the smoke setting; $1 the file, $2 the source classes
  experiment_args "$1" "$SMOKE_SIZE" "$SMOKE_PRESET" "$SMOKE_SEG_KWARGS" "$SMOKE_TF_KWARGS" "$SMOKE_TF_ITERS" \
      "$SMOKE_TF_WARMUP" "$SMOKE_TF_SPE" "$SMOKE_TF_BATCH" "$SMOKE_TF_SOURCE_ITERS" "$SMOKE_TF_FT_ITERS" "${2:-}"
}

# ------------------------------------------------------------------------------------------------------- smoke
# killed_run LOG GLOB MIN_STEP SNAPSHOT COMMAND...: start COMMAND in the background, wait for a checkpoint matching
# GLOB (with a step >= MIN_STEP in its name), kill -9 it, copy the newest such checkpoint into SNAPSHOT, print its path.
killed_run() {
  local log=$1 pattern=$2 min=$3 snap=$4 pid found rc newest
  shift 4
  "$@" > "$log" 2>&1 &
  pid=$!
  if ! found=$(helper wait-for --glob "$pattern" --pid "$pid" ${min:+--min-step "$min"} --timeout "$CMD_TIMEOUT"); then
    kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
    fail "$(sed 's/^FAIL: //' <<< "$found"): $(last_line "$log")"
  fi
  kill -9 "$pid" 2> /dev/null
  wait "$pid"; rc=$?
  [ "$rc" -eq 137 ] || fail "the run ended with exit $rc before kill -9 landed (after $found): give it more steps"
  # shellcheck disable=SC2086
  newest=$(ls -t $pattern 2> /dev/null | head -1)
  [ -n "$newest" ] || fail "no checkpoint left after kill -9 (glob $pattern)"
  mkdir -p "$snap"
  cp "$newest" "$snap/"
  echo "$snap/$(basename "$newest")"
}

# resume_check NAME RUN_FLAG GLOB MIN_STEP ARGS...: an uninterrupted run beside one killed at its first checkpoint
# and resumed; leaves $BASE/straight and $BASE/killed (RUN_FLAG is --run-dir or --out) and KILLED, the snapshot.
resume_check() {
  local name=$1 flag=$2 pattern=$3 min=$4 spid rc=0
  shift 4
  BASE="$WORK/$name"
  rm -rf "$BASE"; mkdir -p "$BASE"
  background timeout -k 10 "$CMD_TIMEOUT" "${CLI[@]}" "$@" "$flag" "$BASE/straight" > "$BASE/straight.log" 2>&1
  spid=$!
  KILLED=$(killed_run "$BASE/killed.log" "$BASE/killed/$pattern" "$min" "$BASE/at_kill" \
           "${CLI[@]}" "$@" "$flag" "$BASE/killed") || { echo "$KILLED"; exit 1; }
  local resume=(--resume)
  [ "$flag" = --out ] && resume=()   # experiment run resumes an interrupted cell by itself
  cli "$BASE/resumed.log" "the run resumed after kill -9" "$@" "$flag" "$BASE/killed" "${resume[@]}"
  reap "$spid" || rc=$?
  checked "$rc" "$BASE/straight.log" "the uninterrupted run"
}

tolerance() { if [ -n "$RESUME_TOL" ]; then echo "--tol $RESUME_TOL"; fi; }

resume_segment() {
  local args=(segment train --data "$DATA_SOURCE" --classes "lungs,heart,clavicles" --size "$SMOKE_SIZE" --model unet
              --model-kwargs "$SMOKE_SEG_KWARGS" --epochs "$SMOKE_SEG_EPOCHS" --steps-per-epoch "$SMOKE_SEG_STEPS"
              --batch-size "$SMOKE_SEG_BATCH" --scheduler cosine --augment --checkpoint-every 1 --seed 0 -q
              "${DEVICE_FLAGS[@]}")
  cpu || args+=(--channels-last --amp)
  resume_check segment --run-dir checkpoints/last.pt "" "${args[@]}"
  # shellcheck disable=SC2046
  helper compare --straight "$BASE/straight" --resumed "$BASE/killed" --file checkpoints/last.pt --file model.pt \
      --killed "$KILLED" --drift checkpoints/last.pt --tb "$BASE/killed/tb" $(tolerance)
}

resume_translate() {
  local args=(translate train --a "$DATA_TARGET" --b "$DATA_SOURCE" --model cyclegan --preset "$SMOKE_PRESET"
              --size "$SMOKE_SIZE" --iterations "$SMOKE_TR_ITERS" --batch-size "$SMOKE_TR_BATCH" --seed 0
              --checkpoint-every "$SMOKE_TR_EVERY" -q "${DEVICE_FLAGS[@]}")
  resume_check translate --run-dir 'checkpoints/step_*.pt' 1 "${args[@]}"
  grep -h "resumed from" "$BASE/killed/train.log" | sed 's/^/NOTE: train.log: /' || true
  # shellcheck disable=SC2046
  helper compare --straight "$BASE/straight" --resumed "$BASE/killed" --file translator.pt \
      --file 'checkpoints/step_*.pt' --killed "$KILLED" --drift 'checkpoints/step_*.pt' --tb "$BASE/killed/tb" \
      $(tolerance)
}

resume_transfer() {
  local cell
  smoke_experiment_args "$WORK/transfer.json"
  local args=(experiment run --method transfer --fraction "$SMOKE_FRACTION" --seed 0 --source "$DATA_SOURCE"
              --target "$DATA_TARGET" "${EXP_ARGS[@]}" "${DEVICE_FLAGS[@]}")
  resume_check transfer --out 'cells/transfer/*/s0*/checkpoints/iter_*.pt' 1 "${args[@]}"
  cell=$(cd "$BASE/straight" && ls -d cells/transfer/*/s0* | head -1)
  # shellcheck disable=SC2046
  helper compare --straight "$BASE/straight/$cell" --resumed "$BASE/killed/$cell" --file segmenter.pt \
      --file translator.pt --file 'checkpoints/iter_*.pt' --file checkpoints/best.pt --killed "$KILLED" \
      --drift 'checkpoints/iter_*.pt' --tb "$BASE/killed/$cell/tb" $(tolerance)
}

guard_nan() {
  helper guard --device "$DEVICE" --size "$SMOKE_SIZE" --preset "$SMOKE_PRESET" --run-dir "$WORK/guard"
}

sweep_source_classes() {
  local root="$WORK/sweep" cells
  smoke_experiment_args "$WORK/sweep.json" "lungs,heart,clavicles"
  local args=(experiment sweep --source "$DATA_SOURCE" --target "$DATA_TARGET" --out "$root" --classes lungs
              --methods "transfer,finetune,scratch,source_only,histmatch" --fractions "$SMOKE_SWEEP_FRACTIONS"
              --seeds 0 --jobs "$SMOKE_JOBS" "${EXP_ARGS[@]}" "${DEVICE_FLAGS[@]}")
  cli "$WORK/sweep.log" "experiment sweep" "${args[@]}"
  cells=$(grep -oE 'sweep: [0-9]+ cells' "$WORK/sweep.log" | head -1 | grep -oE '[0-9]+')
  helper sweep-check --root "$root" --cells "$cells" --classes lungs --source-classes lungs,heart,clavicles
  note "experiment sweep --jobs $SMOKE_JOBS"
  [ "$SMOKE_SWEEP_AGAIN" = 1 ] || return 0
  cli "$WORK/sweep_again.log" "the second experiment sweep" "${args[@]}"
  grep -q "$cells already finished, 0 to run" "$WORK/sweep_again.log" \
    || fail "the second sweep did not skip the finished cells: $(grep 'sweep:' "$WORK/sweep_again.log" | head -1)"
  note "a second sweep skipped all $cells finished cells"
}

keep_two() {  # checked outputs: two PNGs per folder are enough for results.tar.gz
  find "$1" -name '*.png' | sort | awk -F/ '{ n[$(NF-1)]++ } n[$(NF-1)] > 2' | xargs -r rm
}

segment_predict() {
  local model="$WORK/segment/straight/model.pt"
  [ -f "$model" ] || fail "no $model: resume_segment did not train one"
  cli "$WORK/predict.log" "segment predict" segment predict --model "$model" --images "$DATA_TARGET/images" \
      --out "$WORK/predict" "${DEVICE_FLAGS[@]}"
  helper outputs --kind predict --images "$DATA_TARGET/images" --out "$WORK/predict" --classes lungs,heart,clavicles
  keep_two "$WORK/predict"
}

translate_apply() {
  local translator="$WORK/translate/straight/translator.pt"
  [ -f "$translator" ] || fail "no $translator: resume_translate did not train one"
  cli "$WORK/apply.log" "translate apply" translate apply --translator "$translator" --direction a2b \
      --images "$DATA_TARGET/images" --out "$WORK/apply" -q "${DEVICE_FLAGS[@]}"
  helper outputs --kind apply --images "$DATA_TARGET/images" --out "$WORK/apply"
  keep_two "$WORK/apply"
}

autocast_channels_last() {
  helper amp --device "$DEVICE" --size "$SMOKE_SIZE" --preset "$SMOKE_PRESET" --segmenter-kwargs "$SMOKE_SEG_KWARGS"
}

smoke_lane_a() {
  path resume_segment resume_segment
  path segment_predict segment_predict
  path resume_translate resume_translate
  path translate_apply translate_apply
}

smoke_lane_b() {
  path resume_transfer resume_transfer
  path sweep_source_classes sweep_source_classes
  path guard_nan guard_nan
  path autocast_channels_last autocast_channels_last
}

stage_smoke() {
  local lane
  begin_stage
  if preflight && path data helper data --root "$WORK/data" --n "$SMOKE_N" --size "$SMOKE_SIZE" --real "$DATA" \
      --mode "$SMOKE_DATA" && load_data "$WORK/data/data.env"; then
    if [ "$SMOKE_LANES" -gt 1 ]; then  # two independent lanes at once: most of a path keeps one core busy
      smoke_lane_a & lane=$!
      smoke_lane_b
      wait "$lane"
    else
      smoke_lane_a
      smoke_lane_b
    fi
  fi
  finish_stage
}

# ------------------------------------------------------------------------------------------------------- figures
budget_left() { awk -v t0="$STAGE_T0" -v b="$FIG_BUDGET" -v t="$(now)" 'BEGIN { printf "%d", b - (t - t0) }'; }

bounded() {  # bounded CAP COMMAND...: run within min(CAP, what is left of FIG_BUDGET)
  local cap=$1 left
  shift
  left=$(budget_left)
  [ "$left" -gt 20 ] || { echo "TIMEOUT: no time left of FIG_BUDGET=$FIG_BUDGET s"; return 124; }
  [ "$cap" -lt "$left" ] || cap=$left
  echo "(at most $cap s)"
  timeout -k 10 "$cap" "$@"
}

fig_translation() {
  local amp=()
  cpu || amp=(--amp --channels-last)
  mkdir -p "$WORK/figures"
  bounded 90 "$PY" benchmarks/bench_translation.py "${DEVICE_FLAGS[@]}" --models cyclegan --presets "$FIG_PRESET" \
      --size "$FIG_SIZE" --batch-size 1 --iterations "$FIG_TR_ITERS" --warmup "$FIG_TR_WARMUP" \
      --out "$WORK/figures/translation_fp32_b1.json"
  # shellcheck disable=SC2086
  bounded 120 "$PY" benchmarks/bench_translation.py "${DEVICE_FLAGS[@]}" --models cyclegan --presets "$FIG_PRESET" \
      --size "$FIG_SIZE" --batch-size $FIG_TR_BATCHES "${amp[@]}" --iterations "$FIG_TR_ITERS" \
      --warmup "$FIG_TR_WARMUP" --out "$WORK/figures/translation_bf16.json"
  note "cyclegan ($FIG_PRESET) at $FIG_SIZE px"
  helper digest "$WORK/figures/translation_fp32_b1.json"
  helper digest "$WORK/figures/translation_bf16.json"
}

fig_transfer_iteration() {  # the transfer loop's own iteration: eager (bf16 + channels-last on CUDA), then compiled
  local fast=() variant
  cpu || fast=(--channels-last)
  mkdir -p "$WORK/figures"
  local args=(benchmarks/bench_iteration.py --device "$DEVICE" --translator-preset "$FIG_PRESET"
              --translator-kwargs "$FIG_TF_KWARGS" --segmenter-kwargs "$FIG_TF_SEG_KWARGS" --size "$FIG_SIZE"
              --batch-size "$FIG_TF_BATCH" --iterations "$(pick 2 10)" --repeats 3 --discard "$(pick 1 5)")
  [ -d "$DATA/jsrt/images" ] || args+=(--phantoms)
  bounded 150 "$PY" "${args[@]}" "${fast[@]}" --label eager > "$WORK/figures/transfer_iteration_eager.json"
  variant=eager
  if [ "$FIG_TF_COMPILE" = 1 ]; then
    bounded 240 "$PY" "${args[@]}" "${fast[@]}" --compile --label compiled \
        > "$WORK/figures/transfer_iteration_compiled.json"
    variant="eager compiled"
  fi
  for v in $variant; do
    note "transfer iteration ($v, $FIG_PRESET cyclegan $FIG_TF_KWARGS, $FIG_SIZE px, batch $FIG_TF_BATCH):" \
         "$(sed -n 's/.*"line": "\([^"]*\)".*/\1/p' "$WORK/figures/transfer_iteration_$v.json")"
  done
}

fig_segmenters() {
  local models=()
  # shellcheck disable=SC2206
  [ -z "$FIG_SEG_MODELS" ] || models=(--models $FIG_SEG_MODELS)
  mkdir -p "$WORK/figures"
  bounded 180 "$PY" benchmarks/bench_segmenters.py "${DEVICE_FLAGS[@]}" "${models[@]}" --size "$FIG_SIZE" \
      --batch-size "$FIG_SEG_BATCH" --iterations "$FIG_SEG_ITERS" --warmup "$FIG_SEG_WARMUP" \
      --json "$WORK/figures/segmenters.json"
  note "${FIG_SEG_MODELS:-every architecture} at $FIG_SIZE px"
  helper digest "$WORK/figures/segmenters.json"
}

fig_jsrt() {
  [ -d "$DATA/jsrt/images" ] || skip "no real JSRT data at $DATA/jsrt (set CXR_DATA or carry gpu_carry/data)"
  local run="${FIG_JSRT_RUN:-$WORK/jsrt_unet${FIG_JSRT_SIZE}_seed0}" resume=() rc=0 epoch log="$WORK/jsrt_unet.txt"
  [ ! -f "$run/checkpoints/last.pt" ] || resume=(--resume)
  local args=(segment train --data "$DATA/jsrt" --classes "lungs,heart,clavicles" --size "$FIG_JSRT_SIZE" --model unet
              --model-kwargs "$FIG_JSRT_KWARGS" --loss dice_bce --epochs "$FIG_JSRT_EPOCHS" --batch-size 8 --lr 1e-3
              --scheduler cosine --augment --augment-kwargs '{"p_elastic": 0.0}' --checkpoint-every "$FIG_JSRT_CKPT"
              --seed 0 -q --run-dir "$run" "${DEVICE_FLAGS[@]}" "${resume[@]}")
  [ -z "$FIG_JSRT_LIMIT" ] || args+=(--limit "$FIG_JSRT_LIMIT")
  cpu || args+=(--channels-last --amp)
  bounded 600 "${CLI[@]}" "${args[@]}" > "$log" 2>&1 || rc=$?
  cat "$log"
  mkdir -p "$WORK/figures"
  [ ! -f "$run/metrics.json" ] || cp "$run/metrics.json" "$WORK/figures/jsrt_metrics.json"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    epoch=$(grep -o '"epoch": [0-9]*' "$run/history.json" 2> /dev/null | tail -1 | grep -o '[0-9]*$')
    echo "TIMEOUT: the JSRT run reached epoch ${epoch:-0} of $FIG_JSRT_EPOCHS within FIG_BUDGET=$FIG_BUDGET s;" \
         "FIG_JSRT_RUN=runs/gpu_check_jsrt keeps its folder between calls on a warm machine, and resumes it"
    exit 124
  fi
  [ "$rc" -eq 0 ] || fail "segment train on JSRT failed (exit $rc): $(last_line "$log")"
  note "JSRT $FIG_JSRT_SIZE px, $FIG_JSRT_EPOCHS epochs, test Jaccard (%) $(awk -F'|' '$2 ~ /jaccard/ {
      gsub(/ /, "", $3); split($4, v, " "); printf "%s %s, ", $3, v[1] }' "$log")$(grep 'best epoch' "$log")"
}

stage_figures() {
  begin_stage
  if preflight; then
    path translation fig_translation
    path transfer_iteration fig_transfer_iteration
    path segmenters fig_segmenters
    path jsrt_unet fig_jsrt
  fi
  finish_stage
}

# ------------------------------------------------------------------------------------------------------- table
table_data() {  # all of the real data, else TABLE_N phantoms per domain
  local out
  if out=$(helper data --root "$TABLE_ROOT/data" --n 0 --real "$DATA" --mode real 2>&1); then
    echo "$out"
    return 0
  fi
  echo "no real data at $DATA: phantoms instead"
  helper data --root "$TABLE_ROOT/data" --n "$TABLE_N" --size "$TABLE_SIZE" --mode phantom
}

table_restore() {
  [ -f "$TABLE_STATE" ] || skip "no earlier state at TABLE_STATE=$TABLE_STATE: $TABLE_ROOT starts empty"
  local tmp
  tmp=$(mktemp -d)
  tar -xzf "$TABLE_STATE" -C "$tmp" work/table_state || fail "$TABLE_STATE holds no work/table_state/"
  "$PY" - "$tmp/work/table_state" "$TABLE_ROOT/sweep" <<'EOF'
import json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
rows = {}
for path in (dst / "results.jsonl", src / "results.jsonl"):
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.strip():
            rows.setdefault(json.loads(line)["key"], line)
for f in src.rglob("*"):
    if f.is_file() and f.name != "results.jsonl" and not (dst / f.relative_to(src)).exists():
        (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / f.relative_to(src))
dst.mkdir(parents=True, exist_ok=True)
(dst / "results.jsonl").write_text("".join(line + "\n" for line in rows.values()))
print(f"NOTE: restored {len(rows)} finished cell(s) into {dst}; M_A and the warm-up are retrained here (on CUDA not "
      "bit for bit those of the earlier part)")
EOF
  rm -rf "$tmp"
}

table_part() {
  local fractions=$1 rc=0 finished
  experiment_args "$WORK/table.json" "$TABLE_SIZE" "$TABLE_PRESET" "$TABLE_SEG_KWARGS" "$TABLE_TRANSLATOR_KWARGS" \
      "$TABLE_ITERATIONS" "$TABLE_WARMUP" "$TABLE_SPE" "$TABLE_BATCH" "$TABLE_SOURCE_ITERS" "$TABLE_FT_ITERS" \
      "lungs,heart,clavicles"
  local args=(experiment sweep --source "$DATA_SOURCE" --target "$DATA_TARGET" --out "$TABLE_ROOT/sweep"
              --classes lungs --methods "$TABLE_METHODS" --fractions "$fractions" --seeds "$TABLE_SEEDS"
              --jobs "$TABLE_JOBS" "${EXP_ARGS[@]}" "${DEVICE_FLAGS[@]}")
  echo "fractions $fractions, at most $TABLE_TIMEOUT s: ${CLI[*]} ${args[*]}"
  timeout -k 15 "$TABLE_TIMEOUT" "${CLI[@]}" "${args[@]}" > "$WORK/table_part$PART.log" 2>&1 || rc=$?
  cat "$WORK/table_part$PART.log"
  finished=$(grep -c . "$TABLE_ROOT/sweep/results.jsonl" 2> /dev/null || echo 0)
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "TIMEOUT: fractions $fractions stopped after $TABLE_TIMEOUT s with $finished cell(s) finished in all;" \
         "run part $PART again to go on"
    exit 124
  fi
  [ "$rc" -eq 0 ] || fail "experiment sweep failed (exit $rc): $(last_line "$WORK/table_part$PART.log")"
  note "fractions $fractions finished; $finished cell(s) in results.jsonl"
}

table_report() {
  local state="$WORK/table_state"
  [ -f "$TABLE_ROOT/sweep/results.jsonl" ] || fail "no $TABLE_ROOT/sweep/results.jsonl yet: run a part first"
  "${CLI[@]}" experiment report --runs "$TABLE_ROOT/sweep" --out "$WORK/report"
  mkdir -p "$state"
  (cd "$TABLE_ROOT/sweep" && find . -maxdepth 1 -type f -name '*.json*' -exec cp {} "$state/" \; &&
   find cells -type f \( -name metrics.json -o -name per_image.csv -o -name config.json -o -name splits.json \
       -o -name overlays.png \) -print0 | xargs -0 -r cp --parents -t "$state")
  note "report of $(grep -c . "$TABLE_ROOT/sweep/results.jsonl") cell(s); the state for a fresh machine is" \
       "work/table_state in results.tar.gz"
}

stage_table() {
  local groups i
  begin_stage
  if preflight && path data table_data && load_data "$TABLE_ROOT/data/data.env"; then
    [ -f "$TABLE_ROOT/sweep/results.jsonl" ] || path restore table_restore
    IFS=';' read -r -a groups <<< "$TABLE_PARTS"
    case "$PART" in
      report) ;;
      all) for i in "${!groups[@]}"; do PART=$((i + 1)) path "part$((i + 1))" table_part "${groups[$i]}"; done ;;
      *) if [[ "$PART" =~ ^[0-9]+$ ]] && [ "$PART" -ge 1 ] && [ "$PART" -le "${#groups[@]}" ]; then
           path "part$PART" table_part "${groups[$((PART - 1))]}"
         else
           path part fail "expected PART 1..${#groups[@]} (TABLE_PARTS=$TABLE_PARTS), all or report, got $PART"
         fi ;;
    esac
    path report table_report
  fi
  finish_stage
}

# ------------------------------------------------------------------------------------------------------- main
case "$STAGE" in
  install) stage_install ;;
  smoke) stage_smoke ;;
  figures) stage_figures ;;
  table) stage_table ;;
  help | -h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "expected a stage among install, smoke, figures, table, got '$STAGE' (bash $0 help)" >&2; exit 2 ;;
esac
