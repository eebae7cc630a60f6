"""One small JSRT -> Montgomery cell per method at 64 px, to compare two commits' Jaccard side by side.

Usage (old commit against new, same machine, one thread each):
    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python benchmarks/cell_repro.py /tmp/repro_old source_only,finetune
    PYTHONPATH=.        python benchmarks/cell_repro.py /tmp/repro_new source_only,finetune

Prints one line per method with the cell's summary (``jaccard`` is the mean over the 27 test images); finetune
runs at 10% labels, the others at 0%. Settings: 64 px, U-Net depth 3 / base 8, 150 source steps, 60 fine-tuning
steps, tiny CycleGAN, 20 transfer iterations after 10 warm-up.
"""

import json
import os
import sys

import torch

from transfer.cell import run_cell
from transfer.config import ExperimentConfig, TransferConfig

torch.set_num_threads(1)
out, methods = sys.argv[1], sys.argv[2].split(",")
data = os.environ.get("CXR_DATA", "/work/shared/data")
results = {}
for method in methods:
    exp = ExperimentConfig(method=method, fraction=0.1 if method == "finetune" else 0.0, seed=0,
                           source=f"{data}/jsrt", target=f"{data}/montgomery", size=64, out=out,
                           translator_preset="tiny", segmenter_kwargs={"depth": 3, "base_channels": 8},
                           source_iterations=150, finetune_iterations=60, device="cpu",
                           transfer=TransferConfig(iterations=20, warmup_iterations=10, steps_per_epoch=10,
                                                   batch_size=4))
    results[method] = run_cell(exp)
    print(method, {k: v for k, v in results[method].items() if isinstance(v, (int, float))}, flush=True)
with open(os.path.join(out, "repro.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, default=str)
