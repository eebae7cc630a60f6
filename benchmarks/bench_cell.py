"""Where the time of one experiment cell goes, for each method: training steps against everything else.

Runs one cell per method (a fresh sweep folder each, so nothing is cached) and times, by wrapping the library's own
functions: M_A's source training, the translator warm-up, each step kind of the transfer loop (discriminative,
generative, supervised), the segmenter training steps of the baselines, evaluation and selection, the convergence
monitor, checkpoint writes and TensorBoard logging. Prints a table and one JSON line per cell with two shares of the
cell's wall time:

* "steps": inside optimisation steps (forward, backward and optimiser), "outside" the rest;
* "training": inside training work, i.e. the segmenter steps, the warm-up's steps and whole loop iterations (which
  also draw the batches, augment, make pseudo-labels and update the EMA), and "outside training" the rest
  (evaluation and selection, checkpoint I/O, logging, data preparation, building models): the issue's measure of
  what a cell spends outside its training steps.

Usage: python benchmarks/bench_cell.py [--methods transfer,finetune,source_only] [--size 64] [--iterations 20]
       [--steps-per-epoch N] (phantoms by default; --real uses JSRT -> Montgomery from $CXR_DATA). Without
       --steps-per-epoch the loop evaluates every iterations / 4; the CPU protocol (benchmarks/configs/
       cpu_protocol.json) evaluates every 50 of its 150 iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch

import runtime.checkpoint
import segmentation.training
import transfer.orchestrator
import transfer.shared
from runtime.logging import RunLogger
from segmentation.data.phantoms import write_phantom_dataset
from transfer.config import ExperimentConfig, TransferConfig
from transfer.sweep import run_sweep
from translation.monitor import TranslationMonitor

TOTALS: dict[str, float] = defaultdict(float)
IN_LOOP: dict[str, float] = defaultdict(float)  # the step times spent inside a loop iteration
_INSIDE = [False]
STEP_KINDS = ("discriminative step", "generative step", "supervised step", "segmenter step")
#: phases that contain others (their rows overlap; "steps" and "outside" count each second once)
NESTED = {"source training (M_A)": " (holds its segmenter steps)", "warm-up": " (holds its D and G steps)",
          "evaluation + selection": " (holds the monitor)",
          "loop iterations": " (hold the loop's D, G and supervised steps)"}


def _timed(name: str, fn):  # noqa: ANN001, ANN202 - wraps any callable
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[name] += time.perf_counter() - start
            if _INSIDE[0]:
                IN_LOOP[name] += time.perf_counter() - start

    return wrapper


def _iteration(fn):  # noqa: ANN001, ANN202 - wraps TransferOrchestrator.iteration
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        _INSIDE[0] = True
        try:
            return fn(*args, **kwargs)
        finally:
            _INSIDE[0] = False
            TOTALS["loop iterations"] += time.perf_counter() - start

    return wrapper


def _patches() -> list:
    o, t, s = transfer.orchestrator, segmentation.training, transfer.shared
    return [
        mock.patch.object(o, "discriminative_step", _timed("discriminative step", o.discriminative_step)),
        mock.patch.object(o, "generative_step", _timed("generative step", o.generative_step)),
        mock.patch.object(o, "supervised_step", _timed("supervised step", o.supervised_step)),
        mock.patch.object(t, "_train_step", _timed("segmenter step", t._train_step)),
        mock.patch.object(o.TransferOrchestrator, "_evaluate", _timed("evaluation + selection",
                                                                        o.TransferOrchestrator._evaluate)),
        mock.patch.object(TranslationMonitor, "log", _timed("monitor (KID, grids)", TranslationMonitor.log)),
        mock.patch.object(o, "save_checkpoint", _timed("checkpoint I/O", o.save_checkpoint)),
        mock.patch.object(t, "save_checkpoint", _timed("checkpoint I/O", t.save_checkpoint)),
        mock.patch.object(runtime.checkpoint, "load_checkpoint", _timed("checkpoint I/O", runtime.checkpoint.load_checkpoint)),
        mock.patch.object(RunLogger, "scalars", _timed("TensorBoard", RunLogger.scalars)),
        mock.patch.object(RunLogger, "image", _timed("TensorBoard", RunLogger.image)),
        mock.patch.object(s, "train_on_ranks", _timed("source training (M_A)", s.train_on_ranks)),  # M_A only: the
        # methods hold their own reference
        mock.patch.object(o.TransferOrchestrator, "warm_up", _timed("warm-up", o.TransferOrchestrator.warm_up)),
        mock.patch.object(o.TransferOrchestrator, "iteration", _iteration(o.TransferOrchestrator.iteration)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="transfer,finetune,source_only")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="evaluation interval (0: iterations / 4)")
    parser.add_argument("--warmup", type=int, default=-1, help="warm-up iterations (-1: iterations / 2)")
    parser.add_argument("--source-iterations", type=int, default=0, help="M_A's steps (0: 4 x iterations)")
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_cell_"))
    if args.real:
        data = Path(os.environ.get("CXR_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
        source, target = data / "jsrt", data / "montgomery"
    else:
        source, target = root / "a", root / "b"
        write_phantom_dataset(source, 40, args.size, "a", 0)
        write_phantom_dataset(target, 40, args.size, "b", 1)
    transfer_config = TransferConfig(
        iterations=args.iterations, batch_size=8,
        warmup_iterations=args.warmup if args.warmup >= 0 else max(1, args.iterations // 2),
        steps_per_epoch=args.steps_per_epoch or max(1, args.iterations // 4))
    print("| method | phase | seconds | share of the cell |\n|---|---|---|---|")
    for method in args.methods.split(","):
        TOTALS.clear()
        IN_LOOP.clear()
        exp = ExperimentConfig(source=str(source), target=str(target), out=str(root / f"sweep_{method}"),
                               size=args.size, segmenter_kwargs={"depth": 4, "base_channels": 8},
                               translator_preset="tiny", source_iterations=args.source_iterations or 4 * args.iterations,
                               finetune_iterations=2 * args.iterations, device="cpu", transfer=transfer_config)
        with ExitStack() as stack:
            for patch in _patches():
                stack.enter_context(patch)
            start = time.perf_counter()
            run_sweep(exp, (method,), (args.fraction,), (0,), log=lambda m: None)
            wall = time.perf_counter() - start
        steps = sum(TOTALS[k] for k in STEP_KINDS)
        # training work, each second once: the loop's iterations whole, every step outside them (warm-up, M_A,
        # baselines)
        training = TOTALS["loop iterations"] + sum(TOTALS[k] - IN_LOOP[k] for k in STEP_KINDS)
        for phase, seconds in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
            if seconds > 0:
                print(f"| {method} | {phase}{NESTED.get(phase, '')} | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
        print(f"| {method} | **wall** | {wall:.2f} | steps {100 * steps / wall:.1f}%, outside "
              f"{100 * (wall - steps) / wall:.1f}%; training {100 * training / wall:.1f}%, outside training "
              f"{100 * (wall - training) / wall:.1f}% |")
        print(json.dumps({"method": method, "wall_s": wall, "steps_s": steps, "training_s": training,
                          "outside_training_share": (wall - training) / wall, "phases": dict(TOTALS),
                          "size": args.size, "iterations": args.iterations,
                          "steps_per_epoch": transfer_config.steps_per_epoch, "real": args.real}))


if __name__ == "__main__":
    main()
