"""Size and inference latency of the translator architectures (no training loop: see bench_translation.py for that).

For each model and preset: generator and discriminator parameter counts, and the latency of ``a_to_b`` on a batch
of random images under ``torch.inference_mode`` (median of ``--iterations`` timed calls after ``--warmup``).
``--check-compile`` also traces every generator and discriminator with ``torch.compile(backend="eager",
fullgraph=True)`` and runs one generator and one discriminator step, to show there is no graph break.

Examples:
    python benchmarks/bench_translator_models.py --device cpu --iterations 3
    python benchmarks/bench_translator_models.py --device cuda --amp --channels-last --batch-size 8 --iterations 20
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

from runtime import autocast, resolve_device, seed_everything  # noqa: E402
from translation import TRANSLATORS, create_translator  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: str, preset: str, size: int, batch_size: int, device: torch.device, amp: bool,
            channels_last: bool, iterations: int, warmup: int, check_compile: bool) -> dict:
    """One result row for ``model`` / ``preset`` at ``size`` pixels."""
    seed_everything(0)
    t = create_translator(model, preset=preset).to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    t.to(memory_format=memory)
    x = (torch.rand(batch_size, t.channels, size, size, device=device) * 2 - 1).contiguous(memory_format=memory)
    times = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            _sync(device)
            start = time.perf_counter()
            with autocast(device, amp):
                t.a_to_b(x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    row = {
        "model": model,
        "preset": preset,
        "size": size,
        "batch_size": batch_size,
        "generator_params": sum(p.numel() for p in t.generator_parameters()),
        "discriminator_params": sum(p.numel() for p in t.discriminator_parameters()),
        "a_to_b_ms": round(1000 * statistics.median(times), 2),
        "a_to_b_images_per_s": round(batch_size / statistics.median(times), 1),
    }
    if check_compile:
        for module in [*t.generator_modules(), *t.discriminator_modules()]:
            module.compile(backend="eager", fullgraph=True)
        small = x[:1]
        t.generator_losses(small, small)["loss"].backward()
        t.discriminator_losses(small, small)["loss"].backward()
        row["fullgraph_trace"] = "ok"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=sorted(TRANSLATORS), choices=sorted(TRANSLATORS))
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=["tiny", "default"])
    parser.add_argument("--tiny-size", type=int, default=64)
    parser.add_argument("--default-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--check-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "device": str(device),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "load_average": os.getloadavg()}))
    for preset in args.presets:
        size = args.tiny_size if preset == "tiny" else args.default_size
        for model in args.models:
            print(json.dumps(measure(model, preset, size, args.batch_size, device, args.amp, args.channels_last,
                                     args.iterations, args.warmup, args.check_compile)), flush=True)


if __name__ == "__main__":
    main()
