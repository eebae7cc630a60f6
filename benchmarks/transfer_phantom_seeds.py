"""Transfer at 0% labels vs source-only on phantom domains, over seeds, at the CPU scale of the tests.

Runs ``phantom_transfer`` of tests/transfer/test_orchestrator.py (32 px, U-Net depth 3 / 8 channels trained for 200
steps on domain A, tiny CycleGAN, 30 warm-up + 60 transfer iterations, label-free selection) and prints, per seed,
mean / sd / failures (Jaccard < 0.5) / minimum of the per-image test Jaccard for source-only and transfer.

Usage: python benchmarks/transfer_phantom_seeds.py [--target b] [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "transfer"))
from test_orchestrator import phantom_transfer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="b", help="phantom domain of the target (b or c)")
    parser.add_argument("--seeds", default="0,1,2,3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| seed | source-only mean | transfer mean | source-only sd | transfer sd | failures (<0.5) | min | s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        so, tr = (np.array(v) for v in phantom_transfer(seed, target=args.target))
        print(f"| {seed} | {so.mean():.3f} | {tr.mean():.3f} | {so.std(ddof=1):.3f} | {tr.std(ddof=1):.3f} | "
              f"{(so < 0.5).sum()} -> {(tr < 0.5).sum()} | {so.min():.3f} -> {tr.min():.3f} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
