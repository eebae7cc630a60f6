"""One experiment cell, and a resumable grid of cells (methods x label fractions x seeds).

Layout under the sweep root ``out``::

    splits.json                  target (Montgomery) 60/20/20 split, drawn once with ``split_seed``
    source_splits.json           source (JSRT) 80/20 train/val split
    source/s<seed>/segmenter.pt  M_A, trained once per seed and reused by every cell
    warmup/s<seed>_<key>.pt      the warmed-up translator, trained once per seed and reused by every fraction
    cells/<method>/f<fraction>/s<seed>/  config.json, splits.json, metrics.json, per_image.csv, tb/, checkpoints/
    results.jsonl                one line per finished cell, appended atomically

A killed sweep resumes without recomputing: cells listed in ``results.jsonl`` are skipped, a cell whose
``metrics.json`` exists is read back, and an interrupted transfer cell continues from its last checkpoint. With
``jobs > 1`` cells run as subprocesses (``python -m transfer.sweep --cell CONFIG``), several at once on one GPU;
only the parent writes ``results.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from runtime.config import config_to_dict, load_config, save_config
from runtime.device import resolve_device
from runtime.io import atomic_write_json, atomic_write_text
from runtime.preflight import check_divisible, check_memory, check_writable, count_images, dataset_bytes
from runtime.seed import seed_everything
from segmentation.data.dataset import CXRData, load_dataset
from segmentation.data.preprocessing import normalize
from segmentation.data.splits import save_splits, split_ids
from segmentation.metrics import evaluate_masks
from segmentation.training import (
    SegmentationConfig,
    build_segmenter,
    load_segmenter,
    probabilities_to_masks,
    save_segmenter,
    write_rows_csv,
)
from transfer.baselines import (
    cell_dir,
    fine_tune,
    from_scratch,
    histogram_matching,
    segmentation_config,
    select_classes,
    source_only,
    train_source_segmenter,
)
from transfer.config import ExperimentConfig
from transfer.orchestrator import TransferOrchestrator
from transfer.protocol import TargetView, labelled_ids, target_splits
from transfer.selection import Selector
from translation import create_translator

SOURCE_SPLIT = (0.8, 0.2, 0.0)
RESULTS = "results.jsonl"
FRACTION_FREE = ("source_only", "histmatch")


# ----------------------------------------------------------------------------------------------- data and shared parts
def load_cell_data(exp: ExperimentConfig) -> tuple[CXRData, CXRData]:
    """Source and target datasets of a cell, at ``exp.size`` with ``exp.classes``.

    Raises:
        ValueError: if a folder is not given (pass --source and --target).
    """
    if not exp.source or not exp.target:
        raise ValueError(f"expected source and target dataset folders, got {exp.source!r} and {exp.target!r}; "
                         "pass --source DIR --target DIR (prepared by cxr-transfer prepare)")
    return (load_dataset(exp.source, classes=exp.model_classes, size=exp.size),
            load_dataset(exp.target, classes=exp.classes, size=exp.size))


def check_experiment(exp: ExperimentConfig, transfer: bool = True) -> None:
    """Checks that need no data: writable ``--out``, the image side against the models' divisors, memory to load.

    Raises:
        ValueError: one line naming the option and the fix.
    """
    check_writable(exp.out, "--out")
    segmenter = build_segmenter(segmentation_config(exp, 1, 1e-3, classes=exp.model_classes))
    check_divisible(exp.size, getattr(segmenter, "required_divisor", 1), "--size", exp.segmenter)
    if transfer:
        translator = create_translator(exp.translator, exp.translator_preset, **exp.translator_kwargs)
        check_divisible(exp.size, getattr(translator, "required_divisor", 1), "--size", exp.translator)
    for folder, classes, option in ((exp.source, exp.model_classes, "--source"), (exp.target, exp.classes,
                                                                                 "--target")):
        if folder:
            check_memory(dataset_bytes(count_images(folder), exp.size, 1 + len(classes)),
                         f"loading {option} {folder} at --size {exp.size}", "lower --size")


def check_datasets(exp: ExperimentConfig, source: CXRData, target: CXRData) -> None:
    """Refuse datasets too small for the protocol: the source needs train and validation images, the target an
    image in each of train, validation and test (the split is drawn as the cells will draw it, nothing is saved).

    Raises:
        ValueError: one line naming the folder, the counts and the fix.
    """
    src = split_ids(source.ids, fractions=SOURCE_SPLIT, seed=exp.split_seed)
    if not src["train"] or not src["val"]:
        raise ValueError(f"expected at least 2 source images (train and validation), got {len(source)} in "
                         f"--source {exp.source}; add images")
    tgt = target_splits(target.ids, exp.split_seed)
    counts = {k: len(v) for k, v in tgt.items()}
    if not all(counts.get(k) for k in ("train", "val", "test")):
        raise ValueError(f"expected target images in train, validation and test of the 60/20/20 split, got {counts} "
                         f"from {len(target)} image(s) in --target {exp.target}; the protocol needs at least 3 "
                         "(tens for a meaningful table)")


def data_key(*parts: Iterable[str] | str | int) -> str:
    """Short hash of ids and settings, naming cached shared artefacts."""
    payload = json.dumps([list(p) if not isinstance(p, (str, int)) else p for p in parts])
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def source_splits(source: CXRData, exp: ExperimentConfig) -> dict[str, list[str]]:
    """The 80/20 train/val split of the source ids (saved as ``source_splits.json`` under the sweep root)."""
    path = Path(exp.out) / "source_splits.json"
    if path.is_file():
        splits = json.loads(path.read_text())
        if sorted(splits["train"] + splits["val"] + splits.get("test", [])) == sorted(source.ids):
            return splits
    splits = split_ids(source.ids, fractions=SOURCE_SPLIT, seed=exp.split_seed)
    save_splits(path, splits)
    return splits


def source_model(exp: ExperimentConfig, source: CXRData, device: torch.device) -> tuple[torch.nn.Module,
                                                                                         SegmentationConfig]:
    """M_A for ``exp.seed``: loaded from ``out/source/s<seed>/segmenter.pt`` or trained on the source and saved.

    Raises:
        ValueError: if a cached M_A was trained with another configuration (choose another --out).
    """
    splits = source_splits(source, exp)
    config = segmentation_config(exp, exp.source_iterations, exp.source_lr, augment=True, classes=exp.model_classes)
    folder = Path(exp.out) / "source" / f"s{exp.seed}"
    path = folder / "segmenter.pt"
    if path.is_file():
        model, saved, _ = load_segmenter(path, map_location=device)
        mine, theirs = config_to_dict(config), config_to_dict(saved)
        different = sorted(k for k in mine if k not in ("device", "progress") and mine[k] != theirs.get(k))
        if different:
            raise ValueError(f"expected the cached source segmenter {path} to match this experiment, got different "
                             f"{different}; use another --out or delete {folder}")
        return model, config
    train, val = source.subset(splits["train"]), source.subset(splits["val"]) if splits["val"] else None
    model = train_source_segmenter(train, val, config, run_dir=folder / "run")
    save_segmenter(model, path, config, {"source": exp.source, "train_ids": splits["train"]})
    return model.to(device), config


def _transfer_config(exp: ExperimentConfig):
    return exp.transfer.replace(seed=exp.seed)


def _norm(exp: ExperimentConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    mode = exp.transfer.normalize_mode
    return lambda x: normalize(x, mode)


def _warmup_file(exp: ExperimentConfig, source_train_ids: Sequence[str], target_train_ids: Sequence[str]
                 ) -> tuple[Path, str]:
    key = data_key(source_train_ids, target_train_ids, exp.size, exp.translator, exp.translator_preset,
                   json.dumps(exp.translator_kwargs, sort_keys=True))
    return Path(exp.out) / "warmup" / f"s{exp.seed}_{exp.translator}_{key}.pt", key


def _build_translator(exp: ExperimentConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(exp.seed)
    return create_translator(exp.translator, exp.translator_preset, **exp.translator_kwargs).to(device)


def prepare_shared(exp: ExperimentConfig, source: CXRData | None = None, target: CXRData | None = None,
                   warm_up: bool = True) -> None:
    """Train (or find) what every cell of seed ``exp.seed`` shares: M_A and the warmed-up translator."""
    if source is None or target is None:
        source, target = load_cell_data(exp)
    device = resolve_device(exp.device)
    seed_everything(exp.seed)
    model, _ = source_model(exp, source, device)
    if not warm_up:
        return
    splits = target_splits(target.ids, exp.split_seed, Path(exp.out) / "splits.json")
    src = source.subset(source_splits(source, exp)["train"])
    tgt = target.subset(splits["train"])
    path, key = _warmup_file(exp, src.ids, tgt.ids)
    orch = TransferOrchestrator(_build_translator(exp, device), copy.deepcopy(model), _transfer_config(exp),
                                normalize=_norm(exp), run_dir=path.with_suffix(""))  # TensorBoard: <cache>/tb
    orch.warm_up(src.images, tgt.images, cache=path, key=key)


# ----------------------------------------------------------------------------------------------------- one cell
def run_cell(exp: ExperimentConfig, source: CXRData | None = None, target: CXRData | None = None) -> dict[str, Any]:
    """Run one cell (method, fraction, seed) and return its result (also written to the cell's ``metrics.json``).

    A cell that already has ``metrics.json`` is not recomputed; an interrupted transfer cell resumes from its last
    checkpoint. The target test split is used only for the final evaluation.

    Args:
        exp: the cell.
        source / target: preloaded datasets (default: read from ``exp.source`` / ``exp.target``).

    Returns:
        ``key``, ``method``, ``fraction``, ``seed``, ``n_labelled``, ``n_test``, ``jaccard`` / ``dice`` (mean and
        std over test images, mean over classes), per-class means, ``per_image`` lists, ``seconds`` and, for the
        transfer method, ``best_iteration`` and the selection history.
    """
    run = cell_dir(exp.out, exp)
    done = run / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    if source is None or target is None:
        source, target = load_cell_data(exp)
    device = resolve_device(exp.device)
    seed_everything(exp.seed)
    root = Path(exp.out)
    splits = target_splits(target.ids, exp.split_seed, root / "splits.json")
    labelled = labelled_ids(splits["train"], exp.fraction, exp.seed)
    save_config(exp, run / "config.json")
    save_splits(run / "splits.json", {**splits, "labelled": labelled})
    view = TargetView.from_data(target.subset(splits["train"]), labelled)
    test = target.subset(splits["test"])
    if exp.max_test:
        test = test.subset(list(range(min(exp.max_test, len(test)))))
    m_a, seg_config = source_model(exp, source, device)
    m_a_full, full_config, source_full = m_a, seg_config, source
    index = [exp.model_classes.index(c) for c in exp.classes]
    if exp.model_classes != exp.classes:  # M_A has more classes than the target is scored on: the baselines use
        # the shared ones (head sliced); transfer keeps all of them in its source losses (see _run_transfer)
        m_a, seg_config = select_classes(m_a_full, index), seg_config.replace(classes=tuple(exp.classes))
        source = CXRData(images=source.images, masks=source.masks[:, index], ids=source.ids, classes=exp.classes,
                         spacing_mm=source.spacing_mm)
    extra: dict[str, Any] = {}
    ft_config = segmentation_config(exp, max(1, exp.finetune_iterations), exp.finetune_lr, augment=True,
                                    seed_offset=1000)
    if exp.method == "source_only" or (exp.method == "finetune" and not labelled):
        rows = source_only(m_a, test, seg_config)
        if exp.method == "source_only" and m_a_full is not m_a:
            write_class_overlays(run / OVERLAYS, torch.nn.Identity(), m_a_full, test, full_config, ("direct",))
    elif exp.method == "histmatch":
        src_train = source.subset(source_splits(source, exp)["train"])
        rows = histogram_matching(m_a, test, src_train.images, seg_config)
    elif exp.method == "finetune":
        model = fine_tune(m_a, view.labelled(), ft_config, run_dir=run / "segment")
        rows = source_only(model, test, ft_config)
    elif exp.method == "scratch":
        model = from_scratch(view.labelled(), ft_config.replace(lr=exp.source_lr), run_dir=run / "segment")
        rows = source_only(model, test, ft_config)
    else:
        start_model = m_a_full
        if exp.transfer.segmenter_init == "finetune" and labelled:  # same classes: ExperimentConfig checks it
            start_model = fine_tune(m_a, view.labelled(), ft_config, run_dir=run / "init_finetune")
        rows, extra = _run_transfer(exp, source_full, target, splits, view, test, start_model, full_config,
                                    seg_config, index, device, run)
        orch = extra.pop("_orchestrator")
        if m_a_full is not m_a:
            write_class_overlays(run / OVERLAYS, orch.ema_translator.module, orch.ema_segmenter.module, test,
                                 full_config, ("translated",))
    result = _summarize(exp, rows, len(labelled), time.perf_counter() - start, extra)
    write_rows_csv(run / "per_image.csv", rows)
    atomic_write_json(done, result)
    return result


def _run_transfer(exp, source, target, splits, view, test, m_a, model_config, seg_config, index, device, run):
    # M_A and the source masks have the classes exp.model_classes; the target masks (labelled subset, validation,
    # test) have exp.classes, which are M_A's channels ``index``.
    config = _transfer_config(exp)
    channels = index if tuple(exp.model_classes) != tuple(exp.classes) else None
    src_splits = source_splits(source, exp)
    src_train, src_val = source.subset(src_splits["train"]), source.subset(src_splits["val"])
    labelled_data = view.labelled()
    labelled_pair = (labelled_data.images, labelled_data.masks) if labelled_data is not None else None
    target_val = target.subset(splits["val"])
    unlabelled = view.unlabelled_images()
    selector = Selector(config.selection, _norm(exp), source_val=(src_val.images, src_val.masks),
                        target_images=torch.cat([unlabelled, target_val.images]), labelled=labelled_pair,
                        target_val=(target_val.images, target_val.masks)
                        if config.selection == "paper_target_val" else None, target_channels=channels,
                        source_masks=src_train.masks, views=config.predict_views)
    path, key = _warmup_file(exp, src_train.ids, view.ids)
    orch = TransferOrchestrator(_build_translator(exp, device), copy.deepcopy(m_a).to(device), config,
                                normalize=_norm(exp), run_dir=run, target_channels=channels)
    fit = orch.fit(src_train.images, src_train.masks, unlabelled, labelled_pair, selector, warmup_cache=path,
                   warmup_key=key, resume=True)
    save_adapted(run, orch, exp, model_config)
    probs = torch.sigmoid(orch.predict(test.images)[:, index])
    rows = _score_masks(probabilities_to_masks(probs, seg_config), test)
    extra = {"best_iteration": fit.best_iteration, "best_score": fit.best_score, "selection": config.selection,
             "history": fit.history, "train_seconds": fit.seconds, "_orchestrator": orch,
             "views": _view_scores(orch, test, index, seg_config)}
    return rows, extra


VIEW_SCORES = {"paper": ("translated",), "direct": ("direct",), "direct_flip": ("direct", "direct_flip")}


def _view_scores(orch: TransferOrchestrator, test: CXRData, index: list[int], seg_config: SegmentationConfig
                 ) -> dict[str, float]:
    """Mean test Jaccard (over images, classes averaged) of the selected models under other prediction views than
    ``config.predict_views``: the paper's M_A(G_BA(b)), the adapted M_A(b) alone, and M_A(b) with its flip.

    Reported beside the cell's result (never used to select anything), so a sweep shows which view serves the target
    best: measured on JSRT -> Montgomery at 128 px the direct view beat the four-view default, on phantoms it lost.
    """
    out = {}
    for name, views in VIEW_SCORES.items():
        probs = torch.sigmoid(orch.predict(test.images, views=views)[:, index])
        values = _class_means(_score_masks(probabilities_to_masks(probs, seg_config), test), test.classes, "jaccard")
        out[name] = sum(values) / max(1, len(values))
    return out


def _score_masks(masks: torch.Tensor, test: CXRData) -> list[dict[str, Any]]:
    """Per-image metric rows (with ``id``) of predicted masks against the test masks."""
    return [{"id": i, **r} for i, r in zip(test.ids, evaluate_masks(masks.cpu(), test.masks.cpu() > 0.5,
                                                                     test.classes, spacing_mm=test.spacing_mm))]


def _class_means(rows: list[dict[str, Any]], classes: Sequence[str], metric: str) -> list[float]:
    """Per image, the mean of ``metric`` over ``classes``."""
    return [sum(float(r[f"{metric}/{c}"]) for c in classes) / len(classes) for r in rows]


OVERLAYS = "overlays.png"


def write_class_overlays(path: Path, translator: torch.nn.Module, segmenter: torch.nn.Module, test: CXRData,
                         config: SegmentationConfig, views: Sequence[str], count: int = 8) -> Path:
    """PNG of the first ``count`` target test images with every class of a (multi-class) M_A outlined.

    Montgomery has lung masks only, so these qualitative pictures are the only check of heart and clavicles there.
    """
    from transfer.orchestrator import predict_views
    from transfer.report import write_overlays

    images = test.images[:count].cpu()
    probs = predict_views(translator, segmenter, images, lambda x: normalize(x, config.normalization), views)
    masks = probabilities_to_masks(probs.cpu(), config)  # predict_views runs on the models' device
    return write_overlays(images, masks, config.classes, path, titles=list(test.ids[:count]))


ADAPTED_TRANSLATOR = "translator.pt"
ADAPTED_SEGMENTER = "segmenter.pt"


def save_adapted(run: Path, orch: TransferOrchestrator, exp: ExperimentConfig,
                 seg_config: SegmentationConfig) -> None:
    """Write the selected (EMA) G_BA translator and M_A of a transfer cell, for ``cxr-transfer transfer predict``."""
    from translation import save_translator

    save_translator(orch.ema_translator.module, run / ADAPTED_TRANSLATOR,
                    {"image_size": exp.size, "normalization": "[-1, 1] = 2 * x - 1", "domains": {
                        "a": exp.source, "b": exp.target}, "checksums": {}})
    save_segmenter(orch.ema_segmenter.module, run / ADAPTED_SEGMENTER, seg_config,
                   {"adapted": True, "target": exp.target, "input": "M_A(G_BA(b))"})


def _summarize(exp: ExperimentConfig, rows: list[dict[str, Any]], n_labelled: int, seconds: float,
               extra: dict[str, Any]) -> dict[str, Any]:
    classes = tuple(exp.classes)
    per_image = {"id": [r["id"] for r in rows]}
    result: dict[str, Any] = {"key": exp.key, "method": exp.method, "fraction": exp.fraction, "seed": exp.seed,
                              "n_labelled": n_labelled, "n_test": len(rows)}
    for metric in ("jaccard", "dice"):
        values = _class_means(rows, classes, metric)
        per_image[metric] = values
        t = torch.tensor(values, dtype=torch.float64)
        result[metric] = float(t.mean()) if len(values) else float("nan")
        result[f"{metric}_std"] = float(t.std()) if len(values) > 1 else 0.0
        for c in classes:
            result[f"{metric}/{c}"] = float(sum(float(r[f"{metric}/{c}"]) for r in rows) / max(1, len(rows)))
    result.update(seconds=seconds, per_image=per_image, **extra)
    return result


# ----------------------------------------------------------------------------------------------------- the grid
def grid(base: ExperimentConfig, methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int]
         ) -> list[ExperimentConfig]:
    """The cells of a sweep, seed-major. ``scratch`` skips fraction 0 (undefined); ``source_only`` and
    ``histmatch`` do not depend on the fraction and run once per seed (at fraction 0)."""
    cells = []
    for seed in seeds:
        for fraction in fractions:
            for method in methods:
                if method == "scratch" and fraction == 0:
                    continue
                if method in FRACTION_FREE and fraction != min(fractions):
                    continue
                f = 0.0 if method in FRACTION_FREE else float(fraction)
                cells.append(base.replace(method=method, fraction=f, seed=int(seed)))
    return cells


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl`` (a missing file is empty; a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_result(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` atomically (the file is rewritten whole through a rename)."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(row) + "\n")


def _run_subprocess(exp: ExperimentConfig) -> dict[str, Any]:
    run = cell_dir(exp.out, exp)
    config_path = run / "cell_config.json"
    save_config(exp, config_path)
    log = run / "cell.log"
    with open(log, "ab") as handle:
        proc = subprocess.run([sys.executable, "-m", "transfer.sweep", "--cell", str(config_path)],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=os.getcwd())
    if proc.returncode != 0:
        raise RuntimeError(f"cell {exp.key} failed with exit code {proc.returncode}; see {log}")
    return json.loads((run / "metrics.json").read_text())


def run_sweep(base: ExperimentConfig, methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int],
              jobs: int = 1, runner: Callable[[ExperimentConfig], dict[str, Any]] | None = None,
              prepare: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every unfinished cell of the grid and append each result to ``out/results.jsonl``.

    Args:
        base: configuration shared by the cells (data, sizes, models, out).
        methods / fractions / seeds: the grid (see :func:`grid`).
        jobs: cells at once; above 1 each cell is a subprocess (one GPU can hold several).
        runner: runs one cell in-process (default :func:`run_cell`, with the datasets loaded once); tests inject
            a counting runner.
        prepare: first train the shared M_A and warmed-up translator of each seed (so parallel cells do not race).
        log: progress messages.

    Returns:
        The rows of ``results.jsonl`` for the cells of this grid.

    Raises:
        ValueError: if ``jobs < 1``.
    """
    if jobs < 1:
        raise ValueError(f"expected jobs >= 1, got {jobs}")
    out = Path(base.out)
    results_path = out / RESULTS
    cells = grid(base, methods, fractions, seeds)
    finished = {r["key"] for r in read_results(results_path)}
    todo = [c for c in cells if c.key not in finished]
    data: list[CXRData] = []
    if runner is None and todo:  # everything checkable is checked before anything is written
        check_experiment(base, any(c.method == "transfer" for c in todo))
        data.extend(load_cell_data(base))
        check_datasets(base, *data)
    out.mkdir(parents=True, exist_ok=True)
    log(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    if runner is None:
        runner = (lambda exp: run_cell(exp, *data)) if jobs == 1 else _run_subprocess
        if prepare and todo:
            for seed in sorted({c.seed for c in todo}):
                prepare_shared(base.replace(seed=seed), *data,
                               warm_up=any(c.method == "transfer" and c.seed == seed for c in todo))
    lock = threading.Lock()

    def one(exp: ExperimentConfig) -> None:
        t0 = time.perf_counter()
        row = runner(exp)
        row = {k: v for k, v in row.items() if k != "history"}
        with lock:
            append_result(results_path, row)
        log(f"  {exp.key}: jaccard {row.get('jaccard', float('nan')):.4f} ({time.perf_counter() - t0:.1f} s)")

    if jobs == 1:
        for exp in todo:
            one(exp)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, exp) for exp in todo]:
                future.result()
    keys = {c.key for c in cells}
    return [r for r in read_results(results_path) if r["key"] in keys]


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
