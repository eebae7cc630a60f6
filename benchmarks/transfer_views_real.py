"""Test-time view averaging of a finished transfer cell on the real target test split (no retraining).

Loads a transfer cell written by ``cxr-transfer experiment run|sweep`` (its selected EMA translator.pt / segmenter.pt,
its config.json and splits.json) and the cached source-only M_A of the same sweep, then scores on the cell's target
test split the per-image Jaccard of each prediction variant of ``transfer.orchestrator.predict_views``: the paper's
M_A(G_BA(b)), averages with the direct view M_A(b) and with horizontal flips, and source-only M_A(b) (+ flip) as the
baselines. Prints mean +- sd (per-image), failures (< 0.8) and the Wilcoxon test of each variant against source-only.

Usage: python benchmarks/transfer_views_real.py [--cell runs/cpu_sweep_128/cells/transfer/f0.0000/s0-<hash>]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wilcoxon

T, D, TF, DF = "translated", "direct", "translated_flip", "direct_flip"
VARIANTS = {
    "source-only M_A(b)": ("source", (D,)),
    "source-only + flip": ("source", (D, DF)),
    "transfer: paper M_A(G_BA(b))": ("adapted", (T,)),
    "transfer: views T+TF": ("adapted", (T, TF)),
    "transfer: views T+D": ("adapted", (T, D)),
    "transfer: views T+D+TF+DF": ("adapted", (T, D, TF, DF)),
    "transfer: direct only (adapted M_A(b))": ("adapted", (D,)),
}


def main() -> None:
    from runtime.config import config_from_dict
    from segmentation.data.preprocessing import normalize
    from segmentation.metrics import evaluate_masks
    from segmentation.training import load_segmenter, probabilities_to_masks
    from transfer.config import ExperimentConfig, without_removed
    from transfer.prediction import predict_views
    from transfer.methods.transfer import ADAPTED_SEGMENTER, ADAPTED_TRANSLATOR
    from transfer.shared import load_cell_data
    from translation import load_translator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", required=True, help="a transfer cell folder, e.g. runs/cpu_sweep_128/cells/transfer/f0.0000/s0-<hash>")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cell = Path(args.cell)
    exp = config_from_dict(ExperimentConfig, without_removed(json.loads((cell / "config.json").read_text())))
    _, target = load_cell_data(exp)
    test = target.subset(json.loads((cell / "splits.json").read_text())["test"])
    translator, _ = load_translator(cell / ADAPTED_TRANSLATOR, map_location="cpu")
    adapted, seg_config, _ = load_segmenter(cell / ADAPTED_SEGMENTER, map_location="cpu")
    source, _, _ = load_segmenter(Path(exp.out) / "source" / f"s{exp.seed}" / "segmenter.pt", map_location="cpu")
    models = {"source": source, "adapted": adapted}

    def norm(x):
        return normalize(x, exp.transfer.normalize_mode)

    scores = {}
    for name, (which, views) in VARIANTS.items():
        probs = torch.cat([predict_views(translator, models[which], test.images[i:i + 8], norm, views)
                           for i in range(0, len(test), 8)])
        rows = evaluate_masks(probabilities_to_masks(probs, seg_config), test.masks > 0.5, test.classes)
        scores[name] = np.array([np.mean([r[f"jaccard/{c}"] for c in test.classes]) for r in rows]) * 100
    base = scores["source-only M_A(b)"]
    print(f"cell {cell}: {len(test)} test images, size {exp.size}\n")
    print("| prediction | Jaccard mean +- sd | failures (< 80) | min | median diff vs source-only | Wilcoxon p |")
    print("|---|---|---|---|---|---|")
    for name, s in scores.items():
        diff = s - base
        p = wilcoxon(s, base).pvalue if np.any(diff != 0) else float("nan")
        print(f"| {name} | {s.mean():.2f} +- {s.std(ddof=1):.2f} | {(s < 80).sum()} | {s.min():.1f} | "
              f"{np.median(diff):+.2f} | {p:.3g} |")


if __name__ == "__main__":
    main()
