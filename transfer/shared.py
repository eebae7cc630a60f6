"""What the cells of one seed share, and the checks that run before any of them: data, M_A, the warmed-up translator.

Layout under the sweep root ``out``::

    splits.json                  target 60/20/20 split, drawn once with ``split_seed``
    source_splits.json           source 80/20 train/val split
    source/s<seed>/segmenter.pt  M_A, trained once per seed and reused by every cell
    warmup/s<seed>_<key>.pt      the warmed-up translator, trained once per seed and reused by every fraction

Under ``torchrun`` every rank runs the same code: rank 0 alone writes these files and decides from the ones that
exist (``runtime.distributed.on_main``), and segmenters train on every rank at once (:func:`train_on_ranks`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from runtime.config import config_to_dict
from runtime.distributed import barrier, data_parallel, is_main_process, local_device, on_main, sync_from_main
from runtime.preflight import (
    check_divisible,
    check_memory,
    check_writable,
    count_images,
    dataset_bytes,
)
from runtime.seed import seed_everything
from segmentation.config import SegmentationConfig
from segmentation.data.dataset import CXRData, load_dataset
from segmentation.data.preprocessing import normalize
from segmentation.data.splits import save_splits, split_ids
from segmentation.inference import build_segmenter, load_segmenter, save_segmenter
from segmentation.training import train_segmenter
from transfer.baselines import segmentation_config
from transfer.config import ExperimentConfig
from transfer.orchestrator import TransferOrchestrator
from transfer.protocol import fold_splits, target_splits
from translation import create_translator
from translation.monitor import TranslationMonitor

SOURCE_SPLIT = (0.8, 0.2, 0.0)


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
    on_main(lambda: check_writable(exp.out, "--out"))  # the probe is a write: rank 0's, its outcome everyone's
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
    if exp.folds and len(target) < 2 * exp.folds:
        raise ValueError(f"expected at least {2 * exp.folds} target images for {exp.folds} folds, got {len(target)} "
                         f"in --target {exp.target}; use fewer --folds")
    for fold in range(max(1, exp.folds)):
        tgt = cell_splits(exp.replace(fold=fold), target.ids, save=False)
        counts = {k: len(v) for k, v in tgt.items()}
        if not all(counts.get(k) for k in ("train", "val", "test")):
            what = f"fold {fold} of {exp.folds}" if exp.folds else "the 60/20/20 split"
            raise ValueError(f"expected target images in train, validation and test of {what}, got {counts} "
                             f"from {len(target)} image(s) in --target {exp.target}; the protocol needs at least 3 "
                             "(tens for a meaningful table)")


def cell_splits(exp: ExperimentConfig, ids: Sequence[str], save: bool = True) -> dict[str, list[str]]:
    """The target train / val / test ids of the cell: its fold of ``exp.folds`` folds (assignment saved as
    ``folds_k<k>.json``), or the single 60/20/20 split (``splits.json``), under the sweep root (by rank 0, whose
    split every rank takes)."""
    path = Path(exp.out) / (f"folds_k{exp.folds}.json" if exp.folds else "splits.json")

    def draw(saved: Path | None) -> dict[str, list[str]]:
        if exp.folds:
            return fold_splits(ids, exp.folds, exp.fold, exp.split_seed, saved)
        return target_splits(ids, exp.split_seed, saved)

    return on_main(lambda: draw(path)) if save else draw(None)


def data_key(*parts: Iterable[str] | str | int) -> str:
    """Short hash of ids and settings, naming cached shared artefacts."""
    payload = json.dumps([list(p) if not isinstance(p, (str, int)) else p for p in parts])
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def source_splits(source: CXRData, exp: ExperimentConfig) -> dict[str, list[str]]:
    """The 80/20 train/val split of the source ids (saved as ``source_splits.json`` under the sweep root by rank 0,
    whose split every rank takes)."""
    return on_main(lambda: _source_splits(source, exp))


def _source_splits(source: CXRData, exp: ExperimentConfig) -> dict[str, list[str]]:
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

    Trained as ``transfer.baselines.train_source_segmenter`` trains it (seeded initial weights, best source-validation
    Dice kept, resumable in ``source/s<seed>/run``), across the ranks under torchrun (:func:`train_on_ranks`); rank 0
    saves it and the others wait for the file.

    Raises:
        ValueError: if a cached M_A was trained with another configuration (choose another --out).
    """
    splits = source_splits(source, exp)
    config = segmentation_config(exp, exp.source_iterations, exp.source_lr, augment=True, classes=exp.model_classes)
    folder = Path(exp.out) / "source" / f"s{exp.seed}"
    path = folder / "segmenter.pt"
    if on_main(path.is_file):
        model, saved, _ = load_segmenter(path, map_location=device)
        mine, theirs = config_to_dict(config), config_to_dict(saved)
        different = sorted(k for k in mine if k not in ("device", "progress", "checkpoint_every", "dark_gate")
                           and mine[k] != theirs.get(k))
        if different:
            raise ValueError(f"expected the cached source segmenter {path} to match this experiment, got different "
                             f"{different}; use another --out or delete {folder}")
        return model, config
    train, val = source.subset(splits["train"]), source.subset(splits["val"]) if splits["val"] else None
    report_line(f"source M_A: training {exp.source_iterations} steps on {len(train)} images ({exp.segmenter}, "
                f"{exp.size} px)")
    torch.manual_seed(config.seed)
    model = train_on_ranks(build_segmenter(config), train, val, config, folder / "run", device)
    if is_main_process():
        save_segmenter(model, path, config, {"source": exp.source, "train_ids": splits["train"]})
    barrier()
    return model, config


def train_on_ranks(model: nn.Module, train: CXRData, val: CXRData | None, config: SegmentationConfig,
                   run_dir: Path, device: torch.device, init_state: dict[str, Tensor] | None = None) -> nn.Module:
    """:func:`segmentation.training.train_segmenter` of ``model`` on ``device``, resumable in ``run_dir``; under
    torchrun on every rank at once.

    With several ranks the model trains in ``DistributedDataParallel``: each rank takes its disjoint share of every
    batch (``config.batch_size`` images per rank, so the global batch is that times the number of ranks), gradients
    are averaged, rank 0 alone writes the run folder; at the end every rank holds rank 0's weights. With one process
    this is exactly ``train_segmenter``.

    Returns:
        ``model`` itself (never the wrapper), holding the kept weights.
    """
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # before wrapping, so DDP's buckets see the final layout
    train_segmenter(data_parallel(model), train, val, config, run_dir=run_dir, resume=True, init_state=init_state)
    return sync_from_main(model)


def transfer_config(exp: ExperimentConfig):  # noqa: ANN201 - a TransferConfig
    """The cell's ``TransferConfig``, seeded with the cell's seed."""
    return exp.transfer.replace(seed=exp.seed)


def normalizer(exp: ExperimentConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The segmenter input normalisation of the experiment."""
    mode = exp.transfer.normalize_mode
    return lambda x: normalize(x, mode)


def warmup_file(exp: ExperimentConfig, source_train_ids: Sequence[str], target_train_ids: Sequence[str]
                 ) -> tuple[Path, str]:
    key = data_key(source_train_ids, target_train_ids, exp.size, exp.translator, exp.translator_preset,
                   json.dumps(exp.translator_kwargs, sort_keys=True))
    return Path(exp.out) / "warmup" / f"s{exp.seed}_{exp.translator}_{key}.pt", key


def build_translator(exp: ExperimentConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(exp.seed)
    return create_translator(exp.translator, exp.translator_preset, **exp.translator_kwargs).to(device)


MONITOR_IMAGES = 16  # held-out images per domain measured at each evaluation (KID, histogram distance, grids)


def make_monitor(source_val: torch.Tensor, target_val: torch.Tensor, size: int, seed: int
                 ) -> TranslationMonitor | None:
    """The translator's convergence monitor on the first validation images of each domain (None with fewer than 2)."""
    if len(source_val) < 2 or len(target_val) < 2:
        return None
    return TranslationMonitor(source_val[:MONITOR_IMAGES] * 2 - 1, target_val[:MONITOR_IMAGES] * 2 - 1,
                              kid_size=max(16, min(128, size)), kid_subsets=10, seed=seed)


def report_line(message: str) -> None:
    """One line per evaluation on stderr when it is not a terminal (CI, log files); a terminal has the bar. Rank 0's
    only under torchrun."""
    if not sys.stderr.isatty() and is_main_process():
        print(message, file=sys.stderr, flush=True)


def prepare_shared(exp: ExperimentConfig, source: CXRData | None = None, target: CXRData | None = None,
                   warm_up: bool = True) -> None:
    """Train (or find) what every cell of seed ``exp.seed`` shares: M_A and the warmed-up translator."""
    if source is None or target is None:
        source, target = load_cell_data(exp)
    device = local_device(exp.device)
    seed_everything(exp.seed)
    model, _ = source_model(exp, source, device)
    if not warm_up:
        return
    splits = cell_splits(exp, target.ids)
    src = source.subset(source_splits(source, exp)["train"])
    tgt = target.subset(splits["train"])
    path, key = warmup_file(exp, src.ids, tgt.ids)
    src_val = source.subset(source_splits(source, exp)["val"])
    orch = TransferOrchestrator(build_translator(exp, device), copy.deepcopy(model), transfer_config(exp),
                                normalize=normalizer(exp), run_dir=path.with_suffix(""),  # TensorBoard: <cache>/tb
                                monitor=make_monitor(src_val.images, target.subset(splits["val"]).images, exp.size,
                                                     exp.seed), report=report_line,
                                show_progress=sys.stderr.isatty())
    orch.warm_up(src.images, tgt.images, cache=path, key=key)
    barrier()  # rank 0 wrote the cache that every rank's cells read
