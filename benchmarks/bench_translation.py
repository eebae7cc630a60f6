"""Training-step throughput (images/s) of the translators: CycleGAN (ResNet-9), UNIT, MUNIT and their tiny presets.

One step is what ``translation.training.train_translator`` does per iteration (:func:`translation.training.
training_step`): the generator update (all generator losses, backward, Adam) then the discriminator update. Images/s
counts one image of each domain per batch element (``batch_size * steps / s``), the convention of the original
CycleGAN code, where batch 1 means one A and one B image per iteration. Random inputs in [-1, 1] already on the
device; warm-up steps (cuDNN autotuning, ``torch.compile``) are not timed; CUDA is synchronised around the timing.
The process CPU time is reported too: on a shared, loaded CPU machine wall time overstates the cost of a step.

Reference point (issue 4): a plain PyTorch ResNet-9 CycleGAN step on one H100 runs at about 12 images/s at batch 1,
fp32, eager; batch 8 + bf16 + channels_last at about 49 images/s; the target here is >= 120 images/s.

Examples:
    python benchmarks/bench_translation.py --device cpu --models cyclegan --presets tiny --size 64 --iterations 5
    python benchmarks/bench_translation.py --device cuda --models cyclegan --presets default --size 256 \\
        --batch-size 1 8 16 --amp --channels-last --compile --iterations 50 --warmup 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from runtime import resolve_device, seed_everything  # noqa: E402
from translation import TRANSLATORS, create_translator  # noqa: E402
from translation.training import training_step  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: str, preset: str, size: int, batch_size: int, device: torch.device, amp: bool,
            channels_last: bool, compile_: bool, iterations: int, warmup: int) -> dict:
    """Time ``iterations`` training steps after ``warmup`` untimed ones; return a result row."""
    seed_everything(0)
    translator = create_translator(model, preset=preset).to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    translator.to(memory_format=memory)
    if compile_:
        for module in [*translator.generator_modules(), *translator.discriminator_modules()]:
            module.compile()
    opt_g = torch.optim.Adam(translator.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(translator.discriminator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    channels = translator.channels
    a = (torch.rand(batch_size, channels, size, size, device=device) * 2 - 1).contiguous(memory_format=memory)
    b = (torch.rand(batch_size, channels, size, size, device=device) * 2 - 1).contiguous(memory_format=memory)
    for _ in range(warmup):
        training_step(translator, opt_g, opt_d, a, b, amp=amp)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        g, d = training_step(translator, opt_g, opt_d, a, b, amp=amp)
    _sync(device)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    finite = bool(torch.isfinite(g["loss"]).item() and torch.isfinite(d["loss"]).item())
    row = {
        "model": model, "preset": preset, "size": size, "batch_size": batch_size, "device": str(device),
        "amp_bf16": amp and device.type == "cuda", "channels_last": channels_last, "compile": compile_,
        "iterations": iterations, "warmup": warmup, "seconds": round(seconds, 3),
        "step_ms": round(1000 * seconds / iterations, 2),
        "images_per_s": round(batch_size * iterations / seconds, 2),
        "process_cpu_seconds": round(cpu_seconds, 3),
        "parameters": sum(p.numel() for p in translator.parameters()), "finite": finite,
    }
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def count_flops(model: str, preset: str, size: int, batch_size: int, device: torch.device) -> dict:
    """FLOPs of one training step (generator and discriminator updates, forward and backward) per image."""
    from torch.utils.flop_counter import FlopCounterMode

    seed_everything(0)
    translator = create_translator(model, preset=preset).to(device)
    opt_g = torch.optim.Adam(translator.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(translator.discriminator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    a = torch.rand(batch_size, translator.channels, size, size, device=device) * 2 - 1
    b = torch.rand(batch_size, translator.channels, size, size, device=device) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        training_step(translator, opt_g, opt_d, a, b, amp=False)
    total = counter.get_total_flops()
    return {"model": model, "preset": preset, "size": size, "batch_size": batch_size,
            "tflop_per_step": round(total / 1e12, 4), "tflop_per_image": round(total / 1e12 / batch_size, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=sorted(TRANSLATORS), choices=sorted(TRANSLATORS))
    parser.add_argument("--presets", nargs="+", default=["default", "tiny"], choices=["default", "tiny"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generators and discriminators")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--count-flops", action="store_true",
                        help="count the FLOPs of one training step (torch.utils.flop_counter) instead of timing")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.machine()} {os.cpu_count()}-core CPU, {torch.get_num_threads()} torch threads")
    if args.count_flops:
        for model in args.models:
            for preset in args.presets:
                for batch_size in args.batch_size:
                    print(json.dumps(count_flops(model, preset, args.size, batch_size, device)), flush=True)
        return
    rows = []
    for model in args.models:
        for preset in args.presets:
            for batch_size in args.batch_size:
                row = measure(model, preset, args.size, batch_size, device, args.amp, args.channels_last,
                              args.compile, args.iterations, args.warmup)
                row["machine"] = machine
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| model | preset | size | batch | AMP bf16 | channels_last | compile | ms/step | images/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['preset']} | {r['size']} | {r['batch_size']} | {r['amp_bf16']} | "
              f"{r['channels_last']} | {r['compile']} | {r['step_ms']} | {r['images_per_s']} |")
    if args.out is not None:
        from runtime.io import atomic_write_json

        atomic_write_json(args.out, {"command": " ".join(sys.argv), "rows": rows})


if __name__ == "__main__":
    main()
