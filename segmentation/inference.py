"""Inference of chest X-ray segmenters: model files, resizing, probabilities, masks.

Everything that applies a trained segmenter lives here, so that the transfer package and the CLI import inference
without importing the training loop (:mod:`segmentation.training` builds on this module).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from runtime import autocast, config_from_dict, config_to_dict, load_checkpoint, save_checkpoint, unwrap
from runtime.store import DiskArray
from segmentation.config import SegmentationConfig
from segmentation.data.dataset import from_exclusive
from segmentation.data.preprocessing import normalize, resize_images
from segmentation.models import create_segmenter
from segmentation.postprocess import gate_dark, postprocess_masks

SEGMENTER_FORMAT = "cxr-transfer-segmenter/1"


def build_segmenter(config: SegmentationConfig) -> nn.Module:
    """Create the segmenter described by ``config`` (1 input channel, :attr:`SegmentationConfig.out_channels` out).

    Raises:
        ValueError: for an unknown model name or bad model keyword arguments (from ``create_segmenter``).
    """
    return create_segmenter(config.model, in_channels=1, out_channels=config.out_channels, **config.model_kwargs)


def save_segmenter(model: nn.Module | Mapping[str, Tensor], path: str | os.PathLike, config: SegmentationConfig,
                   metadata: Mapping[str, Any] | None = None) -> Path:
    """Save a segmenter as one file: weights, model name and keywords, classes, size, normalisation, threshold.

    The file is enough for :func:`load_segmenter`, ``cxr-transfer segment predict`` and the transfer
    package to rebuild and apply the model without the run folder.

    Args:
        model: the segmenter (a DDP or compiled wrapper is unwrapped), or its state dict.
        path: output file, written atomically.
        config: the training configuration (it names the architecture and the input conventions).
        metadata: extra JSON-able facts (data checksums, splits, scores).

    Returns:
        ``path``.
    """
    weights = model if isinstance(model, Mapping) else unwrap(model).state_dict()
    state = {k: v.detach().cpu() for k, v in weights.items()}
    return save_checkpoint(path, {"format": SEGMENTER_FORMAT, "config": config_to_dict(config), "state_dict": state,
                                  "metadata": dict(metadata or {})})


def load_segmenter(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, SegmentationConfig, dict[str, Any]]:
    """Rebuild a segmenter saved by :func:`save_segmenter` (or a run's ``checkpoints/best.pt``).

    Args:
        path: the segmenter file.
        map_location: device for the weights.

    Returns:
        ``(model, config, metadata)``; the model is in eval mode on ``map_location``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a segmenter file.
    """
    state = load_checkpoint(path)
    if state.get("format") != SEGMENTER_FORMAT:
        raise ValueError(f"expected a segmenter file ({SEGMENTER_FORMAT}) at {path}, got format "
                         f"{state.get('format')!r}; pass a model.pt or checkpoints/best.pt written by segment train")
    config = config_from_dict(SegmentationConfig, state["config"])
    model = build_segmenter(config)
    model.load_state_dict(state["state_dict"])
    model.to(map_location).eval()
    return model, config, dict(state.get("metadata", {}))


# --------------------------------------------------------------------------------------------------------------------
# Tensors in, tensors out


def _normalize(images: Tensor, config: SegmentationConfig) -> Tensor:
    if config.normalization == "dataset":
        if config.norm_stats is None:
            raise ValueError("expected norm_stats for normalization='dataset', got None; train with this config "
                             "first (train_segmenter fills them in) or use normalization='per_image'")
        return normalize(images, "dataset", stats=config.norm_stats)
    return normalize(images, config.normalization)


def _check_images(images: Tensor | DiskArray, what: str = "images") -> None:
    ok = isinstance(images, (Tensor, DiskArray))
    if not ok or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if ok else type(images).__name__
        raise ValueError(f"expected {what} as a tensor [N, 1, H, W], got {shape}")


def _as_models(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    if isinstance(models, nn.Module):
        return [models]
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise ValueError(f"expected a segmenter or a non-empty list of segmenters, got {models!r}")
    return models


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.inference_mode()
def predict_probabilities(models: nn.Module | Sequence[nn.Module], images: Tensor, config: SegmentationConfig,
                          batch_size: int | None = None) -> Tensor:
    """Per-pixel probabilities of one segmenter or the average of an ensemble, at the images' own size.

    Images are resized to ``config.size``, normalised, passed through each model in batches (under
    bf16 autocast on CUDA when ``config.amp``), turned into probabilities (sigmoid in multilabel mode,
    softmax in multiclass mode), averaged over the models and resized back.

    Args:
        models: a segmenter or a list of segmenters trained with the same classes and mode (an ensemble).
        images: ``[N, 1, H, W]`` in ``[0, 1]``, any ``H, W``; on any device (moved to the first model's).
        config: gives ``size``, ``normalization``, ``mode``, ``eval_batch_size``, ``amp``, ``channels_last``,
            ``dark_gate``.
        batch_size: overrides ``config.eval_batch_size``.

    Returns:
        ``[N, K, H, W]`` float32 on the images' device; ``K`` is the number of classes (multilabel) or
        classes + 1 with background first (multiclass).

    Raises:
        ValueError: for images of the wrong shape or an empty ensemble.
    """
    _check_images(images)
    models = _as_models(models)
    device = _device_of(models[0])
    batch_size = batch_size or config.eval_batch_size
    height, width = images.shape[-2:]
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device, torch.float32)
        x = resize_images(batch, config.size)
        x = _normalize(x, config)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        total = None
        for model in models:
            was_training = model.training
            model.eval()
            with autocast(device, config.amp):
                logits = model(x)
            model.train(was_training)
            logits = logits.float()
            probs = torch.sigmoid(logits) if config.mode == "multilabel" else torch.softmax(logits, dim=1)
            total = probs if total is None else total + probs
        probs = resize_images(total / len(models), (height, width)).clamp_(0, 1)
        probs = gate_dark(probs, batch, config.dark_gate, config.mode)
        out.append(probs.to(images.device))
    return torch.cat(out) if out else images.new_zeros((0, config.out_channels, height, width))


def probabilities_to_masks(probs: Tensor, config: SegmentationConfig, postprocess: bool | None = None) -> Tensor:
    """Threshold (multilabel) or arg-max (multiclass) probabilities into bool masks ``[N, C, H, W]``.

    Args:
        probs: output of :func:`predict_probabilities`.
        config: gives ``mode``, ``threshold``, ``classes`` and the default of ``postprocess``.
        postprocess: keep the largest component(s) per class and fill holes (``segmentation.postprocess``).
    """
    if config.mode == "multilabel":
        masks = probs > config.threshold
    else:
        masks = from_exclusive(probs.argmax(dim=1), len(config.classes)).bool()
    postprocess = config.postprocess if postprocess is None else postprocess
    if postprocess and masks.numel():
        masks = _postprocess(masks, config.classes)
    return masks


def _postprocess(masks: Tensor, classes: Sequence[str]) -> Tensor:
    return postprocess_masks(masks, classes)


def predict_masks(models: nn.Module | Sequence[nn.Module], images: Tensor, config: SegmentationConfig,
                  postprocess: bool | None = None, batch_size: int | None = None) -> Tensor:
    """Bool masks for ``images`` from one segmenter or an ensemble (probabilities averaged, then thresholded).

    Args:
        models: a segmenter or a list of them.
        images: ``[N, 1, H, W]`` in ``[0, 1]``, any size.
        config: the segmenters' configuration (see :func:`predict_probabilities`).
        postprocess: override ``config.postprocess``.
        batch_size: override ``config.eval_batch_size``.

    Returns:
        bool ``[N, C, H, W]``, one channel per class of ``config.classes``, at the images' size.

    Shape:
        images ``[N, 1, H, W]`` -> masks ``[N, C, H, W]``.
    """
    probs = predict_probabilities(models, images, config, batch_size=batch_size)
    return probabilities_to_masks(probs, config, postprocess=postprocess)
