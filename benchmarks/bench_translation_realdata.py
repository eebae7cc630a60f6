"""Montgomery -> JSRT-style CycleGAN on the real data: histogram distance and KID before and after translation.

Domain A is Montgomery, domain B is JSRT (``$CXR_DATA`` or ``../shared/data``); a seeded 20% of each is held out
and never trained on. The translator is trained with :func:`translation.training.train_translator` (the same loop
as ``cxr-transfer translate train``) and the figures are computed on the held-out images:

- before: Montgomery as it is vs real JSRT;
- after: ``G_AB(Montgomery)`` vs real JSRT (and, for reference, ``G_BA(JSRT)`` vs real Montgomery).

CPU-scaled by default (128 px, tiny preset, a few hundred steps); on a GPU use ``--size 256 --preset default
--iterations 20000 --device cuda``.

Example:
    nice python benchmarks/bench_translation_realdata.py --size 128 --preset tiny --iterations 400 --batch-size 2 \\
        --run-dir /tmp/bench_m2j --out docs/results/translation_realdata.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from runtime import resolve_device, seed_everything  # noqa: E402
from runtime.io import atomic_write_json  # noqa: E402
from segmentation.data.dataset import load_dataset  # noqa: E402
from translation import create_translator  # noqa: E402
from translation.metrics import histogram_distance, kid  # noqa: E402
from translation.training import TranslationConfig, train_translator, translate_batches  # noqa: E402


def data_root() -> Path:
    env = os.environ.get("CXR_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def split(images: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    k = max(2, int(round(fraction * images.shape[0])))
    return images[order[k:]], images[order[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "default"])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is best on a shared machine)")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/bench_translation_realdata"))
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    root = data_root()
    started, cpu_started = time.perf_counter(), time.process_time()
    montgomery = load_dataset(root / "montgomery", size=args.size, masks=False).images * 2 - 1
    jsrt = load_dataset(root / "jsrt", size=args.size, masks=False).images * 2 - 1
    load_seconds = time.perf_counter() - started
    train_m, held_m = split(montgomery, args.held_out, args.seed)
    train_j, held_j = split(jsrt, args.held_out, args.seed + 1)

    kid_kw = dict(subset_size=args.kid_subset_size, num_subsets=100, size=128, seed=args.seed)
    before = {"hist": histogram_distance(held_m, held_j), "kid": kid(held_m, held_j, **kid_kw)}

    seed_everything(args.seed)
    translator = create_translator("cyclegan", preset=args.preset).to(device)
    config = TranslationConfig(iterations=args.iterations, batch_size=args.batch_size, seed=args.seed,
                               checkpoint_every=max(1, args.iterations // 2), eval_every=args.eval_every,
                               kid_subset_size=args.kid_subset_size, kid_subsets=50, domain_a="montgomery",
                               domain_b="jsrt", progress=False)
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    result = train_translator(translator, train_m.to(device), train_j.to(device), config, args.run_dir,
                              held_out_a=held_m.to(device), held_out_b=held_j.to(device))
    model = result.translator.eval()
    fake_j = translate_batches(model.a_to_b, held_m, 8, device)
    fake_m = translate_batches(model.b_to_a, held_j, 8, device)
    after = {"hist": histogram_distance(fake_j, held_j), "kid": kid(fake_j, held_j, **kid_kw)}
    reverse = {"hist_before": histogram_distance(held_j, held_m), "kid_before": kid(held_j, held_m, **kid_kw),
               "hist_after": histogram_distance(fake_m, held_m), "kid_after": kid(fake_m, held_m, **kid_kw)}
    figures = {
        "command": "python benchmarks/bench_translation_realdata.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out",)),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, torch {torch.__version__}, device {device}",
        "data": {"a": "montgomery", "b": "jsrt", "size": args.size, "train": [len(train_m), len(train_j)],
                 "held_out": [len(held_m), len(held_j)], "load_seconds": round(load_seconds, 1)},
        "model": {"name": "cyclegan", "preset": args.preset,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "steps": result.steps, "train_seconds": round(result.seconds, 1), "rollbacks": len(result.rollbacks),
        "total_wall_seconds": round(time.perf_counter() - started, 1),
        "total_process_cpu_seconds": round(time.process_time() - cpu_started, 1),
        "montgomery_to_jsrt": {
            "hist_before": before["hist"], "hist_after": after["hist"],
            "kid_before": before["kid"][0], "kid_before_se": before["kid"][1],
            "kid_after": after["kid"][0], "kid_after_se": after["kid"][1]},
        "jsrt_to_montgomery": {"hist_before": reverse["hist_before"], "hist_after": reverse["hist_after"],
                               "kid_before": reverse["kid_before"][0], "kid_before_se": reverse["kid_before"][1],
                               "kid_after": reverse["kid_after"][0], "kid_after_se": reverse["kid_after"][1]},
        "history": result.history,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "history"}, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, figures)


if __name__ == "__main__":
    main()
