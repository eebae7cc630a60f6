"""The generators' normalisation: torch's fused ``group_norm`` kernel against the hand-written code it replaced.

Times, on CPU in one process, with the two implementations interleaved (the order alternates every repeat, so that
drift in the machine's load hits both alike):

- a CycleGAN ResNet generator (``tiny`` and ``default`` presets) forward + backward of an L1 loss, and
- one full :func:`translation.training.training_step` of the tiny CycleGAN (both generator and discriminator updates),

at 128 px, batch 4, float32 (the CPU protocol). The old implementation is :class:`_reference`, a copy of the code
before the change, swapped in by replacing ``InstanceNorm2d.forward``, ``LayerNorm2d.forward`` and MUNIT's
``adaptive_instance_norm`` for the duration of a call: same modules, same weights, same inputs. Wall and process CPU
time are reported: the median and the minimum of the repeats, and the "paired" speedup, the median over repeats of
old / new for the two calls of one repeat (adjacent in time, so slow changes in the machine's load cancel). On a
loaded, shared machine the medians carry the other processes' noise; the minimum and the paired ratio are the closer
estimates. Prints a table, then one JSON object (per-call times included).

Examples:
    python benchmarks/bench_norm.py
    python benchmarks/bench_norm.py --repeats 9 --out runs/bench_norm.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import translation.munit  # noqa: E402
from runtime import seed_everything  # noqa: E402
from translation import create_translator  # noqa: E402
from translation.generators import InstanceNorm2d, LayerNorm2d  # noqa: E402
from translation.training import training_step  # noqa: E402

IMPLEMENTATIONS = ("old", "new")


class _reference:
    """A namespace: translation/generators.py normalisation before ``torch.group_norm``, verbatim.

    ``var_mean`` then the affine, in float32, cast back to the input dtype. The two ``forward`` functions replace the
    methods of :class:`InstanceNorm2d` and :class:`LayerNorm2d` (``module`` is their ``self``).
    """

    @staticmethod
    def normalize(x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=dims, keepdim=True, unbiased=False)
        return (xf - mean) * torch.rsqrt(var + eps)

    @staticmethod
    def instance_norm_forward(module: InstanceNorm2d, x: Tensor) -> Tensor:
        y = _reference.normalize(x, dims=(2, 3), eps=module.eps)
        if module.weight is not None:
            y = y * module.weight.float().view(1, -1, 1, 1) + module.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)

    @staticmethod
    def layer_norm_forward(module: LayerNorm2d, x: Tensor) -> Tensor:
        y = _reference.normalize(x, dims=(1, 2, 3), eps=module.eps)
        y = y * module.weight.float().view(1, -1, 1, 1) + module.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)

    @staticmethod
    def adaptive_instance_norm(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
        y = _reference.normalize(x, dims=(2, 3), eps=eps)
        y = y * (1.0 + scale.float()[:, :, None, None]) + shift.float()[:, :, None, None]
        return y.to(x.dtype)


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
    """Run the block with the ``"old"`` (:class:`_reference`) or ``"new"`` (the library's) normalisation."""
    if name == "new":
        yield
        return
    saved = InstanceNorm2d.forward, LayerNorm2d.forward, translation.munit.adaptive_instance_norm
    InstanceNorm2d.forward = _reference.instance_norm_forward
    LayerNorm2d.forward = _reference.layer_norm_forward
    translation.munit.adaptive_instance_norm = _reference.adaptive_instance_norm
    try:
        yield
    finally:
        InstanceNorm2d.forward, LayerNorm2d.forward, translation.munit.adaptive_instance_norm = saved


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Time each of ``fns`` ``repeats`` times, alternating their order; wall and CPU milliseconds per call.

    Returns:
        For each name: the median, the minimum, the median CPU time, and the list of wall times (repeat by repeat,
        so that the calls of one repeat, adjacent in time, can be compared pairwise).
    """
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(warmup + repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            start, cpu_start = time.perf_counter(), time.process_time()
            fns[name]()
            if i >= warmup:
                wall[name].append(1000 * (time.perf_counter() - start))
                cpu[name].append(1000 * (time.process_time() - cpu_start))
    return {k: {"median_ms": statistics.median(wall[k]), "cpu_median_ms": statistics.median(cpu[k]),
                "min_ms": min(wall[k]), "wall_ms": wall[k]} for k in fns}


def bench_generator(preset: str, size: int, batch_size: int, repeats: int, warmup: int) -> dict:
    """Forward + backward of ``g_ab`` of a CycleGAN ``preset``; old vs new, and their largest output difference."""
    seed_everything(0)
    generator = create_translator("cyclegan", preset).g_ab
    x = torch.rand(batch_size, 1, size, size) * 2 - 1

    def step(name: str) -> Tensor:
        with implementation(name):
            generator.zero_grad(set_to_none=True)
            y = generator(x)
            (y - x).abs().mean().backward()
        return y.detach()

    diff = (step("old") - step("new")).abs().max().item()
    times = interleaved({name: (lambda n=name: step(n)) for name in IMPLEMENTATIONS}, repeats, warmup)
    return {"case": f"cyclegan {preset} generator fwd+bwd", "max_abs_output_diff": diff, **_row(times)}


def bench_training_step(preset: str, size: int, batch_size: int, repeats: int, warmup: int) -> dict:
    """One :func:`training_step` of a CycleGAN ``preset`` (Adam, lr 2e-4), old vs new on the same translator."""
    seed_everything(0)
    translator = create_translator("cyclegan", preset)
    opt_g = torch.optim.Adam(translator.generator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(translator.discriminator_parameters(), lr=2e-4, betas=(0.5, 0.999))
    a = torch.rand(batch_size, 1, size, size) * 2 - 1
    b = torch.rand(batch_size, 1, size, size) * 2 - 1

    def step(name: str) -> None:
        with implementation(name):
            training_step(translator, opt_g, opt_d, a, b, amp=False)

    times = interleaved({name: (lambda n=name: step(n)) for name in IMPLEMENTATIONS}, repeats, warmup)
    return {"case": f"cyclegan {preset} training_step", **_row(times)}


def _row(times: dict[str, dict[str, float]]) -> dict:
    old, new = times["old"], times["new"]
    return {
        "old_ms": round(old["median_ms"], 1), "new_ms": round(new["median_ms"], 1),
        "speedup": round(old["median_ms"] / new["median_ms"], 2),
        "old_min_ms": round(old["min_ms"], 1), "new_min_ms": round(new["min_ms"], 1),
        "min_speedup": round(old["min_ms"] / new["min_ms"], 2),
        "paired_speedup": round(statistics.median(o / n for o, n in zip(old["wall_ms"], new["wall_ms"])), 2),
        "old_cpu_ms": round(old["cpu_median_ms"], 1), "new_cpu_ms": round(new["cpu_median_ms"], 1),
        "cpu_speedup": round(old["cpu_median_ms"] / new["cpu_median_ms"], 2),
        "old_wall_ms": [round(t, 1) for t in old["wall_ms"]], "new_wall_ms": [round(t, 1) for t in new["wall_ms"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls of each implementation (tiny cases)")
    parser.add_argument("--default-repeats", type=int, default=7, help="timed calls for the default preset")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-default", action="store_true", help="only the tiny preset (fast)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench_generator("tiny", args.size, args.batch_size, args.repeats, args.warmup)]
    if not args.skip_default:
        rows.append(bench_generator("default", args.size, args.batch_size, args.default_repeats, args.warmup))
    rows.append(bench_training_step("tiny", args.size, args.batch_size, args.repeats, args.warmup))
    header = (f"{'case':<38} {'old median':>10} {'new median':>10} {'speedup':>8} {'old min':>9} {'new min':>9} "
              f"{'speedup':>8} {'paired':>7} {'cpu x':>6}")
    print(f"milliseconds, {args.size} px, batch {args.batch_size}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:<38} {r['old_ms']:>10.1f} {r['new_ms']:>10.1f} {r['speedup']:>7.2f}x "
              f"{r['old_min_ms']:>9.1f} {r['new_min_ms']:>9.1f} {r['min_speedup']:>7.2f}x {r['paired_speedup']:>6.2f}x "
              f"{r['cpu_speedup']:>5.2f}x")
    result = {
        "size": args.size, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "default_repeats": args.default_repeats, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "load_average": os.getloadavg(), "rows": rows,
    }
    print(json.dumps(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
