"""Which label-free criterion tracks target accuracy? A study of the transfer method's stopping rules on phantoms.

The transfer method drifts (issue 5; docs/results/transfer.md): target accuracy rises, then falls, while the default
label-free criterion keeps rising. This study runs the method at 0% labels for longer than the tests do, evaluates
the EMA models every ``--eval-every`` iterations, and records at each evaluation

* every label-free criterion of :class:`transfer.selection.Selector` (they never see a target label), and
* the **oracle**: per-image Jaccard on the held-out domain-B test phantoms (analysis only, never used to select).

It then reports, per criterion, the Spearman rank correlation with the oracle over the evaluations of each seed, and
the oracle score of the evaluation the criterion would have selected (against the best and the last evaluation).

Usage: python benchmarks/transfer_selection_study.py [--seeds 0,1,2,3,4] [--iterations 240] [--eval-every 20]
       [--overrides '{"lr_segmenter": 3e-4}'] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "transfer"))
from test_orchestrator import _lungs  # noqa: E402

LABEL_FREE = ("source_dice", "source_cycle", "cycle_agreement", "label_free", "view_agreement", "confidence",
              "shape_prior", "consensus", "shape_view", "shape_then_label_free", "shape_cycle")


def derive(row: dict[str, float]) -> dict[str, float]:
    """Add the combined criteria: ``label_free`` (the rule's mean of source_cycle and cycle_agreement) and
    ``shape_view`` (mean of shape_prior and view_agreement), ``shape_then_label_free`` (shape_prior, ties broken by
    label_free), ``shape_cycle`` (mean of shape_prior and label_free: the default rule)."""
    row = dict(row)
    if "source_cycle" in row and "cycle_agreement" in row:
        row["label_free"] = 0.5 * (row["source_cycle"] + row["cycle_agreement"])
    if "shape_prior" in row and "view_agreement" in row:
        row["shape_view"] = 0.5 * (row["shape_prior"] + row["view_agreement"])
    if "shape_prior" in row and "label_free" in row:  # shape first, label_free breaks its ties
        row["shape_then_label_free"] = row["shape_prior"] + 1e-3 * row["label_free"]
        row["shape_cycle"] = 0.5 * (row["shape_prior"] + row["label_free"])  # the default rule
    return row


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either input is constant."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # average ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def run_seed(seed: int, iterations: int, warmup: int, eval_every: int, overrides: dict, size: int = 32,
             target: str = "b") -> list[dict[str, float]]:
    from segmentation.data.phantoms import make_phantoms
    from segmentation.data.preprocessing import normalize
    from segmentation.metrics import evaluate_masks
    from segmentation.training import SegmentationConfig, probabilities_to_masks
    from transfer.baselines import train_source_segmenter
    from transfer.config import TransferConfig
    from transfer.orchestrator import TransferOrchestrator
    from transfer.prediction import predict_views
    from transfer.selection import Selector
    from translation import create_translator

    a, a_val = _lungs(make_phantoms(48, size, "a", seed)), _lungs(make_phantoms(16, size, "a", seed + 100))
    b_train, b_test = make_phantoms(40, size, target, seed + 200), _lungs(make_phantoms(24, size, target, seed + 300))
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 3, "base_channels": 8}, size=size, epochs=8,
                                steps_per_epoch=25, batch_size=8, lr=1e-3, augment=True, seed=seed, device="cpu",
                                progress=False, overlays=0)
    m_a = train_source_segmenter(a, a_val, config)

    def norm(x):
        return normalize(x, "per_image")

    def oracle(probs: torch.Tensor) -> float:
        rows = evaluate_masks(probabilities_to_masks(probs, config), b_test.masks > 0.5, ("lungs",))
        return float(np.mean([r["jaccard/lungs"] for r in rows]))

    rule = overrides.get("selection", TransferConfig.selection)  # scores the run as the product would
    selector = Selector(rule, norm, source_val=(a_val.images, a_val.masks), target_images=b_train.images,
                        source_masks=a.masks)
    views = ("translated", "direct", "translated_flip", "direct_flip")

    def study(translator, segmenter):  # every label-free criterion + the oracle (analysis only)
        out = dict(selector(translator, segmenter))
        out["oracle_views"] = oracle(predict_views(translator, segmenter, b_test.images, norm, views))
        out["oracle_paper"] = oracle(predict_views(translator, segmenter, b_test.images, norm, ("translated",)))
        # the rule's score (the run's selected weights, which a "selected" pseudo_teacher follows); the summary
        # below replays every criterion on the recorded evaluations whatever was selected
        return out

    d = "direct"
    source_only = oracle(predict_views(torch.nn.Identity(), m_a, b_test.images, norm, (d,)))
    torch.manual_seed(seed)
    tconfig = TransferConfig(iterations=iterations, warmup_iterations=warmup, steps_per_epoch=eval_every,
                             batch_size=8, ema_decay=0.95, lr_segmenter=3e-4, pseudo_start=0.3, seed=seed
                             ).replace(**overrides)
    orch = TransferOrchestrator(create_translator("cyclegan", "tiny"), copy.deepcopy(m_a), tconfig, normalize=norm)
    result = orch.fit(a.images, a.masks, b_train.images, None, study)
    for row in result.history:
        row["source_only"] = source_only
    return result.history


def summarise(histories: dict[int, list[dict[str, float]]], oracle_key: str) -> None:
    histories = {seed: [derive(r) for r in rows] for seed, rows in histories.items()}
    print(f"\noracle = {oracle_key}; per seed: source-only, oracle at first / best / last evaluation")
    for seed, rows in histories.items():
        o = np.array([r[oracle_key] for r in rows])
        print(f"seed {seed}: source-only {rows[0]['source_only']:.3f} | first {o[0]:.3f} best {o.max():.3f} "
              f"(iteration {int(rows[int(o.argmax())]['iteration'])}) last {o[-1]:.3f}")
    print("\n| criterion | Spearman with oracle per seed | mean | oracle at its argmax per seed | mean | "
          "mean regret vs best |")
    print("|---|---|---|---|---|---|")
    for name in LABEL_FREE:
        if name not in next(iter(histories.values()))[0]:
            continue
        rhos, picked, regrets = [], [], []
        for rows in histories.values():
            c = np.array([r[name] for r in rows])
            o = np.array([r[oracle_key] for r in rows])
            rhos.append(spearman(c, o))
            best_index = len(c) - 1 - int(np.argmax(c[::-1]))  # ties: the latest, as the orchestrator keeps
            picked.append(o[best_index])
            regrets.append(o.max() - o[best_index])
        print(f"| {name} | {', '.join(f'{r:+.2f}' for r in rhos)} | {np.nanmean(rhos):+.2f} | "
              f"{', '.join(f'{p:.3f}' for p in picked)} | {np.mean(picked):.3f} | {np.mean(regrets):.3f} |")
    last = [rows[-1][oracle_key] for rows in histories.values()]
    print(f"| (last evaluation) | | | {', '.join(f'{p:.3f}' for p in last)} | {np.mean(last):.3f} | "
          f"{np.mean([max(r[oracle_key] for r in rows) - rows[-1][oracle_key] for rows in histories.values()]):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--iterations", type=int, default=240)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--target", default="b", help="phantom target domain (b or c)")
    parser.add_argument("--overrides", default="{}", help="JSON of TransferConfig overrides")
    parser.add_argument("--json", default="", help="write every history to this JSON file")
    parser.add_argument("--from-json", default="", help="only summarise histories written by --json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    histories: dict[int, list[dict[str, float]]] = {}
    if args.from_json:
        histories = {int(k): v for k, v in json.loads(Path(args.from_json).read_text()).items()}
        summarise(histories, "oracle_views")
        summarise(histories, "oracle_paper")
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        histories[seed] = run_seed(seed, args.iterations, args.warmup, args.eval_every, json.loads(args.overrides),
                                   target=args.target)
        for row in histories[seed]:
            print(f"seed {seed} it {int(row['iteration']):4d} " + " ".join(
                f"{k}={v:.3f}" for k, v in row.items() if k not in ("iteration", "score")), flush=True)
        print(f"seed {seed} took {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in histories.items()}, indent=1))
    summarise(histories, "oracle_views")
    summarise(histories, "oracle_paper")


if __name__ == "__main__":
    main()
