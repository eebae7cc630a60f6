"""Ablations of the transfer stabilisers at 0% labels on phantom domains A -> B, over seeds, at the test's CPU scale.

Per seed: M_A is trained once (as in ``phantom_transfer`` of tests/transfer/test_orchestrator.py: 32 px, U-Net depth 3
/ 8 channels, 200 steps on 48 domain-A phantoms); each training configuration (``--configs``) is then run once (tiny
CycleGAN, 30 warm-up + 60 transfer iterations, label-free selection, evaluations at 20/40/60) and every prediction
variant is scored from that one run: the paper's M_A(G_BA(b)) with the selected weights and view averages
(``TransferConfig.predict_views``). Source-only M_A(b) and its flip average are the baselines. Prints per-image Jaccard
mean per seed and variant, then mean +- sd over seeds. (The snapshot-average variants of docs/results/transfer.md
used ``TransferConfig.snapshots``, removed since: they did not help.)

Usage: python benchmarks/transfer_ablation_phantoms.py [--seeds 0,1,2] [--configs default,nopseudo]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "transfer"))
from test_orchestrator import _lungs  # noqa: E402

CONFIGS = {
    "default": {},
    "nopseudo": {"weight_pseudo": 0.0},
    "lowlr": {"lr_segmenter": 3e-5},
    "ema99": {"ema_decay": 0.99},
    "lowlr_nopseudo": {"lr_segmenter": 3e-5, "weight_pseudo": 0.0},
    "pseudo4": {"pseudo_views": ("translated", "direct", "translated_flip", "direct_flip")},
    "lowlr_pseudo4": {"lr_segmenter": 3e-5,
                      "pseudo_views": ("translated", "direct", "translated_flip", "direct_flip")},
}
T, D, TF, DF = "translated", "direct", "translated_flip", "direct_flip"
VARIANTS = {  # name: prediction views
    "paper (selected)": (T,),
    "views T+D": (T, D),
    "views T+TF": (T, TF),
    "views T+D+TF+DF": (T, D, TF, DF),
    "direct only (adapted M_A(b))": (D,),
    "views D+DF": (D, DF),
}


def run_seed(seed: int, configs: list[str], size: int = 32) -> dict[str, float]:
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
    b_train, b_test = make_phantoms(40, size, "b", seed + 200), _lungs(make_phantoms(24, size, "b", seed + 300))
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 3, "base_channels": 8}, size=size, epochs=8,
                                steps_per_epoch=25, batch_size=8, lr=1e-3, augment=True, seed=seed, device="cpu",
                                progress=False, overlays=0)
    m_a = train_source_segmenter(a, a_val, config)

    def norm(x):
        return normalize(x, "per_image")

    def score(probs: torch.Tensor) -> float:
        rows = evaluate_masks(probabilities_to_masks(probs, config), b_test.masks > 0.5, ("lungs",))
        return float(np.mean([r["jaccard/lungs"] for r in rows]))

    out = {"source-only": score(predict_views(torch.nn.Identity(), m_a, b_test.images, norm, (D,))),
           "source-only + flip": score(predict_views(torch.nn.Identity(), m_a, b_test.images, norm, (D, DF)))}
    for name in configs:
        torch.manual_seed(seed)
        tconfig = TransferConfig(iterations=60, warmup_iterations=30, steps_per_epoch=20, batch_size=8,
                                 ema_decay=0.95, lr_segmenter=3e-4, pseudo_start=0.3, seed=seed
                                 ).replace(**CONFIGS[name])
        orch = TransferOrchestrator(create_translator("cyclegan", "tiny"), copy.deepcopy(m_a), tconfig,
                                    normalize=norm)
        selector = Selector("label_free", norm, source_val=(a_val.images, a_val.masks), target_images=b_train.images)
        orch.fit(a.images, a.masks, b_train.images, None, selector)  # no target label at all
        for variant, views in VARIANTS.items():
            out[f"{name}: {variant}"] = score(torch.sigmoid(orch.predict(b_test.images, views=views)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--configs", default="default", help=f"comma-separated, from {sorted(CONFIGS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table: dict[str, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        for k, v in run_seed(seed, args.configs.split(",")).items():
            table.setdefault(k, []).append(v)
            print(f"seed {seed} | {k} | {v:.3f}", flush=True)
        print(f"seed {seed} took {time.perf_counter() - start:.0f} s", flush=True)
    print("\n| variant | per-seed mean Jaccard | mean +- sd over seeds | gain over source-only (per seed) |")
    print("|---|---|---|---|")
    base = np.array(table["source-only"])
    for k, v in table.items():
        arr = np.array(v)
        sd = arr.std(ddof=1) if len(arr) > 1 else 0.0
        print(f"| {k} | {', '.join(f'{x:.3f}' for x in arr)} | {arr.mean():.3f} +- {sd:.3f}"
              f" | {', '.join(f'{x:+.3f}' for x in arr - base)} |")


if __name__ == "__main__":
    main()
