#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one command, for a session that is lent a GPU machine.
#
# The device machine receives only the repository, so the data and the kornia wheel travel as ignored folders:
#   echo /gpu_carry/ >> .git/info/exclude
#   mkdir -p gpu_carry/wheels && cp -r ../shared/data/jsrt ../shared/data/montgomery gpu_carry/
#   pip download --no-deps -d gpu_carry/wheels kornia kornia-rs
# then run (device tool, carry ["gpu_carry"]):
#   pip install -q --no-deps gpu_carry/wheels/*.whl && pip install -q --no-deps -e . && \
#     CXR_DATA=gpu_carry bash benchmarks/gpu_figures.sh "$OUT" quick
# Stages: "quick" (throughput + JSRT 256 + one-seed sweep, fits one 10-minute call) or "sweep3" (three seeds).
set -euo pipefail
OUT="${1:-runs/gpu}"
STAGE="${2:-quick}"
DATA="${CXR_DATA:-../shared/data}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" || true

if [ "$STAGE" = quick ]; then
  # translation step throughput (issue 4: ResNet-9 CycleGAN at 256, target >= 120 images/s)
  python benchmarks/bench_translation.py --device cuda --models cyclegan --presets default --size 256 \
      --batch-size 1 --iterations 30 --warmup 10 --out "$OUT/translation_fp32_b1.json"
  python benchmarks/bench_translation.py --device cuda --models cyclegan --presets default --size 256 \
      --batch-size 8 16 32 --amp --channels-last --iterations 30 --warmup 10 --out "$OUT/translation_bf16.json"
  # segmenter throughput (issue 3)
  python benchmarks/bench_segmenters.py --device cuda --size 256 --batch-size 16 --iterations 20 --warmup 5 \
      --json "$OUT/segmenters_gpu.json"
  # JSRT 256 lungs/heart/clavicles (issue 3: target 96.5 / 90.5 / 88.5 Jaccard)
  cxr-transfer segment train --data "$DATA/jsrt" --classes lungs,heart,clavicles --size 256 \
      --model unet --model-kwargs '{"depth": 4, "base_channels": 32}' --loss dice_bce \
      --epochs 150 --batch-size 8 --lr 1e-3 --scheduler cosine --augment --augment-kwargs '{"p_elastic": 0.0}' \
      --channels-last --amp --checkpoint-every 25 --device cuda --seed 0 --run-dir "$OUT/jsrt_unet256_seed0" \
      2>&1 | tail -20 | tee "$OUT/jsrt_unet256_seed0.txt"
fi

SEEDS=0
[ "$STAGE" = sweep3 ] && SEEDS=0,1,2
# the label-fraction table (issue 5), JSRT -> Montgomery lungs at 256
start=$(date +%s)
cxr-transfer experiment sweep --source "$DATA/jsrt" --target "$DATA/montgomery" --out "$OUT/sweep" --size 256 \
    --source-classes lungs,heart,clavicles \
    --preset default --translator-kwargs '{"n_blocks": 6, "base_channels": 32}' \
    --iterations 3000 --warmup 1000 --steps-per-epoch 250 --batch-size 8 \
    --source-iterations 3000 --finetune-iterations 1500 \
    --methods transfer,finetune,scratch,source_only,histmatch --fractions 0,0.0125,0.025,0.05,0.1,0.2,0.5,1 \
    --seeds "$SEEDS" --jobs 4 --device cuda
echo "sweep wall time: $(( $(date +%s) - start )) s" | tee "$OUT/sweep_time.txt"
cxr-transfer experiment report --runs "$OUT/sweep" --out "$OUT/report"
