"""A resumable grid of experiment cells (methods x label fractions x seeds).

Layout under the sweep root ``out``: what the cells of a seed share (:mod:`transfer.shared`), one folder per cell
(:mod:`transfer.cell`), and ``results.jsonl``, one line per finished cell, appended atomically
(:mod:`transfer.results`).

A killed sweep resumes without recomputing: cells listed in ``results.jsonl`` are skipped, a cell whose
``metrics.json`` exists is read back, and an interrupted transfer cell continues from its last checkpoint. A cell's
key holds a hash of the settings its method reads and of the data, so a sweep rerun with other settings into the
same ``out`` computes new cells instead of mixing old results in. With ``jobs > 1`` cells run as subprocesses
(``python -m transfer.sweep --cell CONFIG``), several at once on one GPU; only the parent writes ``results.jsonl``.
Under ``torchrun`` the cells run one after another, each across every rank (:func:`transfer.cell.run_cell`); rank 0
alone writes and logs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from runtime.config import load_config, save_config
from runtime.distributed import init_distributed, is_main_process, launched_by_torchrun, on_main
from segmentation.data.dataset import CXRData
from transfer.cell import cell_dir, cell_key, check_distributed, run_cell
from transfer.config import ExperimentConfig
from transfer.methods import get_method
from transfer.results import RESULTS, append_result, read_results
from transfer.shared import (
    check_datasets,
    check_experiment,
    load_cell_data,
    prepare_shared,
)


# ----------------------------------------------------------------------------------------------------- the grid
def grid(base: ExperimentConfig, methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int],
         folds: Sequence[int] | None = None) -> list[ExperimentConfig]:
    """The cells of a sweep, seed-major, then fold by fold (every fold of ``base.folds``; the one split when 0). A
    method that needs labels skips fraction 0; a fraction-free one (``source_only``, ``histmatch``) runs once per
    seed and fold, at fraction 0.

    Raises:
        ValueError: for a method name the registry does not hold.
    """
    cells = []
    if folds is None:
        folds = range(base.folds) if base.folds else (base.fold,)
    for seed in seeds:
        for fold in folds:
            cells.extend(_fold_cells(base.replace(fold=fold), methods, fractions, seed))
    return cells


def _fold_cells(base: ExperimentConfig, methods: Sequence[str], fractions: Sequence[float], seed: int
                ) -> list[ExperimentConfig]:
    cells = []
    for fraction in fractions:
        for name in methods:
            method = get_method(name)
            if method.needs_labels and fraction == 0:
                continue
            if method.fraction_free and fraction != min(fractions):
                continue
            f = 0.0 if method.fraction_free else float(fraction)
            cells.append(base.replace(method=name, fraction=f, seed=int(seed)))
    return cells


def _run_subprocess(exp: ExperimentConfig) -> dict[str, Any]:
    run = cell_dir(exp)
    config_path = run / "cell_config.json"
    save_config(exp, config_path)
    log = run / "cell.log"
    with open(log, "ab") as handle:
        proc = subprocess.run([sys.executable, "-m", "transfer.sweep", "--cell", str(config_path)],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=os.getcwd())
    if proc.returncode != 0:
        raise RuntimeError(f"cell {cell_key(exp)} failed with exit code {proc.returncode}; see {log}")
    return json.loads((run / "metrics.json").read_text())


def run_sweep(base: ExperimentConfig, methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int],
              jobs: int = 1, folds: Sequence[int] | None = None,
              runner: Callable[[ExperimentConfig], dict[str, Any]] | None = None, prepare: bool = True,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every unfinished cell of the grid and append each result to ``out/results.jsonl``.

    Args:
        base: configuration shared by the cells (data, sizes, models, out).
        methods / fractions / seeds / folds: the grid (see :func:`grid`; ``folds`` None: every fold of
            ``base.folds``).
        jobs: cells at once; above 1 each cell is a subprocess (one GPU can hold several).
        runner: runs one cell in-process (default :func:`run_cell`, with the datasets loaded once); tests inject
            a counting runner.
        prepare: first train the shared M_A and warmed-up translator of each seed (so parallel cells do not race).
        log: progress messages (rank 0's only under torchrun).

    Returns:
        The rows of ``results.jsonl`` for the cells of this grid.

    Raises:
        ValueError: if ``jobs < 1``, or under torchrun for ``jobs > 1`` or a method that does not run there.
    """
    if jobs < 1:
        raise ValueError(f"expected jobs >= 1, got {jobs}")
    check_distributed(methods)  # before joining the group: nothing is written, no rank waits for another
    if launched_by_torchrun() and jobs > 1:
        raise ValueError(f"expected --jobs 1 under torchrun (each cell runs across the ranks), got {jobs}; drop --jobs "
                         "or start the sweep as one process")
    if launched_by_torchrun():
        init_distributed(base.device)  # idempotent: the CLI has usually joined the group already
    if not is_main_process():
        log = _silent
    out = Path(base.out)
    results_path = out / RESULTS
    cells = grid(base, methods, fractions, seeds, folds)
    finished = {r["key"] for r in on_main(lambda: read_results(results_path))}
    todo = [c for c in cells if cell_key(c) not in finished]
    data: list[CXRData] = []
    if runner is None and todo:  # everything checkable is checked before anything is written
        check_experiment(base, any(get_method(c.method).translator for c in todo))
        data.extend(load_cell_data(base))
        check_datasets(base, *data)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    log(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    if runner is None:
        runner = (lambda exp: run_cell(exp, *data)) if jobs == 1 else _run_subprocess
        if prepare and todo:
            for seed, fold in sorted({(c.seed, c.fold) for c in todo}):
                prepare_shared(base.replace(seed=seed, fold=fold), *data,
                               warm_up=any(get_method(c.method).translator and (c.seed, c.fold) == (seed, fold)
                                           for c in todo))
    lock = threading.Lock()

    started, done = time.perf_counter(), [0]

    def one(exp: ExperimentConfig) -> None:
        t0 = time.perf_counter()
        row = runner(exp)
        row = {k: v for k, v in row.items() if k != "history"}
        with lock:
            if is_main_process():
                append_result(results_path, row)
            done[0] += 1
            eta = (time.perf_counter() - started) / done[0] * (len(todo) - done[0])
            log(f"  [{done[0]}/{len(todo)}] {cell_key(exp)}: jaccard {row.get('jaccard', float('nan')):.4f} "
                f"({time.perf_counter() - t0:.1f} s; sweep eta {eta:.0f} s)")

    if jobs == 1:
        for exp in todo:
            one(exp)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, exp) for exp in todo]:
                future.result()
    keys = {cell_key(c) for c in cells}
    return [r for r in on_main(lambda: read_results(results_path)) if r["key"] in keys]


def _silent(_message: str) -> None:
    """The log of ranks other than 0."""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transfer.sweep --cell CONFIG``: run one cell from its saved configuration (sweep subprocesses)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--cell", required=True, help="config.json of an ExperimentConfig")
    args = parser.parse_args(argv)
    exp = load_config(ExperimentConfig, args.cell)
    result = run_cell(exp)
    print(json.dumps({k: result[k] for k in ("key", "jaccard", "dice", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
