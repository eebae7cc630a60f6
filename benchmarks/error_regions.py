"""Where are the errors? Missed and extra lung by region of the true lungs, per model, on a cross-validated sweep.

Issue 12 asks to find out where the errors are before deciding what to build: if the source model's remaining error
on the images it does not fail sits in the same place on every image (one side of the lung boundary, one region),
it is a difference of annotation convention between the source and target masks, which no appearance translation
can close and a few labelled target images can teach. For every fold of a sweep folder this script predicts that
fold's **test** images (the final evaluation: nothing here chooses a default or a setting) with the sweep's source
model M_A and with the models of finished cells, and splits each image's errors by region of its true lung mask:

- rows: five equal bands of the true lungs' bounding box, apex (1) to base (5), and the rows outside it;
- columns: for each lung (the halves of the bounding box left and right of its centre), its lateral, middle and
  medial thirds (medial: towards the mediastinum and the heart).

Missed lung (false negatives) and extra lung (false positives) are given as a share of the image's true lung area,
averaged over the images that no model fails (Jaccard >= 70), beside the predicted / true area ratio. Each model's
Jaccard is also checked against the sweep's own per-image result of that cell (``per_image.csv``) when given.

Usage: python benchmarks/error_regions.py SWEEP_OUT [--model NAME=PATTERN ...] [--json OUT.json]
PATTERN is a checkpoint path relative to SWEEP_OUT with ``{fold}`` for the fold, e.g.
``adaptft@100=cells/adaptft/f1.0000/s0-k{fold}-*/segment/checkpoints/last.pt`` (a training checkpoint's ``model``
weights, a transfer loop's checkpoint, or a model file of ``segment train``); M_A is always included as
``source_only``. A loop checkpoint is predicted directly (no flip views), so its Jaccard may differ a little from
its cell's, which the check line shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from runtime.config import config_from_dict
from segmentation.config import SegmentationConfig
from segmentation.inference import build_segmenter, load_segmenter, predict_probabilities, probabilities_to_masks
from segmentation.postprocess import gate_dark
from transfer.shared import cell_splits, load_cell_data

from sweep_folder import add_data_options, source_model, sweep_experiment

FAILURE = 0.7
"""Jaccard below which an image counts as a failure (the report's threshold)."""
ROW_BANDS = 5
REGIONS = ([f"rows {i + 1}/{ROW_BANDS}" for i in range(ROW_BANDS)] + ["rows outside"]
           + ["lateral third", "middle third", "medial third"])


def regions(truth: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean maps of the regions of :data:`REGIONS` for one true lung mask (H, W), from its bounding box."""
    h, w = truth.shape
    rows, cols = np.nonzero(truth)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    r = np.arange(h)[:, None].repeat(w, 1)
    c = np.arange(w)[None, :].repeat(h, 0)
    out = {}
    edges = np.linspace(top, bottom, ROW_BANDS + 1)
    for i in range(ROW_BANDS):
        out[f"rows {i + 1}/{ROW_BANDS}"] = (r >= edges[i]) & (r < edges[i + 1])
    out["rows outside"] = (r < top) | (r >= bottom)
    centre = (left + right) / 2
    # distance from the box's outer edge, as a share of the half-box width: 0 lateral .. 1 medial
    depth = np.where(c < centre, (c - left) / max(centre - left, 1), (right - 1 - c) / max(right - 1 - centre, 1))
    depth = np.clip(depth, 0, 1)
    inside = (r >= top) & (r < bottom)
    out["lateral third"] = inside & (depth < 1 / 3)
    out["middle third"] = inside & (depth >= 1 / 3) & (depth < 2 / 3)
    out["medial third"] = inside & (depth >= 2 / 3)
    return out


def image_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Jaccard, predicted / true area, and missed / extra lung per region as a share of the true lung area."""
    area = max(int(truth.sum()), 1)
    union = int((pred | truth).sum())
    row = {"jaccard": float((pred & truth).sum() / union) if union else 1.0, "area_ratio": float(pred.sum() / area)}
    for name, where in regions(truth).items():
        row[f"missed {name}"] = float((truth & ~pred & where).sum() / area)
        row[f"extra {name}"] = float((pred & ~truth & where).sum() / area)
    return row


def _load(path: Path, fallback: SegmentationConfig) -> tuple[torch.nn.Module, SegmentationConfig]:
    """A model from a training checkpoint (``model`` and ``config``), a transfer loop's checkpoint (its
    ``segmenter``, with ``fallback``, M_A's configuration) or a model file."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(blob, dict) and "model" in blob and "config" in blob:
        config = config_from_dict(SegmentationConfig, dict(blob["config"]))
        model = build_segmenter(config)
        model.load_state_dict(blob["model"])
        return model.eval(), config
    if isinstance(blob, dict) and "segmenter" in blob and "iteration" in blob:  # a transfer loop's checkpoint
        model = build_segmenter(fallback)
        model.load_state_dict(blob["segmenter"])
        return model.eval(), fallback
    model, config, _ = load_segmenter(path)
    return model.eval(), config


def _cell_scores(checkpoint: Path) -> dict[str, float]:
    """The per-image Jaccard the sweep wrote for the cell holding ``checkpoint`` (empty when there is none)."""
    for folder in checkpoint.parents:
        table = folder / "per_image.csv"
        if table.is_file():
            with open(table, newline="") as f:
                rows = list(csv.DictReader(f))
            columns = [c for c in (rows[0] if rows else {}) if c.startswith("jaccard/")]
            return {r["id"]: float(np.mean([float(r[c]) for c in columns])) for r in rows} if columns else {}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATTERN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    add_data_options(parser)
    args = parser.parse_args(argv)
    models = {}
    for item in args.model:
        name, sep, pattern = item.partition("=")
        if not sep or "{fold}" not in pattern:
            print(f"error: --model {item!r}: expected NAME=PATTERN with {{fold}} in PATTERN", file=sys.stderr)
            return 2
        models[name] = pattern
    try:
        exp = sweep_experiment(args.out, args.source, args.target, seed=args.seed)
        m_a, ma_config = source_model(exp)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths: dict[str, list[Path]] = {}
    for name, pattern in models.items():
        paths[name] = []
        for fold in range(exp.folds):
            hits = sorted(args.out.glob(pattern.format(fold=fold)))
            if len(hits) != 1:
                print(f"error: --model {name}: {len(hits)} files match {pattern.format(fold=fold)} in {args.out}; "
                      "expected one per fold", file=sys.stderr)
                return 2
            paths[name].append(hits[0])
    torch.set_grad_enabled(False)
    _, target = load_cell_data(exp)
    ma_config = ma_config.replace(dark_gate=exp.dark_gate)
    names = ["source_only", *models]
    per_image: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    worst_check = {n: 0.0 for n in models}
    for fold in range(exp.folds):
        test = target.subset(cell_splits(exp.replace(fold=fold), target.ids)["test"])
        truth = (test.masks[:, 0] > 0.5).numpy() if len(exp.classes) == 1 else (test.masks > 0.5).any(1).numpy()
        for name in names:
            if name == "source_only":
                model, config = m_a, ma_config
            else:
                model, config = _load(paths[name][fold], ma_config)
            probs = gate_dark(predict_probabilities(model.eval(), test.images, config).cpu(), test.images,
                              config.dark_gate, config.mode)
            masks = probabilities_to_masks(probs, config).cpu().numpy() > 0.5
            pred = masks[:, 0] if masks.shape[1] == 1 else masks.any(1)
            for i, image_id in enumerate(test.ids):
                per_image[name][image_id] = image_errors(pred[i], truth[i])
            if name != "source_only":
                recorded = _cell_scores(paths[name][fold])
                diffs = [abs(recorded[i] - per_image[name][i]["jaccard"]) for i in test.ids if i in recorded]
                if diffs:
                    worst_check[name] = max(worst_check[name], max(diffs))
        print(f"fold {fold}: {len(test)} test images", file=sys.stderr)
    ids = sorted(per_image["source_only"])
    kept = [i for i in ids if all(per_image[n][i]["jaccard"] >= FAILURE for n in names)]
    summary = {}
    for name in names:
        rows = [per_image[name][i] for i in kept]
        summary[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        summary[name]["failures"] = sum(per_image[name][i]["jaccard"] < FAILURE for i in ids)
        summary[name]["jaccard_all"] = float(np.mean([per_image[name][i]["jaccard"] for i in ids]))
    print(f"{len(ids)} test images, {len(kept)} that no model fails (Jaccard >= {100 * FAILURE:g})\n")
    print("| region | " + " | ".join(f"{n} missed | {n} extra" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for region in REGIONS:
        print(f"| {region} | " + " | ".join(f"{100 * summary[n][f'missed {region}']:.2f} | "
                                            f"{100 * summary[n][f'extra {region}']:.2f}" for n in names) + " |")
    total = {n: (sum(summary[n][f"missed rows {i + 1}/{ROW_BANDS}"] for i in range(ROW_BANDS))
                 + summary[n]["missed rows outside"],
                 sum(summary[n][f"extra rows {i + 1}/{ROW_BANDS}"] for i in range(ROW_BANDS))
                 + summary[n]["extra rows outside"]) for n in names}
    print("| all | " + " | ".join(f"{100 * total[n][0]:.2f} | {100 * total[n][1]:.2f}" for n in names) + " |")
    print("\nmissed / extra lung as % of the true lung area, mean over the kept images")
    for n in names:
        s = summary[n]
        check = "" if n == "source_only" else f"; largest |Jaccard - the cell's own| {worst_check[n]:.1e}"
        print(f"{n}: Jaccard {100 * s['jaccard']:.2f} on the kept images, {100 * s['jaccard_all']:.2f} on all, "
              f"{s['failures']} failures; predicted / true area {s['area_ratio']:.3f}{check}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "kept": kept, "per_image": per_image,
                                         "check": worst_check}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
