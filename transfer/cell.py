"""One experiment cell (method, label fraction, seed): build the context, run the method, score its predictor.

Layout of a cell folder ``out/cells/<method>/f<fraction>/s<seed>-<identity>/``: ``config.json``, ``splits.json``
(with the labelled ids), ``metrics.json`` (the result), ``per_image.csv``, and what the method writes (``tb/``,
``checkpoints/``, models). ``<identity>`` hashes the configuration the method reads and the data, so a changed
setting makes a new cell instead of reusing a finished one (:func:`cell_identity`).

Under ``torchrun`` one cell runs across the ranks: every rank runs the method (its segmenter trainings in DDP), rank 0
alone writes the cell folder and scores the test split, and every rank returns rank 0's result. A method registered
with ``distributed=False`` is refused there (:func:`check_distributed`).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from runtime.config import config_to_dict, save_config
from runtime.device import configure_backends
from runtime.distributed import barrier, is_main_process, launched_by_torchrun, local_device, on_main
from runtime.io import atomic_write_json
from runtime.seed import seed_everything
from segmentation.data.dataset import CXRData
from segmentation.data.splits import save_splits
from segmentation.inference import probabilities_to_masks
from segmentation.training import write_rows_csv
from transfer.baselines import select_classes
from transfer.config import ExperimentConfig
from transfer.methods import METHODS, CellContext, get_method
from transfer.methods.base import mean_jaccard, score
from transfer.protocol import TargetView, labelled_ids
from transfer.report import write_overlays
from transfer.shared import cell_splits, load_cell_data, source_model, source_splits

OVERLAYS = "overlays.png"
#: the ExperimentConfig fields every method reads (with the method's own ``Method.options``)
SHARED_FIELDS = ("method", "fraction", "seed", "classes", "source_classes", "size", "segmenter", "segmenter_kwargs",
                 "source_iterations", "source_lr", "split_seed", "folds", "fold", "max_test", "transfer.normalize_mode",
                 "transfer.loss", "transfer.batch_size", "transfer.amp")
#: fields in a cell's identity only when they differ from the value every cell had before the field existed (absent
#: means that value), so that the cells measured then keep their keys
OPTIONAL_FIELDS = {"dark_gate": 0.0}


@lru_cache(maxsize=32)
def _fingerprint(folder: str) -> str:
    """Hash of the file names and sizes of a prepared dataset (images and masks): the data part of a cell's id."""
    root = Path(folder)
    if not folder or not root.is_dir():
        return ""
    items = sorted(f"{p.relative_to(root)}:{p.stat().st_size}" for sub in ("images", "masks")
                   if (root / sub).is_dir() for p in (root / sub).rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:12]


def cell_identity(exp: ExperimentConfig) -> dict[str, Any]:
    """The settings and data a cell's result depends on: the shared fields, the method's options, the datasets.

    Raises:
        ValueError: for an unknown method.
    """
    method = get_method(exp.method)
    config = config_to_dict(exp)
    identity: dict[str, Any] = {}
    for name in (*SHARED_FIELDS, *method.options):
        value: Any = config
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        identity[name] = value
    identity.update({name: config[name] for name, default in OPTIONAL_FIELDS.items() if config[name] != default})
    identity["data"] = {"source": _fingerprint(exp.source), "target": _fingerprint(exp.target)}
    return identity


def identity_hash(exp: ExperimentConfig) -> str:
    """Eight hex digits of :func:`cell_identity`."""
    return hashlib.sha256(json.dumps(cell_identity(exp), sort_keys=True).encode()).hexdigest()[:8]


def check_distributed(methods: Iterable[str]) -> None:
    """Under torchrun, refuse a method registered with ``distributed=False`` (nothing to check on one process).

    Raises:
        ValueError: one line naming the first such method and what to do instead.
    """
    if not launched_by_torchrun():
        return
    refused = [m for m in dict.fromkeys(methods) if not get_method(m).distributed]
    if refused:
        allowed = ", ".join(name for name, m in METHODS.items() if m.distributed)
        raise ValueError(f"method {refused[0]} does not run under torchrun (registered with distributed=False); run "
                         f"it as one process (under torchrun: {allowed})")


def cell_key(exp: ExperimentConfig) -> str:
    """Identity of a cell inside a sweep: ``method|fraction|seed|hash``."""
    return f"{exp.method}|{exp.fraction:.4f}|{exp.seed}|{identity_hash(exp)}"


def cell_dir(exp: ExperimentConfig) -> Path:
    """The cell folder under the sweep root ``exp.out``."""
    fold = f"-k{exp.fold}" if exp.folds else ""
    return Path(exp.out) / "cells" / exp.method / f"f{exp.fraction:.4f}" / f"s{exp.seed}{fold}-{identity_hash(exp)}"


def run_cell(exp: ExperimentConfig, source: CXRData | None = None, target: CXRData | None = None) -> dict[str, Any]:
    """Run one cell and return its result (also written to the cell's ``metrics.json``).

    A cell that already has ``metrics.json`` is not recomputed; an interrupted cell resumes what its method
    resumes. The method receives the target training part (labels counted) and the validation images, never the
    test split: its predictor is applied to the test images here, once, for the final evaluation. Under torchrun
    (the process group joined) every rank runs the method, rank 0 alone writes and scores, and every rank returns rank
    0's result.

    Args:
        exp: the cell.
        source / target: preloaded datasets (default: read from ``exp.source`` / ``exp.target``).

    Returns:
        ``key``, ``identity``, ``method``, ``fraction``, ``seed``, ``n_labelled``, ``n_test``, ``jaccard`` /
        ``dice`` (mean and std over test images, mean over classes), per-class means, ``per_image`` lists,
        ``seconds``, the method's logs and, where it reports some, ``views`` (test Jaccard of other predictions).

    Raises:
        ValueError: for an unknown method, a method that needs labels at fraction 0, or one refused under torchrun.
    """
    method = get_method(exp.method)
    if method.needs_labels and exp.fraction == 0:
        raise ValueError(f"expected fraction > 0 for method {exp.method!r} (it needs target labels), got 0")
    check_distributed([exp.method])
    run = cell_dir(exp)
    done = run / "metrics.json"
    finished = on_main(lambda: json.loads(done.read_text()) if done.is_file() else None)
    if finished is not None:
        return finished
    start = time.perf_counter()
    if source is None or target is None:
        source, target = load_cell_data(exp)
    device = local_device(exp.device)
    configure_backends(device)
    seed_everything(exp.seed)
    splits = cell_splits(exp, target.ids)
    labelled = labelled_ids(splits["train"], exp.fraction, exp.seed)
    if is_main_process():
        save_config(exp, run / "config.json")
        atomic_write_json(run / "identity.json", cell_identity(exp))
        save_splits(run / "splits.json", {**splits, "labelled": labelled})
    m_a_full, full_config = source_model(exp, source, device)
    m_a, seg_config, source_scored = m_a_full, full_config, source
    index = [exp.model_classes.index(c) for c in exp.classes]
    if exp.model_classes != exp.classes:  # M_A has more classes than the target is scored on: its head is sliced
        m_a, seg_config = select_classes(m_a_full, index), full_config.replace(classes=tuple(exp.classes))
        source_scored = CXRData(images=source.images, masks=source.masks[:, index], ids=source.ids,
                                classes=exp.classes, spacing_mm=source.spacing_mm)
    ctx = CellContext(exp=exp, device=device, run=run, m_a=m_a, seg_config=seg_config, m_a_full=m_a_full,
                      full_config=full_config, class_index=index, source=source_scored, source_full=source,
                      source_split=source_splits(source, exp),
                      target=TargetView.from_data(target.subset(splits["train"]), labelled),
                      target_val=target.subset(splits["val"]))
    output = method.run(ctx)

    def finish() -> dict[str, Any]:  # on rank 0: score the test split, taken only now, and write the result
        test = target.subset(splits["test"])
        if exp.max_test:
            test = test.subset(list(range(min(exp.max_test, len(test)))))
        config = output.config.replace(dark_gate=exp.dark_gate)  # the same gate for every method's predictor
        rows = score(output.predict, config, test)
        extra = dict(output.logs)
        if output.views:
            extra["views"] = {name: mean_jaccard(score(view, config, test), test.classes)
                              for name, view in output.views.items()}
        if output.predict_all_classes is not None:
            images = test.images[:8]
            masks = probabilities_to_masks(output.predict_all_classes(images), full_config)
            write_overlays(images, masks, full_config.classes, run / OVERLAYS, titles=list(test.ids[:8]))
        result = _summarize(exp, rows, len(labelled), time.perf_counter() - start, extra)
        write_rows_csv(run / "per_image.csv", rows)
        atomic_write_json(done, result)
        return result

    result = on_main(finish)
    barrier()
    return result


def _class_means(rows: list[dict[str, Any]], classes: Sequence[str], metric: str) -> list[float]:
    """Per image, the mean of ``metric`` over ``classes``."""
    return [sum(float(r[f"{metric}/{c}"]) for c in classes) / len(classes) for r in rows]


def _summarize(exp: ExperimentConfig, rows: list[dict[str, Any]], n_labelled: int, seconds: float,
               extra: dict[str, Any]) -> dict[str, Any]:
    classes = tuple(exp.classes)
    per_image = {"id": [r["id"] for r in rows]}
    result: dict[str, Any] = {"key": cell_key(exp), "identity": identity_hash(exp), "method": exp.method,
                              "fraction": exp.fraction, "seed": exp.seed, "folds": exp.folds, "fold": exp.fold,
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
