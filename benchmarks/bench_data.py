"""Throughput of the data pipeline: load_dataset on the real JSRT, Augmenter and make_phantoms.

Measures, in images per second:

- ``load``: ``load_dataset(<data>/jsrt, classes=("lungs",), size=256)``, the whole 247-image set
  (reads each 512x512 image and its two lung masks, resizes anti-aliased / label-safe);
- ``augment``: ``Augmenter(seed=0)`` with its default settings on batches of 16 images of 256x256
  with 2 mask channels (the JSRT tensors from the load), every geometric and intensity transform
  on, ``p_affine=p_elastic=p_intensity=1`` so every image pays for every transform;
- ``phantoms``: ``make_phantoms(64, size=64)`` per domain;
- ``--gap``: the phantom domain gap: lung Dice of a 4-layer dilated CNN (80 Adam steps, batch 8,
  32 px, as in ``tests/segmentation/data/test_phantoms.py``) trained on 32 phantoms of one domain
  and tested on 32 held-out phantoms of each domain, for ``--gap-seeds`` seeds.

Reports the median over repeats plus wall and process-CPU seconds, since wall time on a shared
machine depends on its load. Runs on CPU unless ``--device cuda`` is given.

Usage:
    python benchmarks/bench_data.py                                  # 3 repeats, CPU, torch threads as set
    python benchmarks/bench_data.py --threads 1 --repeats 5 --json out.json
    python benchmarks/bench_data.py --device cuda --skip-load        # GPU augmentation throughput
    python benchmarks/bench_data.py --skip-load --gap --gap-seeds 3  # phantom domain gap a -> b
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from segmentation.data.augmentation import Augmenter  # noqa: E402
from segmentation.data.dataset import load_dataset  # noqa: E402
from segmentation.data.phantoms import make_phantoms  # noqa: E402
from segmentation.data.preprocessing import normalize  # noqa: E402


def _lung_dice_gap(seed: int, size: int = 32, steps: int = 80) -> dict[str, float]:
    """Train a tiny CNN on lungs of domain a and of domain b; Dice on held-out phantoms of both."""
    torch.manual_seed(seed)

    def lungs(data):
        return data.masks[:, :2].amax(1, keepdim=True)

    def train(data):
        layers: list[nn.Module] = []
        channels = 1
        for dilation in (1, 2, 4, 8):
            layers += [nn.Conv2d(channels, 16, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(16), nn.ReLU()]
            channels = 16
        model = nn.Sequential(*layers, nn.Conv2d(16, 1, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = normalize(data.images), lungs(data)
        for _ in range(steps):
            i = torch.randint(0, len(data), (8,))
            loss = F.binary_cross_entropy_with_logits(model(x[i]), y[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()

    def dice(model, data):
        with torch.no_grad():
            pred = (model(normalize(data.images)) > 0).float()
        target = lungs(data)
        return float((2 * (pred * target).sum((1, 2, 3)) / (pred.sum((1, 2, 3)) + target.sum((1, 2, 3)))).mean())

    base = 100 * seed
    model_a = train(make_phantoms(32, size, "a", seed=base + 10))
    model_b = train(make_phantoms(32, size, "b", seed=base + 20))
    held_a, held_b = make_phantoms(32, size, "a", seed=base + 30), make_phantoms(32, size, "b", seed=base + 40)
    return {"a_on_a": dice(model_a, held_a), "a_on_b": dice(model_a, held_b),
            "b_on_b": dice(model_b, held_b), "b_on_a": dice(model_b, held_a)}


def _timed(fn, repeats: int, sync) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeats):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="augmentation batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-load", action="store_true", help="augment random tensors instead of the real JSRT")
    parser.add_argument("--gap", action="store_true", help="also measure the phantom domain gap")
    parser.add_argument("--gap-seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, device {device}",
        "size": args.size,
    }

    if args.skip_load:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(args.batch, 1, args.size, args.size, generator=generator)
        masks = (torch.rand(args.batch, 2, args.size, args.size, generator=generator) > 0.5).float()
    else:
        root = args.data / "jsrt"
        holder: dict[str, object] = {}
        walls, cpus = _timed(lambda: holder.update(data=load_dataset(root, ("lungs",), size=args.size)), args.repeats,
                             lambda: None)
        data = holder["data"]
        n = len(data)
        results["load"] = {
            "images": n, "wall_s": walls, "cpu_s": cpus,
            "images_per_s": n / statistics.median(walls),
            "command": f"load_dataset({root}, ('lungs',), size={args.size})",
        }
        print(f"load_dataset jsrt: {n} images, median {statistics.median(walls):.2f} s wall "
              f"-> {n / statistics.median(walls):.1f} images/s (cpu {statistics.median(cpus):.2f} s)")
        left_right = torch.cat([data.masks, data.masks.flip(-1)], dim=1)  # two mask channels
        images, masks = data.images[: args.batch], left_right[: args.batch]

    images, masks = images.to(device), masks.to(device)
    augment = Augmenter(seed=0, p_affine=1.0, p_elastic=1.0, p_intensity=1.0, hflip=0.5, swap_pairs=[(0, 1)])
    augment(images, masks)  # warm-up

    def run() -> None:
        for _ in range(args.batches):
            augment(images, masks)

    walls, cpus = _timed(run, args.repeats, sync)
    count = args.batches * images.shape[0]
    results["augment"] = {
        "batch": images.shape[0], "batches": args.batches, "wall_s": walls, "cpu_s": cpus,
        "images_per_s": count / statistics.median(walls),
    }
    print(f"Augmenter: batch {images.shape[0]} at {args.size}px on {device}: "
          f"{count / statistics.median(walls):.1f} images/s")

    for domain in ("a", "b"):
        make_phantoms(4, 64, domain)
        walls, cpus = _timed(lambda: make_phantoms(64, 64, domain, seed=1), args.repeats, lambda: None)
        results[f"phantoms_{domain}"] = {
            "n": 64, "size": 64, "wall_s": walls, "images_per_s": 64 / statistics.median(walls)
        }
        print(f"make_phantoms(64, 64, {domain!r}): median {statistics.median(walls) * 1000:.1f} ms "
              f"-> {64 / statistics.median(walls):.0f} images/s")

    if args.gap:
        rows = [_lung_dice_gap(seed) for seed in range(args.gap_seeds)]
        results["gap"] = rows
        for seed, row in enumerate(rows):
            print(f"phantom lung Dice, seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
