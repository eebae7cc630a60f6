"""adaptft's two stages and their average, on the folds' validation images only (issue 12's rule for a default).

``adaptft`` predicts with its fine-tuned stage; its cells also keep the self-trained student it started from. This
script scores, on each fold's **validation** images (never its test images), the student (``adapted``: its direct
views, as the cell predicts it), the fine-tuned model (``fine_tuned``: the cell's prediction) and the mean of their
probabilities (``average``; ``average_direct``: the student without its flip view, what ``segment predict`` with
both model files computes), with the dark gate and the post-processing of the cells. The first two must equal the
cells' own ``val_stages`` (checked and printed; the average too where a cell logged it). A default for adaptft's
prediction may be chosen from this table.

Usage: python benchmarks/adaptft_stages_validation.py SWEEP_OUT [--seed S ...] [--json OUT.json]
SWEEP_OUT is a sweep folder with finished adaptft cells (``cells/adaptft/f<fraction>/s<seed>-k<fold>-*``), its
``sweep_config.json``, ``folds_k<K>.json`` and ``results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from runtime.config import config_from_dict
from segmentation.config import SegmentationConfig
from segmentation.inference import build_segmenter, predict_probabilities, probabilities_to_masks
from segmentation.metrics import evaluate_masks
from segmentation.postprocess import gate_dark
from transfer.methods.selftrain import DIRECT_VIEWS, IdentityTranslator
from transfer.prediction import predict_views
from transfer.results import RESULTS, read_results
from transfer.shared import cell_splits, load_cell_data, normalizer

from sweep_folder import add_data_options, sweep_experiment

VARIANTS = ("adapted", "fine_tuned", "average", "average_direct")


def _jaccard(probs: torch.Tensor, images: torch.Tensor, masks: torch.Tensor, config: SegmentationConfig,
             classes: tuple[str, ...]) -> float:
    probs = gate_dark(probs, images, config.dark_gate, config.mode)
    rows = evaluate_masks(probabilities_to_masks(probs, config).cpu(), masks > 0.5, classes)
    return float(np.mean([np.mean([r[f"jaccard/{c}"] for c in classes]) for r in rows]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, action="append", help="only this seed's cells (repeatable)")
    parser.add_argument("--json", type=Path)
    add_data_options(parser)
    args = parser.parse_args(argv)
    try:
        exp = sweep_experiment(args.out, args.source, args.target)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results_path = args.out / RESULTS
    cells = [c for c in read_results(results_path) if c.get("method") == "adaptft" and "val_stages" in c
             and (not args.seed or int(c["seed"]) in args.seed)]
    if not cells:
        print(f"error: no finished adaptft cell in {results_path}; run the sweep with METHODS=adaptft first",
              file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    _, target = load_cell_data(exp)
    classes = tuple(exp.classes)
    norm = normalizer(exp)
    table: dict[float, dict[str, list[float]]] = {}
    worst = 0.0
    for cell in sorted(cells, key=lambda c: (c["fraction"], c["seed"], c["fold"])):
        fraction, seed, fold = float(cell["fraction"]), int(cell["seed"]), int(cell["fold"])
        hits = sorted(args.out.glob(f"cells/adaptft/f{fraction:.4f}/s{seed}-k{fold}-{cell['identity']}"))
        if len(hits) != 1:
            print(f"error: the cell folder of {cell['key']} fold {fold} is not in {args.out}/cells", file=sys.stderr)
            return 2
        folder = hits[0]
        tuned = torch.load(folder / "segment" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        config = config_from_dict(SegmentationConfig, dict(tuned["config"]))
        fine_tuned = build_segmenter(config)
        fine_tuned.load_state_dict(tuned["model"])
        student = build_segmenter(config)
        student.load_state_dict(torch.load(folder / "selftrain" / "checkpoints" / "best.pt", map_location="cpu",
                                           weights_only=True)["segmenter"])
        val = target.subset(cell_splits(exp.replace(fold=fold, seed=seed, fraction=fraction), target.ids)["val"])
        p_adapted = predict_views(IdentityTranslator(), student.eval(), val.images, norm, DIRECT_VIEWS).cpu()
        p_tuned = predict_probabilities(fine_tuned.eval(), val.images, config).cpu()
        scores = {"adapted": _jaccard(p_adapted, val.images, val.masks, config, classes),
                  "fine_tuned": _jaccard(p_tuned, val.images, val.masks, config, classes),
                  "average": _jaccard((p_adapted + p_tuned) / 2, val.images, val.masks, config, classes),
                  "average_direct": _jaccard((predict_probabilities(student, val.images, config).cpu() + p_tuned) / 2,
                                             val.images, val.masks, config, classes)}
        for name in (n for n in cell["val_stages"] if n in scores):
            worst = max(worst, abs(scores[name] - float(cell["val_stages"][name])))
        for name, value in scores.items():
            table.setdefault(fraction, {v: [] for v in VARIANTS})[name].append(value)
        print(f"{fraction:g} s{seed} k{fold}: " + ", ".join(f"{n} {100 * v:.2f}" for n, v in scores.items()),
              file=sys.stderr)
    print("| labels | cells | " + " | ".join(VARIANTS) + " | folds where average beats both stages |")
    print("|---" * (3 + len(VARIANTS)) + "|")
    for fraction, scores in sorted(table.items()):
        wins = sum(a > max(x, y) for a, x, y in zip(scores["average"], scores["adapted"], scores["fine_tuned"]))
        print(f"| {100 * fraction:g}% | {len(scores['average'])} | "
              + " | ".join(f"{100 * np.mean(scores[v]):.2f}" for v in VARIANTS) + f" | {wins} |")
    print(f"validation Jaccard %, mean over cells; largest difference from the cells' own val_stages: {worst:.1e}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in table.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
