"""Training and inference throughput (images/s) of every segmenter, with parameter counts beside Novikov's Table VIII.

For each architecture of ``segmentation.models.SEGMENTERS`` built with its default keywords (``out_channels``
set by ``--out-channels``, 3 = lungs, heart, clavicles):

- ``params``: :meth:`Segmenter.num_parameters`, next to the count in Table VIII of Novikov et al. 2018
  (InvertedNet 3.1M, All-Dropout 31.4M, All-Convolutional 34.5M) where the paper lists one;
- ``train img/s``: one optimisation step = forward, ``binary_cross_entropy_with_logits`` against random binary
  masks, backward, Adam step (``batch_size`` images per step);
- ``infer img/s``: an eval-mode forward under ``torch.inference_mode`` (what :meth:`Segmenter.predict` does,
  written out so that ``--compile`` can wrap the forward).

Inputs are random normal images ``[B, 1, size, size]`` already on the device. ``--warmup`` untimed steps come
first (cuDNN autotuning, ``torch.compile``); CUDA is synchronised around each timed step; the reported figure
uses the median step time. On CUDA bf16 autocast and channels_last are on by default (``--no-amp``,
``--no-channels-last`` turn them off); on CPU both are off by default (CPU bf16 is slower here). Wall time on a
shared machine depends on its load, so the process CPU seconds are printed too.

Usage:
    python benchmarks/bench_segmenters.py --device cpu --size 256 --batch-size 2 --iterations 3 --warmup 1
    python benchmarks/bench_segmenters.py --models unet invertednet --size 128 --json out.json
    python benchmarks/bench_segmenters.py --device cuda --size 256 --batch-size 16 --iterations 20 --warmup 5
    python benchmarks/bench_segmenters.py --counts-only          # parameter counts only, no timing
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

from runtime import resolve_device, seed_everything  # noqa: E402
from segmentation.models import SEGMENTERS, create_segmenter  # noqa: E402

# Table VIII of Novikov et al., IEEE TMI 2018 (parameter counts of their designs).
NOVIKOV_TABLE_VIII = {"invertednet": 3.1e6, "all_dropout": 31.4e6, "all_convolutional": 34.5e6}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)


def _timed(fn, iterations: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_one(name: str, args: argparse.Namespace, device: torch.device, batch: int) -> dict:
    seed_everything(args.seed)
    model = create_segmenter(name, in_channels=1, out_channels=args.out_channels).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n_params = model.num_parameters()
    x = torch.randn(batch, 1, args.size, args.size, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(batch, args.out_channels, args.size, args.size, device=device) > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if args.compile else model

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, args.amp):
            loss = F.binary_cross_entropy_with_logits(forward(x).float(), y)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        model.eval()
        with torch.inference_mode(), _autocast(device, args.amp):
            forward(x)

    cpu0 = time.process_time()
    train_times = _timed(train_step, args.iterations, args.warmup, device)
    infer_times = _timed(infer_step, args.iterations, args.warmup, device)
    cpu_s = time.process_time() - cpu0
    return {
        "model": name,
        "batch_size": batch,
        "params": n_params,
        "novikov_table_viii": NOVIKOV_TABLE_VIII.get(name),
        "train_img_s": batch / statistics.median(train_times),
        "infer_img_s": batch / statistics.median(infer_times),
        "train_step_s": train_times,
        "infer_step_s": infer_times,
        "process_cpu_s": cpu_s,
    }


def _fmt_params(n: float | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f}M"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SEGMENTERS), choices=list(SEGMENTERS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[2])
    parser.add_argument("--out-channels", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="timed steps per measurement (median taken)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counts-only", action="store_true", help="print parameter counts and exit")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error(f"expected --iterations >= 1, got {args.iterations}")

    if args.counts_only:
        print("| model | params | Novikov Table VIII |\n|---|---:|---:|")
        for name in args.models:
            with torch.device("meta"):
                n = create_segmenter(name, out_channels=args.out_channels).num_parameters()
            print(f"| {name} | {n:,} ({_fmt_params(n)}) | {_fmt_params(NOVIKOV_TABLE_VIII.get(name))} |")
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.amp = device.type == "cuda" if args.amp is None else args.amp
    args.channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )
    print(
        f"device={device} ({machine}) size={args.size} amp={args.amp} channels_last={args.channels_last} "
        f"compile={args.compile} iterations={args.iterations} warmup={args.warmup} torch={torch.__version__}"
    )
    try:
        load = os.getloadavg()[0]
        print(f"load average (1 min) at start: {load:.2f}")
    except OSError:
        pass

    rows = []
    print("| model | batch | params | Novikov Table VIII | train img/s | infer img/s | process CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        for batch in args.batch_size:
            r = bench_one(name, args, device, batch)
            rows.append(r)
            print(
                f"| {name} | {batch} | {_fmt_params(r['params'])} | {_fmt_params(r['novikov_table_viii'])} | "
                f"{r['train_img_s']:.2f} | {r['infer_img_s']:.2f} | {r['process_cpu_s']:.1f} |",
                flush=True,
            )
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {"config": config, "device": str(device), "machine": machine, "results": rows}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
