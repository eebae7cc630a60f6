"""Which label-free criterion tracks target accuracy on the real data (JSRT -> Montgomery lungs, 0% labels)?

The real-data twin of ``benchmarks/transfer_selection_study.py``. It reuses the cached M_A and warmed-up translator of a
CPU sweep (``benchmarks/transfer_sweep_cpu.sh``; pass the same settings), runs the transfer method at 0% labels for
``--iterations``, and at every evaluation records each label-free criterion of :class:`transfer.selection.Selector`
and the **oracle** (per-image Jaccard on the Montgomery test split, analysis only: nothing here selects a model; the
product never computes it). Prints, per criterion, the Spearman correlation with the oracle over evaluations and the
oracle score at the criterion's argmax.

Usage: python benchmarks/transfer_selection_real.py --base runs/cpu_sweep_full_128 [--iterations 300]
       [--eval-every 25] [--overrides '{}'] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_selection_study import summarise  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", default=os.environ.get("CXR_DATA", str(root.parent / "shared" / "data")))
    parser.add_argument("--base", default="runs/cpu_sweep_full_128", help="sweep folder with source/ and warmup/")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--source-iterations", type=int, default=300)
    parser.add_argument("--finetune-iterations", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", default="{}", help="JSON of TransferConfig overrides")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from segmentation.metrics import evaluate_masks
    from segmentation.training import probabilities_to_masks
    from transfer.config import ExperimentConfig, TransferConfig
    from transfer.orchestrator import TransferOrchestrator
    from transfer.prediction import predict_views
    from transfer.protocol import target_splits
    from transfer.selection import Selector
    from transfer.shared import (build_translator, load_cell_data, normalizer, source_model, source_splits,
                                 warmup_file)

    transfer = TransferConfig(iterations=args.iterations, warmup_iterations=args.warmup,
                              steps_per_epoch=args.eval_every, batch_size=8, seed=args.seed
                              ).replace(**json.loads(args.overrides))
    exp = ExperimentConfig(method="transfer", fraction=0.0, seed=args.seed, source=f"{args.data}/jsrt",
                           target=f"{args.data}/montgomery", out=args.base, size=args.size,
                           segmenter_kwargs={"depth": 4, "base_channels": 8}, translator_preset="tiny",
                           source_iterations=args.source_iterations, finetune_iterations=args.finetune_iterations,
                           device="cpu", transfer=transfer)
    start = time.perf_counter()
    source, target = load_cell_data(exp)
    device = torch.device("cpu")
    m_a, seg_config = source_model(exp, source, device)  # cached in BASE/source (trained there when missing)
    splits = target_splits(target.ids, exp.split_seed, Path(exp.out) / "splits.json")
    src_splits = source_splits(source, exp)
    src_train, src_val = source.subset(src_splits["train"]), source.subset(src_splits["val"])
    train, val, test = (target.subset(splits[k]) for k in ("train", "val", "test"))
    norm = normalizer(exp)
    selector = Selector(transfer.selection, norm, source_val=(src_val.images, src_val.masks),
                        target_images=torch.cat([train.images, val.images]), source_masks=src_train.masks,
                        views=transfer.predict_views)

    per_image: list[dict] = []  # per evaluation: per-image Jaccard of the default prediction (analysis only)

    def jaccards(probs: torch.Tensor) -> list[float]:
        rows = evaluate_masks(probabilities_to_masks(probs, seg_config), test.masks > 0.5, ("lungs",))
        return [100 * float(r["jaccard/lungs"]) for r in rows]

    def oracle(probs: torch.Tensor) -> float:
        return float(np.mean(jaccards(probs)))

    def study(translator, segmenter):
        out = dict(selector(translator, segmenter))
        scores = jaccards(predict_views(translator, segmenter, test.images, norm, transfer.predict_views))
        per_image.append({"ids": list(test.ids), "jaccard": scores})
        out["oracle_views"] = float(np.mean(scores))
        out["oracle_failures"] = float(sum(j < 80 for j in scores))
        out["oracle_worst"] = float(min(scores))
        out["oracle_paper"] = oracle(predict_views(translator, segmenter, test.images, norm, ("translated",)))
        out["oracle_direct"] = oracle(predict_views(translator, segmenter, test.images, norm, ("direct",)))
        print(f"  eval: {out['oracle_views']:.2f} / paper {out['oracle_paper']:.2f} / direct {out['oracle_direct']:.2f}"
              f" / failures {int(out['oracle_failures'])} worst {out['oracle_worst']:.1f} | " + " ".join(
            f"{k}={v:.3f}" for k, v in out.items() if not k.startswith(("oracle", "score"))), flush=True)
        return out

    source_only = oracle(predict_views(torch.nn.Identity(), m_a, test.images, norm, ("direct",)))
    print(f"source-only Jaccard on the {len(test)} test images: {source_only:.2f}", flush=True)
    path, key = warmup_file(exp, src_train.ids, train.ids)
    orch = TransferOrchestrator(build_translator(exp, device), copy.deepcopy(m_a), transfer, normalize=norm)
    result = orch.fit(src_train.images, src_train.masks, train.images, None, study, warmup_cache=path, warmup_key=key)
    for row in result.history:
        row["source_only"] = source_only
    print(f"took {time.perf_counter() - start:.0f} s (warm-up cache {'hit' if path.is_file() else 'miss'})")
    if args.json:
        Path(args.json).write_text(json.dumps({str(args.seed): result.history}, indent=1))
        Path(args.json).with_suffix(".per_image.json").write_text(json.dumps(per_image))
    summarise({args.seed: result.history}, "oracle_views")
    summarise({args.seed: result.history}, "oracle_paper")


if __name__ == "__main__":
    main()
