"""Training and evaluation of chest X-ray segmenters (inference and model files: :mod:`segmentation.inference`).

The training loop follows the recipe of the segmentation papers this project reproduces (Adam, a
Dice-based loss, early stopping and model selection on validation Dice; Novikov et al., "Fully
convolutional architectures for multi-class segmentation in chest radiographs", IEEE TMI 2018;
Oliveira & dos Santos, "Unsupervised domain adaptation for multi-organ X-ray segmentation",
SIBGRAPI 2018) and keeps the whole dataset as tensors on the training device, which is what makes
small 2-D datasets like JSRT train in seconds on a GPU.

The same functions serve the transfer baselines: fine-tuning is :func:`train_segmenter` started from
a pretrained segmenter on the labelled target subset, training from scratch is the same call on a
freshly built model. Nothing is copied between methods.

A run folder holds ``config.json``, ``splits.json`` (when given), ``checkpoints/last.pt`` (everything
needed to resume exactly), ``checkpoints/best.pt`` (a segmenter file, see :func:`save_segmenter`),
``history.json`` and ``tb/`` (TensorBoard).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from runtime import (
    RunLogger,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    autocast,
    barrier,
    config_from_dict,
    config_to_dict,
    get_rng_state,
    is_main_process,
    load_checkpoint,
    progress,
    resolve_device,
    save_checkpoint,
    save_config,
    seed_everything,
    set_generator_state,
    set_rng_state,
    unwrap,
)
from runtime.distributed import rank_indices
from runtime.loader import stream_batches
from runtime.preflight import check_divisible, check_writable, count_images
from runtime.store import is_stored
from segmentation.config import MODES, NORMALIZATIONS, SCHEDULERS, SegmentationConfig  # noqa: F401 - re-exported
from segmentation.data.augmentation import Augmenter, mixup
from segmentation.data.dataset import check_loadable, from_exclusive, load_dataset, to_exclusive
from segmentation.data.io import IMAGE_SUFFIXES, DataError, read_image, to_unit, write_png
from segmentation.data.preprocessing import dataset_stats, resize_images, resize_masks
from segmentation.data.splits import kfold_ids, load_splits, save_splits, split_ids
from segmentation.inference import (  # noqa: F401 - re-exported: training builds on inference
    SEGMENTER_FORMAT,
    _as_models,
    _check_images,
    _device_of,
    _normalize,
    build_segmenter,
    load_segmenter,
    predict_masks,
    predict_probabilities,
    probabilities_to_masks,
    save_segmenter,
)
from segmentation.losses import create_loss
from segmentation.metrics import evaluate_masks, summarize_records

# RGB colours of the first classes in overlays (lungs, heart, clavicles, then the rest).
_COLOURS = ((0.15, 0.55, 1.0), (1.0, 0.25, 0.2), (0.2, 0.9, 0.3), (1.0, 0.8, 0.1), (0.8, 0.3, 1.0), (0.1, 0.9, 0.9))


@dataclass
class TrainResult:
    """What :func:`train_segmenter` returns.

    Attributes:
        best_state: state dict (on CPU) of the weights with the best validation Dice (the last weights
            when no validation data was given). The model passed in holds these weights on return.
        best_epoch: 1-based epoch of ``best_state``.
        best_val_dice: mean validation Dice of ``best_state`` (NaN without validation data).
        history: one dict per epoch (``epoch``, ``train_loss``, ``lr`` and, on validation epochs,
            ``val_loss``, ``val_dice`` and ``val_dice/<class>``).
        config: the configuration used (with ``norm_stats`` filled in for dataset normalisation).
        best_checkpoint: ``run_dir/checkpoints/best.pt`` (a segmenter file) or None without a run folder.
        stopped_early: True when early stopping ended the run.
        wall_time_s: seconds spent in this call.
    """

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_dice: float
    history: list[dict[str, float]]
    config: SegmentationConfig
    best_checkpoint: Path | None = None
    stopped_early: bool = False
    wall_time_s: float = 0.0


# --------------------------------------------------------------------------------------------------------------------
# Building, saving and loading segmenters


def _targets(masks: Tensor, config: SegmentationConfig) -> Tensor:
    if config.mode == "multilabel":
        return masks
    return to_exclusive(masks)


def _check_data(data: Any, config: SegmentationConfig, what: str, need_masks: bool = True) -> None:
    if data is None or not hasattr(data, "images"):
        raise ValueError(f"expected {what} data as a CXRData, got {type(data).__name__}")
    _check_images(data.images, f"{what} images")
    if len(data) == 0:
        raise ValueError(f"expected at least one {what} image, got 0; check the split")
    if need_masks:
        if data.masks is None:
            raise ValueError(f"expected {what} masks, got none; load the dataset with masks=True")
        if tuple(data.classes) != tuple(config.classes):
            raise ValueError(f"expected {what} classes {tuple(config.classes)} (from the config), got "
                             f"{tuple(data.classes)}; load the dataset with the same classes")


def _dice_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """Dice ``[N, C]`` of bool masks; 1 when both are empty (the segmentation.metrics rule)."""
    pred, target = pred.flatten(2).float(), target.flatten(2).float()
    inter = (pred * target).sum(-1)
    total = pred.sum(-1) + target.sum(-1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


# --------------------------------------------------------------------------------------------------------------------
# Training


def _make_overlay(image: Tensor, masks: Tensor, target: Tensor | None = None) -> Tensor:
    """RGB ``[3, H, W]`` in [0, 1]: the grey image with predicted classes tinted and true outlines drawn."""
    grey = image[0].float()
    grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6)
    rgb = grey.expand(3, -1, -1).clone()
    for c in range(masks.shape[0]):
        colour = torch.tensor(_COLOURS[c % len(_COLOURS)], device=rgb.device).view(3, 1, 1)
        m = masks[c].bool()
        rgb = torch.where(m, 0.6 * rgb + 0.4 * colour, rgb)
        if target is not None:
            t = target[c].float()[None, None]
            edge = (F.max_pool2d(t, 3, 1, 1) - t)[0, 0] > 0
            rgb = torch.where(edge, colour, rgb)
    return rgb.clamp(0, 1)


def _build_scheduler(optimizer: torch.optim.Optimizer, config: SegmentationConfig):
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                          patience=max(config.patience // 2, 1))
    return None


def _comparable(config: SegmentationConfig) -> dict[str, Any]:
    d = config_to_dict(config)
    for key in ("epochs", "device", "progress", "patience", "norm_stats", "checkpoint_every"):
        d.pop(key)
    return d


def train_segmenter(model: nn.Module, train: Any, val: Any | None, config: SegmentationConfig,
                    run_dir: str | os.PathLike | None = None, resume: bool = False, logger: RunLogger | None = None,
                    init_state: Mapping[str, Tensor] | None = None, splits: Mapping[str, Sequence[str]] | None = None,
                    ) -> TrainResult:
    """Train a segmenter with Adam, selecting the weights with the best validation Dice.

    The whole training set is held as tensors on the training device; each epoch draws a seeded
    permutation (:func:`runtime.distributed.rank_indices`, so each DDP rank takes its share), applies
    the optional augmentation and mixup on the device, and takes ``steps_per_epoch`` steps. Validation
    Dice (thresholded, without post-processing) drives the best checkpoint, early stopping and the
    plateau scheduler. Logging and saving happen on rank 0 only.

    Args:
        model: a segmenter built by the caller (:func:`build_segmenter`), optionally DDP-wrapped.
        train: training ``CXRData`` with masks, classes equal to ``config.classes``.
        val: validation ``CXRData`` or None (then the last weights are kept).
        config: the run's configuration.
        run_dir: run folder (``config.json``, ``splits.json``, ``checkpoints/``, ``tb/``, ``history.json``);
            None trains in memory only.
        resume: continue from ``run_dir/checkpoints/last.pt`` (model, optimizer, scheduler, RNG states, epoch,
            best score); the resumed run ends with the same weights as an uninterrupted one. Starts afresh
            when the folder has no checkpoint yet.
        logger: a TensorBoard logger; by default one writing to ``run_dir/tb``.
        init_state: weights loaded into the model before training (fine-tuning a pretrained segmenter).
        splits: the ids of each split, saved as ``splits.json``.

    Returns:
        A :class:`TrainResult`; the model holds the best weights on return.

    Raises:
        ValueError: for data that does not match the config, or a run folder that already holds a run
            (without ``resume``) or one with a different configuration.
    """
    start_time = time.perf_counter()
    _check_data(train, config, "training")
    if val is not None:
        _check_data(val, config, "validation")
    if config.scheduler == "plateau" and val is None:
        raise ValueError("expected validation data with scheduler='plateau', got None; pass val or use 'cosine'")

    net = unwrap(model)
    current = _device_of(net)
    if current.type != "cpu" and config.device in ("auto", current.type):
        device = current  # placed by the caller (e.g. cuda:LOCAL_RANK under torchrun)
    else:
        device = resolve_device(config.device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if init_state is not None:
        net.load_state_dict(init_state)

    if config.normalization == "dataset" and config.norm_stats is None:
        stats = dataset_stats(train.images if is_stored(train.images) else resize_images(train.images.float(),
                                                                                          config.size))
        config = config.replace(norm_stats=tuple(float(v) for v in _flat(stats)))

    run_path = Path(run_dir) if run_dir is not None else None
    ckpt_dir = run_path / "checkpoints" if run_path is not None else None
    last_path = ckpt_dir / "last.pt" if ckpt_dir is not None else None
    best_path = ckpt_dir / "best.pt" if ckpt_dir is not None else None
    main = is_main_process()

    # In memory: the whole set on the device, resized once. Streamed (images on disk): batches read, then resized.
    streamed = is_stored(train.images)
    if streamed:
        train_x, train_y = train.images, train.masks
    else:
        train_x = resize_images(train.images.to(device, torch.float32), config.size)
        train_y = _targets(resize_masks(train.masks.to(device, torch.float32), config.size), config)
    if val is not None:
        if is_stored(val.images):
            val_x, val_y = val.images, val.masks
        else:
            val_x = resize_images(val.images.to(device, torch.float32), config.size)
            val_y = resize_masks(val.masks.to(device, torch.float32), config.size).bool()

    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loss_fn = create_loss(config.loss, mode=config.mode, **config.loss_kwargs)
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(device)
    augmenter = None
    if config.augment:
        augmenter = Augmenter(**config.augment_kwargs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _build_scheduler(optimizer, config)

    start_epoch, best_val, best_epoch, history = 0, -math.inf, 0, []
    best_state: dict[str, Tensor] | None = None
    checkpoint = None
    if resume:
        if last_path is None:
            raise ValueError("expected a run_dir with resume=True, got None; pass the run folder to continue")
        if last_path.is_file():
            checkpoint = load_checkpoint(last_path)
    elif last_path is not None and last_path.is_file():
        raise ValueError(f"run folder {run_path} already holds a run ({last_path}); pass --resume to continue it "
                         "or choose a new --run-dir")
    if checkpoint is not None:
        saved = config_from_dict(SegmentationConfig, checkpoint["config"])
        if _comparable(saved) != _comparable(config):
            diff = sorted(k for k, v in _comparable(config).items() if _comparable(saved).get(k) != v)
            raise ValueError(f"expected the configuration of the interrupted run in {run_path}, got different "
                             f"{diff}; resume with the same options or start a new --run-dir")
        config = config.replace(norm_stats=saved.norm_stats)
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])
        set_generator_state(generator, checkpoint["generator"])
        if checkpoint.get("augmenter_generator") is not None and augmenter is not None:
            set_generator_state(augmenter.generator, checkpoint["augmenter_generator"])
        start_epoch, best_val, best_epoch = checkpoint["epoch"], checkpoint["best_val"], checkpoint["best_epoch"]
        history = list(checkpoint["history"])
        if checkpoint.get("best_state") is not None:
            best_state = checkpoint["best_state"]
        elif best_epoch == start_epoch and best_epoch > 0:
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    if run_path is not None and main:
        run_path.mkdir(parents=True, exist_ok=True)
        save_config(config, run_path / "config.json")
        if splits is not None:
            save_splits(run_path / "splits.json", {k: list(v) for k, v in splits.items()})
    own_logger = logger is None
    if logger is None:
        logger = RunLogger(run_path / "tb" if run_path is not None and main else None)

    n_local = len(rank_indices(len(train_x), shuffle=False))
    steps = config.steps_per_epoch or max(1, math.ceil(n_local / config.batch_size))
    stopped_early, best_dirty = False, False
    epoch = start_epoch
    try:
        finished = checkpoint is not None and bool(checkpoint.get("stopped_early"))
        bar = progress(range(start_epoch, start_epoch if finished else config.epochs), total=config.epochs,
                       initial=start_epoch, desc="train", enabled=config.progress)
        for epoch in bar:
            model.train()
            order = _epoch_order(len(train_x), steps * config.batch_size if config.steps_per_epoch else None,
                                 generator)
            total_loss, count = torch.zeros((), device=device), 0
            batches = [b for b in (order[k * config.batch_size:(k + 1) * config.batch_size] for k in range(steps))
                       if b.numel()]
            for x, y in stream_batches((train_x, train_y), batches, device):
                if streamed:
                    x = resize_images(x, config.size)
                    y = _targets(resize_masks(y, config.size), config)
                loss = _train_step(model, x, y, config, loss_fn, optimizer, augmenter, device)
                total_loss += loss * len(x)  # stays on the device: no synchronisation per step
                count += len(x)
            row: dict[str, float] = {"epoch": epoch + 1, "train_loss": float(total_loss) / max(count, 1),
                                     "lr": optimizer.param_groups[0]["lr"]}
            last_epoch = epoch + 1 == config.epochs
            improved = False
            if val is not None and ((epoch + 1) % config.val_every == 0 or last_epoch):
                scores = _validate(net, val_x, val_y, config, loss_fn, device)
                row.update(scores)
                if scores["val_dice"] > best_val:
                    best_val, best_epoch, improved = scores["val_dice"], epoch + 1, True
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(scores["val_dice"])
                if logger.active and config.overlays > 0:
                    _log_overlays(logger, net, val_x[:config.overlays], val_y[:config.overlays], config, epoch + 1)
            elif val is None:
                best_val, best_epoch, improved = math.nan, epoch + 1, True
            if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step()
            history.append(row)
            if improved:
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                best_dirty = True
            logger.scalars({k: v for k, v in row.items() if k != "epoch"}, epoch + 1, prefix="segment")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", dice=f"{row.get('val_dice', math.nan):.4f}")
            stop = (config.patience is not None and val is not None
                    and epoch + 1 - best_epoch >= config.patience)
            if last_path is not None and main and ((epoch + 1) % config.checkpoint_every == 0 or stop
                                                   or epoch + 1 == config.epochs):
                if best_dirty:
                    save_segmenter(best_state, best_path, config, {"epoch": best_epoch, "val_dice": best_val})
                    best_dirty = False
                save_checkpoint(last_path, {
                    "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": get_rng_state(), "generator": generator.get_state(), "epoch": epoch + 1,
                    "augmenter_generator": _augmenter_state(augmenter),
                    "best_state": best_state if best_epoch != epoch + 1 else None,
                    "best_val": best_val, "best_epoch": best_epoch, "history": history,
                    "config": config_to_dict(config), "stopped_early": stop,
                })
                atomic_write_json(run_path / "history.json", history)
            barrier()
            if stop:
                stopped_early = True
                break
        if checkpoint is not None and checkpoint.get("stopped_early"):
            stopped_early = True
    finally:
        if own_logger:
            logger.close()
        else:
            logger.flush()

    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        best_epoch = best_epoch or start_epoch
    net.load_state_dict(best_state)
    if run_path is not None and main:
        if best_path is not None and (best_dirty or not best_path.is_file()):
            save_segmenter(net, best_path, config, {"epoch": best_epoch, "val_dice": best_val})
        atomic_write_json(run_path / "history.json", history)
    return TrainResult(best_state=best_state, best_epoch=best_epoch,
                       best_val_dice=float(best_val) if best_val != -math.inf else math.nan, history=history,
                       config=config, best_checkpoint=best_path, stopped_early=stopped_early,
                       wall_time_s=time.perf_counter() - start_time)


def _augmenter_state(augmenter: nn.Module | None) -> Tensor | None:
    """State of an augmenter's own generator (``Augmenter(seed=...)``), None when it draws from the global RNG."""
    generator = getattr(augmenter, "generator", None)
    return generator.get_state() if isinstance(generator, torch.Generator) else None


def _flat(stats: Any) -> list[float]:
    if isinstance(stats, Mapping):
        return [float(v) for v in stats.values()]
    if isinstance(stats, Tensor):
        return [float(v) for v in stats.flatten()]
    return [float(v) for v in stats]


def _epoch_order(n: int, length: int | None, generator: torch.Generator) -> Tensor:
    """This rank's indices for one epoch: one permutation, or as many as needed to fill ``length``."""
    parts = [rank_indices(n, generator=generator)]
    while length is not None and sum(len(p) for p in parts) < length:
        parts.append(rank_indices(n, generator=generator))
    return torch.cat(parts)


def _train_step(model: nn.Module, x: Tensor, y: Tensor, config: SegmentationConfig, loss_fn: Callable,
                optimizer: torch.optim.Optimizer, augmenter: nn.Module | None, device: torch.device) -> Tensor:
    if augmenter is not None:
        if config.mode == "multilabel":
            x, y = augmenter(x, y)
            y = (y >= 0.5).float() if config.mixup_alpha == 0 else y
        else:
            x, masks = augmenter(x, from_exclusive(y, len(config.classes)).float())
            y = to_exclusive((masks >= 0.5).float())
    if config.mixup_alpha > 0:
        x, y = mixup(x, y, config.mixup_alpha)
    x = _normalize(x, config)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, config.amp):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss.detach()


@torch.inference_mode()
def _validate(net: nn.Module, val_x: Tensor, val_y: Tensor, config: SegmentationConfig, loss_fn: Callable,
              device: torch.device) -> dict[str, float]:
    was_training = net.training
    net.eval()
    losses, dices = [], []
    for start in range(0, len(val_x), config.eval_batch_size):
        # resizing is a no-op for in-memory sets (resized once); streamed rows are read and resized here
        x = _normalize(resize_images(val_x[start:start + config.eval_batch_size].to(device), config.size), config)
        y = resize_masks(val_y[start:start + config.eval_batch_size].to(device), config.size).bool()
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            logits = net(x).float()
        losses.append(float(loss_fn(logits, _targets(y.float(), config))) * len(x))
        probs = torch.sigmoid(logits) if config.mode == "multilabel" else torch.softmax(logits, dim=1)
        dices.append(_dice_per_image(probabilities_to_masks(probs, config, postprocess=False), y))
    net.train(was_training)
    dice = torch.cat(dices).mean(0)
    scores = {"val_loss": sum(losses) / len(val_x), "val_dice": float(dice.mean())}
    scores.update({f"val_dice/{name}": float(d) for name, d in zip(config.classes, dice)})
    return scores


def _log_overlays(logger: RunLogger, net: nn.Module, x: Tensor, y: Tensor, config: SegmentationConfig,
                  step: int) -> None:
    pred = predict_masks(net, x, config, postprocess=False)
    for i in range(len(x)):
        logger.image(f"val_overlay/{i}", _make_overlay(x[i], pred[i], y[i]), step)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


EVAL_CHUNK = 256
"""Images predicted and scored at a time by :func:`evaluate_segmenter`."""


def evaluate_segmenter(models: nn.Module | Sequence[nn.Module], data: Any, config: SegmentationConfig,
                       postprocess: bool | None = None, surface: bool = False) -> list[dict[str, Any]]:
    """Per-image metrics of a segmenter (or an ensemble) on labelled data.

    Args:
        models: a segmenter or a list of them (probabilities averaged).
        data: ``CXRData`` with masks and ``classes == config.classes``; masks are compared at their own size.
        config: the segmenters' configuration.
        postprocess: override ``config.postprocess`` (largest components and hole filling).
        surface: also compute surface distances (mean and 95% Hausdorff; slower).

    Returns:
        One dict per image: ``id`` plus ``segmentation.metrics.evaluate_masks``'s ``jaccard/<class>``,
        ``dice/<class>``, ... (in mm where ``data.spacing_mm`` is known).
    """
    _check_data(data, config, "evaluation")
    rows = []
    for begin in range(0, len(data), EVAL_CHUNK):  # bounded memory for any number of images
        end = min(len(data), begin + EVAL_CHUNK)
        pred = predict_masks(models, data.images[begin:end], config, postprocess=postprocess)
        rows += evaluate_masks(pred.cpu(), data.masks[begin:end].cpu() > 0.5, config.classes,
                               spacing_mm=None if data.spacing_mm is None else data.spacing_mm[begin:end],
                               surface=surface)
    return [{"id": image_id, **row} for image_id, row in zip(data.ids, rows)]


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, std, 95% confidence interval and count of every numeric column of per-image (or per-fold) rows.

    Uses ``segmentation.metrics.summarize_records``; ``fold`` and ``id`` columns are left out.
    """
    return {k: v for k, v in summarize_records(rows).items() if k not in ("fold", "id")}


def format_summary(summary: Mapping[str, Mapping[str, float]], metrics: Iterable[str] = ("jaccard", "dice"),
                   percent: bool = True) -> str:
    """A Markdown table ``metric | class | mean +- std | 95% CI | n`` of :func:`summarize_rows` output (in %)."""
    lines = ["| metric | class | mean +- std | 95% CI | n |", "|---|---|---|---|---|"]
    scale = 100.0 if percent else 1.0
    for key, s in summary.items():
        name, _, cls = key.partition("/")
        if name not in metrics:
            continue
        lines.append(f"| {name} | {cls or '-'} | {s['mean'] * scale:.2f} +- {s['std'] * scale:.2f} | "
                     f"{s['ci_low'] * scale:.2f}-{s['ci_high'] * scale:.2f} | {int(s['n'])} |")
    return "\n".join(lines)


def write_rows_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write per-image rows as CSV atomically (columns: the union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------------------------
# Cross-validation


@dataclass
class CrossValidationResult:
    """What :func:`cross_validate` returns.

    Attributes:
        rows: per-image metric rows of every held-out fold, each with a ``fold`` column.
        fold_means: one row per fold: the mean of each metric over that fold's images.
        summary: mean and std over folds of each metric (:func:`summarize_rows` of ``fold_means``).
    """

    rows: list[dict[str, Any]]
    fold_means: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]


def cross_validate(data: Any, config: SegmentationConfig, k: int = 5, val_fraction: float = 0.1,
                   run_dir: str | os.PathLike | None = None, resume: bool = False) -> CrossValidationResult:
    """k-fold cross-validation: each fold is held out once and evaluated with a model trained on the others.

    Folds come from ``segmentation.data.splits.kfold_ids(data.ids, k, config.seed)``. Within the training
    folds, ``val_fraction`` of the images (at least one) is set aside for early stopping and model
    selection, so the held-out fold is never used to choose weights. Each fold's model is built with
    :func:`build_segmenter` after seeding with ``config.seed + fold``.

    Args:
        data: labelled ``CXRData`` with ``classes == config.classes``.
        config: the training configuration of every fold.
        k: number of folds (>= 2).
        val_fraction: share of the training folds used for validation, in ``[0, 1)``; 0 keeps the last weights.
        run_dir: parent folder of ``fold_<i>/`` run folders, plus ``cv_rows.csv`` and ``cv_summary.json``.
        resume: resume interrupted folds.

    Returns:
        A :class:`CrossValidationResult`.

    Raises:
        ValueError: for ``k < 2``, ``k`` above the number of images, or ``val_fraction`` outside ``[0, 1)``.
    """
    _check_data(data, config, "cross-validation")
    if not isinstance(k, int) or k < 2 or k > len(data):
        raise ValueError(f"expected 2 <= k <= {len(data)} (the number of images), got {k}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"expected val_fraction in [0, 1), got {val_fraction}")
    run_path = Path(run_dir) if run_dir is not None else None
    rows, fold_means = [], []
    for fold, split in enumerate(kfold_ids(list(data.ids), k, config.seed)):
        train_ids = list(split["train"])
        val_ids: list[str] = []
        if val_fraction > 0:
            rng = np.random.default_rng(config.seed + fold)
            n_val = max(1, round(val_fraction * len(train_ids)))
            picked = set(rng.choice(len(train_ids), size=n_val, replace=False).tolist())
            val_ids = [i for j, i in enumerate(train_ids) if j in picked]
            train_ids = [i for j, i in enumerate(train_ids) if j not in picked]
        test_ids = list(split["val"])
        seed_everything(config.seed + fold)
        model = build_segmenter(config)
        fold_dir = run_path / f"fold_{fold}" if run_path is not None else None
        result = train_segmenter(model, data.subset(train_ids), data.subset(val_ids) if val_ids else None, config,
                                 run_dir=fold_dir, resume=resume,
                                 splits={"train": train_ids, "val": val_ids, "test": test_ids})
        fold_rows = evaluate_segmenter(model, data.subset(test_ids), result.config)
        for row in fold_rows:
            row["fold"] = fold
        rows.extend(fold_rows)
        means = {key: s["mean"] for key, s in summarize_rows(fold_rows).items() if key != "fold"}
        fold_means.append({"fold": fold, **means})
    summary = summarize_rows([{k2: v for k2, v in row.items() if k2 != "fold"} for row in fold_means])
    if run_path is not None and is_main_process():
        write_rows_csv(run_path / "cv_rows.csv", rows)
        atomic_write_json(run_path / "cv_summary.json", {"folds": fold_means, "summary": summary})
    return CrossValidationResult(rows=rows, fold_means=fold_means, summary=summary)


# --------------------------------------------------------------------------------------------------------------------
# Whole commands (what the CLI calls)


def train_from_folder(data_dir: str | os.PathLike, config: SegmentationConfig, run_dir: str | os.PathLike,
                      fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                      splits_file: str | os.PathLike | None = None,
                      resume: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Load a prepared dataset, split it, train, evaluate on the test split and write everything to ``run_dir``.

    Writes ``run_dir/model.pt`` (the best weights, a segmenter file), ``test_metrics.csv`` (per image),
    ``metrics.json`` (best validation Dice, test summary, wall time) besides what :func:`train_segmenter` writes.

    Args:
        data_dir: prepared folder (``images/``, ``masks/<organ>/``).
        config: the training configuration.
        run_dir: the run folder.
        fractions: train/val/test fractions for ``split_ids`` (seeded with ``config.seed``); ignored with
            ``splits_file``.
        splits_file: a ``splits.json`` with ``train``/``val``/``test`` ids to use instead.
        resume: continue an interrupted run in ``run_dir`` (its ``splits.json`` is reused).
        limit: use only the first ``limit`` images (sorted ids), for quick trials.

    Returns:
        The contents of ``metrics.json``.
    """
    run_path = Path(run_dir)
    check_writable(run_path, "--run-dir")
    model = build_segmenter(config)
    check_divisible(config.size, getattr(model, "required_divisor", 1), "--size", type(model).__name__)
    if resume and not (run_path / "checkpoints" / "last.pt").is_file():
        raise ValueError(f"--resume: {run_path / 'checkpoints' / 'last.pt'} does not exist, so there is no run to "
                         "continue; drop --resume to start one")
    n_files = count_images(data_dir)
    check_loadable(min(n_files, limit or n_files), config.size, len(config.classes),
                   f"loading {n_files} images of {data_dir} at --size {config.size}", "lower --size or --limit")
    data = load_dataset(data_dir, classes=config.classes, size=config.size, masks=True)
    if limit is not None:
        data = data.subset(list(range(min(limit, len(data)))))
    if splits_file is None and resume and (run_path / "splits.json").is_file():
        splits_file = run_path / "splits.json"
    if splits_file is not None:
        splits = load_splits(splits_file)
        missing = sorted(set().union(*[set(v) for v in splits.values()]) - set(data.ids))
        if missing:
            raise ValueError(f"expected every id of {splits_file} in {data_dir}, got {len(missing)} missing "
                             f"(e.g. {missing[:3]}); use the splits file written for this dataset")
    else:
        splits = split_ids(list(data.ids), fractions=tuple(fractions), seed=config.seed)
    splits = {k: list(v) for k, v in splits.items()}
    _check_split_sizes(splits, fractions if splits_file is None else None, data_dir)
    seed_everything(config.seed)
    model = build_segmenter(config)
    trained = _wrap_distributed(model, config)
    val = data.subset(splits["val"]) if splits.get("val") else None
    result = train_segmenter(trained, data.subset(splits["train"]), val, config, run_dir=run_path, resume=resume,
                             splits=splits)
    metrics: dict[str, Any] = {"best_epoch": result.best_epoch, "best_val_dice": result.best_val_dice,
                               "stopped_early": result.stopped_early, "train_wall_time_s": result.wall_time_s,
                               "num_parameters": sum(p.numel() for p in model.parameters()),
                               "splits": {k: len(v) for k, v in splits.items()}}
    if is_main_process():
        save_segmenter(model, run_path / "model.pt", result.config,
                       {"data": str(data_dir), "best_epoch": result.best_epoch, "val_dice": result.best_val_dice})
    if splits.get("test"):
        rows = evaluate_segmenter(model, data.subset(splits["test"]), result.config)
        metrics["test_summary"] = summarize_rows(rows)
        if is_main_process():
            write_rows_csv(run_path / "test_metrics.csv", rows)
    if is_main_process():
        atomic_write_json(run_path / "metrics.json", metrics)
    if trained is not model:
        barrier()
        dist.destroy_process_group()
    return metrics


def _check_split_sizes(splits: Mapping[str, Sequence[str]], fractions: Sequence[float] | None,
                       data_dir: str | os.PathLike) -> None:
    """Refuse a split with no training image, or no validation image when its fraction asks for some."""
    counts = {k: len(splits.get(k, [])) for k in ("train", "val", "test")}
    # an empty test part only leaves out the test table; an empty train or validation part makes NaN metrics
    wanted = dict(zip(("train", "val"), fractions)) if fractions is not None else {"train": 1.0}
    empty = [k for k, f in wanted.items() if f > 0 and counts[k] == 0]
    if empty:
        total = sum(counts.values())
        raise ValueError(f"expected at least one image in every part of the split, got {counts} from {total} "
                         f"image(s) in {data_dir} (empty: {', '.join(empty)}); add images, or pass --split with 0 "
                         "for the parts you do not want (e.g. --split 0.8,0.2,0)")


def _wrap_distributed(model: nn.Module, config: SegmentationConfig) -> nn.Module:
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group and wrap the model in DDP; else the model.

    Each process uses ``cuda:LOCAL_RANK`` (NCCL) when CUDA is available and ``config.device`` allows it,
    the CPU (Gloo) otherwise. Every rank starts from the same weights (DDP broadcasts rank 0's).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return model
    use_cuda = torch.cuda.is_available() and config.device in ("auto", "cuda")
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # before wrapping, so DDP's buckets see the final layout
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        model.to(device)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def _model_identity(models: nn.Module | Sequence[nn.Module]) -> str:
    """A hash of the weights of a segmenter or an ensemble (what wrote a folder of predictions)."""
    digest = hashlib.sha256()
    for model in _as_models(models):
        for name, value in unwrap(model).state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def predict_files(models: nn.Module | Sequence[nn.Module], paths: Sequence[str | os.PathLike],
                  out_dir: str | os.PathLike, config: SegmentationConfig, batch_size: int | None = None,
                  postprocess: bool | None = None, overlays: bool = True, resume: bool = True,
                  show_progress: bool = True) -> list[Path]:
    """Segment image files of any size; write masks (at each image's size) and overlays as it goes.

    Writes ``out_dir/masks/<class>/<stem>.png`` (0/255) and ``out_dir/overlays/<stem>.png`` (RGB). Images
    are read one batch at a time, resized to ``config.size`` for the network, and the probabilities are
    resized back to each image's own size before thresholding.

    Args:
        models: a segmenter or an ensemble.
        paths: image files (anything ``segmentation.data.io.read_image`` reads).
        out_dir: output folder.
        config: the segmenters' configuration.
        batch_size: images per batch (default ``config.eval_batch_size``).
        postprocess: override ``config.postprocess``.
        overlays: also write overlay PNGs.
        resume: skip images whose outputs all exist (an interrupted run continues where it stopped).
        show_progress: a progress bar.

    Returns:
        The mask files of every image (written now or found from an earlier run).

    Raises:
        DataError: for an unreadable image (names the file).
    """
    out = Path(out_dir)
    batch_size = batch_size or config.eval_batch_size
    written: list[Path] = []
    paths = [Path(p) for p in paths]

    def outputs(path: Path) -> list[Path]:
        files = [out / "masks" / name / f"{path.stem}.png" for name in config.classes]
        return files + ([out / "overlays" / f"{path.stem}.png"] if overlays else [])

    # every file is written atomically, so an image whose outputs all exist is finished: a rerun resumes after it
    identity = {"config": config_to_dict(config), "models": _model_identity(models), "postprocess": postprocess,
                "overlays": overlays}
    record = out / "predict.json"
    if resume and record.is_file():
        try:
            earlier = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            earlier = None
        if earlier != json.loads(json.dumps(identity)):
            raise ValueError(f"{out} holds predictions of other models or settings ({record}); choose a new --out "
                             "or delete that folder")
    if is_main_process():
        atomic_write_json(record, identity)
    todo = [p for p in paths if not all(f.is_file() for f in outputs(p))] if resume else paths
    pending = set(todo)
    written += [f for p in paths if p not in pending for f in outputs(p)[:len(config.classes)]]
    bar = progress(total=len(paths), initial=len(paths) - len(todo), desc="predict", enabled=show_progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        originals = []
        for path in chunk:
            array = read_image(path)
            originals.append(torch.from_numpy(to_unit(array))[None, None])
        small = torch.cat([resize_images(img, config.size) for img in originals])
        probs = predict_probabilities(models, small, config)
        for path, image, p in zip(chunk, originals, probs):
            full = resize_images(p[None], tuple(image.shape[-2:])).clamp(0, 1)
            masks = probabilities_to_masks(full, config, postprocess=postprocess)[0]
            for c, name in enumerate(config.classes):
                written.append(write_png(out / "masks" / name / f"{path.stem}.png", masks[c].numpy()))
            if overlays:
                rgb = (_make_overlay(image[0], masks).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                target = out / "overlays" / f"{path.stem}.png"
                with atomic_path(target) as tmp:
                    Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")
        bar.update(len(chunk))
    bar.close()
    return written


def load_ensemble(paths: Sequence[str | os.PathLike], device: str = "auto"
                  ) -> tuple[list[nn.Module], SegmentationConfig]:
    """Load one or several segmenter files that can be averaged (same classes, mode, size and normalisation).

    Args:
        paths: segmenter files (``model.pt`` or ``checkpoints/best.pt`` of runs).
        device: where to put the models ("auto" picks CUDA when available).

    Returns:
        ``(models, config)``: the models in eval mode, and the configuration of the first.

    Raises:
        ValueError: for no path, or models whose input/output conventions differ.
    """
    if not paths:
        raise ValueError("expected at least one segmenter file, got none; pass --model FILE")
    target = resolve_device(device)
    models, configs = [], []
    for path in paths:
        model, config, _ = load_segmenter(path, map_location=target)
        models.append(model)
        configs.append(config)
    keys = ("classes", "mode", "size", "normalization", "norm_stats")
    for path, config in zip(paths[1:], configs[1:]):
        diff = [k for k in keys if getattr(config, k) != getattr(configs[0], k)]
        if diff:
            raise ValueError(f"expected ensemble members with the same {diff} as {paths[0]}, got {path} with "
                             f"{[getattr(config, k) for k in diff]}; average only models trained alike")
    return models, configs[0]


def evaluate_folder(model_paths: Sequence[str | os.PathLike], data_dir: str | os.PathLike, split: str = "test",
                    splits_file: str | os.PathLike | None = None, out_csv: str | os.PathLike | None = None,
                    postprocess: bool | None = None, surface: bool = False, device: str = "auto",
                    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Evaluate saved segmenters (averaged when several) on a prepared folder; what ``segment eval`` runs.

    Args:
        model_paths: segmenter files.
        data_dir: prepared folder with masks of the models' classes.
        split: "all", or a key of the splits file ("train", "val", "test").
        splits_file: splits JSON; by default the ``splits.json`` beside the first model file (its run folder).
        out_csv: where to write the per-image rows.
        postprocess: override the models' post-processing setting.
        surface: add surface distances.
        device: "auto", "cpu", "cuda", ...

    Returns:
        ``(rows, summary)``.

    Raises:
        DataError: for a missing splits file or unreadable data; ValueError for an unknown split.
    """

    models, config = load_ensemble(model_paths, device)
    data = load_dataset(data_dir, classes=config.classes, size=config.size, masks=True)
    if split != "all":
        if splits_file is None:
            splits_file = Path(model_paths[0]).resolve().parent / "splits.json"
            if not splits_file.is_file():
                splits_file = splits_file.parent.parent / "splits.json"  # checkpoints/best.pt
        if not Path(splits_file).is_file():
            raise DataError(f"{splits_file}: no splits file for --split {split}; pass --splits FILE or --split all")
        splits = load_splits(splits_file)
        if split not in splits:
            raise ValueError(f"expected --split in {sorted(splits)} or 'all' (from {splits_file}), got {split!r}")
        data = data.subset(list(splits[split]))
    rows = evaluate_segmenter(models, data.to(_device_of(models[0])), config, postprocess=postprocess,
                              surface=surface)
    if out_csv is not None:
        write_rows_csv(out_csv, rows)
    return rows, summarize_rows(rows)


def predict_folder(model_paths: Sequence[str | os.PathLike], images_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, batch_size: int | None = None, postprocess: bool | None = None,
                   threshold: float | None = None, overlays: bool = True, device: str = "auto") -> list[Path]:
    """Segment every image of a folder with saved segmenters (averaged when several); what ``segment predict`` runs.

    Args:
        model_paths: segmenter files.
        images_dir: folder of images (PNG, JPEG, TIFF, BMP, GIF), any sizes.
        out_dir: receives ``masks/<class>/<stem>.png`` and ``overlays/<stem>.png``.
        batch_size: images per batch.
        postprocess: override the models' post-processing setting.
        threshold: override the models' probability threshold.
        overlays: write overlay PNGs.
        device: "auto", "cpu", "cuda", ...

    Returns:
        The mask files written.

    Raises:
        DataError: for a folder without images or an unreadable image.
    """
    models, config = load_ensemble(model_paths, device)
    if threshold is not None:
        config = config.replace(threshold=threshold)
    folder = Path(images_dir)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}); check --images")
    return predict_files(models, paths, out_dir, config, batch_size=batch_size, postprocess=postprocess,
                         overlays=overlays)
