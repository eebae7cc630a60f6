"""CPU benchmark: a small U-Net trained at 128x128 on real JSRT, held-out Jaccard and wall time.

Trains on the 60% training split of JSRT (train/val/test 60/20/20, seed 0, ``segmentation.data.splits.split_ids``),
keeps the weights with the best validation Dice, and reports the lung, heart and clavicle Jaccard on the 20%
test split, with the wall time of loading, training and evaluation. It runs exactly what
``cxr-transfer segment train`` runs (:func:`segmentation.training.train_from_folder`).

Usage (from the repository root; the data folder is $CXR_DATA, default ../shared/data)::

    nice python benchmarks/bench_segment_cpu.py --epochs 25 --threads 1 --out /tmp/bench_segment_cpu.json

The equivalent CLI call::

    cxr-transfer segment train --data ../shared/data/jsrt --classes lungs,heart,clavicles --size 128 \\
        --model unet --model-kwargs '{"depth": 4, "base_channels": 8}' --epochs 25 --batch-size 8 --lr 3e-3 \\
        --scheduler cosine --device cpu --seed 0 --run-dir runs/bench_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segmentation.training import SegmentationConfig, format_summary, train_from_folder  # noqa: E402


def main() -> None:
    env = os.environ.get("CXR_DATA")
    default_data = (Path(env) if env else REPO.parent / "shared" / "data") / "jsrt"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data, help="prepared JSRT folder")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--run-dir", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = SegmentationConfig(model="unet", model_kwargs={"depth": args.depth, "base_channels": args.base_channels},
                                classes=("lungs", "heart", "clavicles"), size=args.size, epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr, scheduler="cosine", augment=args.augment,
                                seed=args.seed, device="cpu", progress=False)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="bench_segment_cpu_"))
    start = time.perf_counter()
    metrics = train_from_folder(args.data, config, run_dir, fractions=(0.6, 0.2, 0.2))
    wall = time.perf_counter() - start
    summary = metrics["test_summary"]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{args.threads}, no GPU",
        "torch": torch.__version__,
        "config": {k: v for k, v in vars(args).items() if k not in ("data", "run_dir", "out")},
        "splits": metrics["splits"],
        "num_parameters": metrics["num_parameters"],
        "best_epoch": metrics["best_epoch"],
        "best_val_dice": metrics["best_val_dice"],
        "jaccard_test": {c: {"mean": summary[f"jaccard/{c}"]["mean"], "std": summary[f"jaccard/{c}"]["std"]}
                         for c in config.classes},
        "dice_test": {c: summary[f"dice/{c}"]["mean"] for c in config.classes},
        "train_wall_time_s": metrics["train_wall_time_s"],
        "total_wall_time_s": wall,
        "run_dir": str(run_dir),
    }
    print(format_summary(summary))
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
