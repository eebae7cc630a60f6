"""Is the dark gate worth turning on? Decided on validation images only (issue 12's rule).

For every fold of a cross-validated sweep folder, the sweep's source segmenter M_A scores that fold's *validation*
images (never its test images) with the gate off and at a few levels; the labelled source validation images show
whether a level removes any true lung pixel. Prints a markdown table and JSON.

Usage: python benchmarks/dark_gate_validation.py SWEEP_OUT [--levels 0.01,0.02,0.05] [--json OUT.json]
       [--source DIR] [--target DIR]   (default: $CXR_DATA/jsrt and $CXR_DATA/montgomery)
SWEEP_OUT is a folder written by ``experiment sweep --folds K`` (its ``sweep_config.json``, ``folds_k<K>.json`` and
``source/s<seed>/segmenter.pt``), e.g. the OUT of ``benchmarks/crossval_cpu.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from segmentation.inference import predict_probabilities, probabilities_to_masks
from segmentation.metrics import evaluate_masks
from segmentation.postprocess import dark_pixels
from transfer.shared import cell_splits, load_cell_data, source_splits

from sweep_folder import add_data_options, source_model, sweep_experiment

FAILURE = 0.7
"""Jaccard below which an image counts as a failure (the report's threshold)."""


def _scores(model, config, images, masks, classes) -> np.ndarray:
    rows = evaluate_masks(probabilities_to_masks(predict_probabilities(model, images, config), config),
                          masks > 0.5, classes)
    return np.array([np.mean([r[f"jaccard/{c}"] for c in classes]) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--levels", default="0.01,0.02,0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    add_data_options(parser)
    args = parser.parse_args(argv)
    levels = [float(v) for v in args.levels.split(",")]
    try:
        exp = sweep_experiment(args.out, args.source, args.target, seed=args.seed)
        model, config = source_model(exp)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    source, target = load_cell_data(exp)
    index = [exp.model_classes.index(c) for c in exp.classes]
    classes = tuple(exp.classes)
    src_val = source.subset(source_splits(source, exp)["val"])
    lost = {level: float(((src_val.masks[:, index] > 0.5) & dark_pixels(src_val.images, level)).sum()
                         / (src_val.masks[:, index] > 0.5).sum()) for level in levels}
    rows, result = [], {"levels": levels, "source_val_lung_share_removed": lost, "folds": []}
    for fold in range(exp.folds):
        val = target.subset(cell_splits(exp.replace(fold=fold), target.ids)["val"])
        off = _scores(model, config.replace(dark_gate=0.0), val.images, val.masks, classes)
        fold_row = {"fold": fold, "n_val": len(val), "off": float(off.mean()),
                    "off_failures": int((off < FAILURE).sum())}
        for level in levels:
            on = _scores(model, config.replace(dark_gate=level), val.images, val.masks, classes)
            fold_row[str(level)] = float(on.mean())
            fold_row[f"{level}_failures"] = int((on < FAILURE).sum())
        result["folds"].append(fold_row)
        rows.append(fold_row)
    head = "| fold | val images | off | " + " | ".join(f"gate {v}" for v in levels) + " |"
    print(head)
    print("|" + "---|" * (3 + len(levels)))
    for r in rows:
        cells = [f"{100 * r['off']:.2f} ({r['off_failures']})"]
        cells += [f"{100 * r[str(v)]:.2f} ({r[f'{v}_failures']})" for v in levels]
        print(f"| {r['fold']} | {r['n_val']} | " + " | ".join(cells) + " |")
    print("validation Jaccard % of M_A (failures < 70 in brackets); source validation lung share removed: "
          + ", ".join(f"{v}: {lost[v]:.2e}" for v in levels))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
