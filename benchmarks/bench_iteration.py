"""Seconds per transfer-loop iteration at the CPU protocol, on any commit (it uses only the long-standing API).

Builds the orchestrator on real JSRT -> Montgomery images (or phantoms with --phantoms), runs warm-up-free timed
iterations with self-training on (the heavier half of a run), and prints one JSON line: median and mean seconds per
iteration over --repeats blocks of --iterations iterations, after --discard untimed ones.

Usage (old commit against new, side by side on one machine, one thread each):
    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python benchmarks/bench_iteration.py --label old
    python benchmarks/bench_iteration.py --label new

On a GPU (benchmarks/gpu_check.sh figures, path transfer_iteration): ``--device cuda --translator-preset default
--segmenter-kwargs '{}' --size 256`` times the real loop's iteration with bf16 autocast (``TransferConfig.amp``) and,
with ``--channels-last`` / ``--compile``, the loop's own speed paths; the JSON line adds images per second (the
batch's source and target images through all three steps) and the seconds of the untimed first iterations (where
``--compile`` compiles). The old-commit comparison uses none of these flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from segmentation.data.dataset import load_dataset
from segmentation.data.phantoms import make_phantoms
from segmentation.models import create_segmenter
from transfer.config import TransferConfig
import transfer.orchestrator as orchestrator
from transfer.orchestrator import EMA, TransferOrchestrator
from translation import create_translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="run")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--discard", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phantoms", action="store_true", help="phantoms instead of the real data")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--translator-preset", default="tiny")
    parser.add_argument("--translator-kwargs", default="{}", help="JSON keywords of the translator")
    parser.add_argument("--segmenter-kwargs", default='{"depth": 4, "base_channels": 8}', help="JSON, U-Net keywords")
    parser.add_argument("--channels-last", action="store_true", help="the orchestrator's channels_last (new only)")
    parser.add_argument("--compile", action="store_true", help="the orchestrator's torch.compile (new only)")
    parser.add_argument("--per-step", action="store_true",
                        help="also time each step kind (wraps the orchestrator's step functions; new commits only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("CXR_DATA", "../shared/data"))  # set CXR_DATA when running a copy from elsewhere
    if args.phantoms or not (data / "jsrt").is_dir():
        source, target = make_phantoms(48, args.size, "a", 0), make_phantoms(48, args.size, "b", 1)
    else:
        source = load_dataset(data / "jsrt", classes=("lungs",), size=args.size)
        target = load_dataset(data / "montgomery", classes=("lungs",), size=args.size)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    translator = create_translator("cyclegan", args.translator_preset, **json.loads(args.translator_kwargs)).to(device)
    segmenter = create_segmenter("unet", in_channels=1, out_channels=source.masks.shape[1],
                                 **json.loads(args.segmenter_kwargs)).to(device)
    speed = {k: True for k in ("channels_last", "compile") if getattr(args, k)}  # only when asked: old commits run
    config = TransferConfig(iterations=1000, warmup_iterations=0, steps_per_epoch=1000, batch_size=args.batch_size,
                            pseudo_start=0.0)
    steps: dict[str, float] = {}
    if args.per_step:
        for name in ("discriminative_step", "generative_step", "supervised_step"):
            def timed(*a, _fn=getattr(orchestrator, name), _name=name, **k):  # noqa: ANN002, ANN003, ANN202
                start = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    steps[_name] = steps.get(_name, 0.0) + time.perf_counter() - start
            setattr(orchestrator, name, timed)
    orch = TransferOrchestrator(translator, segmenter, config, **speed)
    orch._make_iterators(source.images, source.masks, target.images, None, 10)
    orch.ema_translator, orch.ema_segmenter = EMA(translator, config.ema_decay), EMA(segmenter, config.ema_decay)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for _ in range(args.discard):
        orch.iteration()
    sync()
    first = time.perf_counter() - start
    steps.clear()
    blocks = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.iterations):
            orch.iteration()
        sync()
        blocks.append((time.perf_counter() - start) / args.iterations)
    timed_iterations = args.iterations * args.repeats
    median = statistics.median(blocks)
    print(json.dumps({"label": args.label, "size": args.size, "batch_size": args.batch_size, "threads": args.threads,
                      "device": str(device), "translator_preset": args.translator_preset, **speed,
                      "per_step_s": {k: v / timed_iterations for k, v in steps.items()},
                      "median_s_per_iteration": median, "mean": statistics.mean(blocks),
                      "images_per_s": 2 * args.batch_size / median, "first_iterations_s": first,
                      "blocks": blocks, "line": f"{median:.3f} s/it, {2 * args.batch_size / median:.1f} images/s, "
                                                f"first {args.discard} iterations {first:.1f} s"}))


if __name__ == "__main__":
    main()
