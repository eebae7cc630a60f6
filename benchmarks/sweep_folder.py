"""What the benchmarks that re-read a finished cross-validated sweep share: its experiment and its source model.

A sweep folder (``experiment sweep --folds K``, e.g. the OUT of ``benchmarks/crossval_cpu.sh``) holds
``sweep_config.json``, ``folds_k<K>.json`` (the sweep's ``--folds`` is not in its config file) and
``source/s<seed>/segmenter.pt`` (M_A). Imported by the scripts beside it (``python benchmarks/<script>.py`` puts
this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from torch import nn

from runtime.config import load_config
from segmentation.config import SegmentationConfig
from segmentation.inference import load_segmenter
from transfer.baselines import select_classes
from transfer.config import ExperimentConfig

DATA = Path(os.environ.get("CXR_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--source`` / ``--target``: the prepared datasets (default ``$CXR_DATA/jsrt`` and ``$CXR_DATA/montgomery``)."""
    parser.add_argument("--source", type=Path, default=DATA / "jsrt")
    parser.add_argument("--target", type=Path, default=DATA / "montgomery")


def sweep_experiment(out: Path, source: Path, target: Path, **changes: Any) -> ExperimentConfig:
    """The sweep's ``ExperimentConfig`` with its fold count, ``out`` and the datasets (and ``changes``).

    Raises:
        FileNotFoundError: one line naming the missing file and what to pass instead.
    """
    config_path = out / "sweep_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; pass the folder of an experiment sweep --folds K")
    found = sorted(out.glob("folds_k*.json"))
    if not found:
        raise FileNotFoundError(f"no folds_k<K>.json in {out}; run the sweep with --folds K first")
    return load_config(ExperimentConfig, config_path).replace(
        out=str(out), folds=int(found[0].stem.removeprefix("folds_k")), source=str(source), target=str(target),
        **changes)


def source_model(exp: ExperimentConfig) -> tuple[nn.Module, SegmentationConfig]:
    """The sweep's M_A of ``exp.seed`` with the scored classes (its head sliced when the source has more).

    Raises:
        FileNotFoundError: one line naming the missing model file.
    """
    path = Path(exp.out) / "source" / f"s{exp.seed}" / "segmenter.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the sweep first (it writes M_A)")
    model, config, _ = load_segmenter(path)
    if exp.model_classes != exp.classes:
        index = [exp.model_classes.index(c) for c in exp.classes]
        model, config = select_classes(model, index), config.replace(classes=tuple(exp.classes))
    return model, config
