"""Memory and speed of the streamed data path on target sets of 1,000 to 50,000 radiographs (CPU).

For each N the benchmark builds a synthetic target folder in a temporary directory (never committed): the 138
Montgomery radiographs written once at 256 px, then N hard links to them under distinct names (a hospital archive
of N files; every file is decoded by the cache build, the disk holds 138). It then measures, each in a fresh
process, with peak resident memory (``ru_maxrss`` of the process; reader worker processes are separate and
listed apart):

- ``cache``: building the decoded cache of the folder (seconds, images/s);
- ``translate``: ``cxr-transfer translate train`` (tiny CycleGAN, --iterations, batch 4) from JSRT to the folder;
- ``transfer``: the transfer loop (``TransferOrchestrator.fit``, tiny CycleGAN, small U-Net, --iterations after a
  short warm-up) with the folder as its unlabelled target pool;
- ``predict``: ``cxr-transfer segment predict`` over the whole folder with a small U-Net (masks written as it goes);
- ``read``: images/s one reader process delivers from the cache (random batches of 8), the figure that sizes the
  workers a GPU needs.

At the smallest N the translate and transfer runs are also made with the in-memory path (``CXR_STREAM=0``), side by
side, for the throughput comparison. Prints a Markdown table and writes JSON lines to --out.

Usage:
    python benchmarks/bench_stream.py --sizes 1000,10000,50000 --out /tmp/bench_stream.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WRAPPER = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        sys.exit(done.returncode)
    out = done.stdout.strip().splitlines()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "last": out[-1] if out else "", "stdout": done.stdout[-2000:]}))
""")

CACHE = textwrap.dedent("""
    import json, sys, time
    from segmentation.data.dataset import load_dataset
    start = time.perf_counter()
    data = load_dataset(sys.argv[1], size=int(sys.argv[2]), masks=False, stream=True, show_progress=False)
    print(json.dumps({"images": len(data), "build_s": time.perf_counter() - start}))
""")

TRANSFER = textwrap.dedent("""
    import json, sys, time, torch
    from segmentation.data.dataset import load_dataset
    from segmentation.models import create_segmenter
    from transfer.config import TransferConfig
    from transfer.orchestrator import TransferOrchestrator
    from translation import create_translator
    source_dir, target_dir, size, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(sys.argv[5]))
    source = load_dataset(source_dir, classes=("lungs",), size=size, show_progress=False)
    target = load_dataset(target_dir, size=size, masks=False, show_progress=False)
    torch.manual_seed(0)
    translator = create_translator("cyclegan", "tiny")
    segmenter = create_segmenter("unet", in_channels=1, out_channels=1, depth=4, base_channels=8)
    config = TransferConfig(iterations=iterations, warmup_iterations=2, steps_per_epoch=10**6, batch_size=4,
                            pseudo_start=0.0)
    orch = TransferOrchestrator(translator, segmenter, config, show_progress=False)
    start = time.perf_counter()
    orch.fit(source.images, source.masks, target.images)
    seconds = time.perf_counter() - start
    print(json.dumps({"streamed": target.streamed, "iterations": iterations + 2, "loop_s": seconds,
                      "images_per_s": (iterations + 2) * 4 / seconds}))
""")

READ = textwrap.dedent("""
    import json, sys, time, torch
    from runtime.loader import stream_batches
    from segmentation.data.dataset import load_dataset
    data = load_dataset(sys.argv[1], size=int(sys.argv[2]), masks=False, stream=True, show_progress=False)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(data), (8,), generator=g) for _ in range(400)]
    for workers in (0, 1):
        start = time.perf_counter()
        n = sum(len(b[0]) for b in stream_batches([data.images], batches, workers=workers))
        print(json.dumps({"workers": workers, "images_per_s": n / (time.perf_counter() - start)}))
""")

MODEL = textwrap.dedent("""
    import sys, torch
    from segmentation.config import SegmentationConfig
    from segmentation.inference import build_segmenter, save_segmenter
    config = SegmentationConfig(model="unet", model_kwargs={"depth": int(sys.argv[3]), "base_channels": int(sys.argv[4])},
                                classes=("lungs",), size=int(sys.argv[2]), postprocess=False)
    torch.manual_seed(0)
    save_segmenter(build_segmenter(config), sys.argv[1], config)
""")


def synthetic_folder(root: Path, montgomery: Path, n: int, size: int) -> Path:
    """``root/images`` with ``n`` hard links to the Montgomery images written at ``size``."""
    import numpy as np
    import torch

    from segmentation.data.preprocessing import resize_images
    from segmentation.data.io import read_image, write_png

    base = root.parent / f"base{size}"
    if not base.is_dir():
        for path in sorted((montgomery / "images").glob("*.png")):
            array = read_image(path).astype(np.float32) / 255.0
            small = resize_images(torch.from_numpy(array)[None, None], (size, size))[0, 0].clamp(0, 1)
            write_png(base / f"{path.stem}.png", (small.numpy() * 255).round().astype(np.uint8))
    files = sorted(base.glob("*.png"))
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(n):
        os.link(files[i % len(files)], images / f"cxr{i:06d}.png")
    return root


def measure(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{args[:4]} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        result.update(json.loads(result.pop("last")))
    except (json.JSONDecodeError, TypeError):
        pass
    return result


def _brief(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "stdout"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--iterations", type=int, default=40, help="translate iterations")
    parser.add_argument("--transfer-iterations", type=int, default=10, help="transfer iterations (after 2 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", default="cache,read,translate,transfer,predict")
    parser.add_argument("--predict-max", type=int, default=50000, help="skip predict above this N")
    parser.add_argument("--predict-model", default="4,8", help="depth,base_channels of the predict U-Net")
    parser.add_argument("--out", default="/tmp/bench_stream.jsonl")
    parser.add_argument("--work", default=None, help="temporary folder (default: a new one, removed at the end)")
    args = parser.parse_args()
    data = Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data")).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_stream_"))
    steps = args.steps.split(",")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CXR_CACHE": str(work / "cache"), "OMP_NUM_THREADS": str(args.threads),
           "CXR_WORKERS": os.environ.get("CXR_WORKERS", "1")}
    out = open(args.out, "a", encoding="utf-8")
    rows = []

    def record(n: int, step: int, path: str, result: dict) -> None:
        row = _brief({"n": n, "step": step, "path": path, "size": args.size, **result})
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    model = work / "unet.pt"
    subprocess.run([sys.executable, "-c", MODEL, str(model), str(args.size), *args.predict_model.split(",")], env=env,
                   check=True)
    cli = [sys.executable, "-m", "experiments.cli"]
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            folder = synthetic_folder(work / f"target{n}", data / "montgomery", n, args.size)
            if "cache" in steps:
                record(n, "cache", "stream", measure([sys.executable, "-c", CACHE, str(folder), str(args.size)], env))
            if "read" in steps:
                done = subprocess.run([sys.executable, "-c", READ, str(folder), str(args.size)], env=env,
                                      capture_output=True, text=True, check=True)
                for line in done.stdout.strip().splitlines():
                    record(n, "read", "stream", json.loads(line))
            paths = ("stream", "memory") if n == min(int(s) for s in args.sizes.split(",")) else ("stream",)
            for path in paths:
                flavour = {**env, "CXR_STREAM": "1" if path == "stream" else "0"}
                if "translate" in steps:
                    run_dir = work / f"translate{n}{path}"
                    result = measure([*cli, "translate", "train", "--a", str(data / "jsrt"), "--b", str(folder),
                                      "--preset", "tiny", "--size", str(args.size), "--iterations",
                                      str(args.iterations), "--batch-size", "4", "--eval-every", "0", "--held-out",
                                      "0.1", "--run-dir", str(run_dir), "--device", "cpu", "--quiet"], flavour)
                    report = next((line for line in result.get("stdout", "").splitlines() if line.startswith("trained")), "")
                    if " steps in " in report:  # "trained cyclegan for 40 steps in 52.3 s; ..." (loop and evaluations)
                        train_s = float(report.split(" steps in ")[1].split(" s")[0])
                        result.update(train_s=train_s, images_per_s=args.iterations * 4 / train_s)
                    record(n, "translate", path, result)
                    shutil.rmtree(run_dir, ignore_errors=True)
                if "transfer" in steps:
                    result = measure([sys.executable, "-c", TRANSFER, str(data / "jsrt"), str(folder), str(args.size),
                                      str(args.transfer_iterations), str(args.threads)], flavour)
                    record(n, "transfer", path, result)
            if "predict" in steps and n <= args.predict_max:
                target = work / f"predict{n}"
                result = measure([*cli, "segment", "predict", "--model", str(model), "--images",
                                  str(folder / "images"), "--out", str(target), "--no-overlays", "--device", "cpu"],
                                 env)
                result["images_per_s"] = n / result["seconds"]
                record(n, "predict", "files", result)
                shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(work / "cache", ignore_errors=True)
    finally:
        out.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| N | step | path | seconds | peak RSS (MB) | images/s |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['n']} | {row['step']} | {row['path']} | {row.get('seconds', float('nan')):.1f} | "
              f"{row.get('peak_rss_mb', float('nan')):.0f} | {row.get('images_per_s', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
