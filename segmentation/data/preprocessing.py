"""Intensity preprocessing of ``[N, 1, H, W]`` radiographs in ``[0, 1]``.

- :func:`normalize`: the segmenter's input normalisation, differentiable so that gradients flow
  through it into a translator (Oliveira & dos Santos, SIBGRAPI 2018, train a segmenter on
  translated images end to end).
- :func:`equalize_hist` and :func:`clahe`: histogram equalisation, global and contrast-limited
  adaptive (Zuiderveld, "Contrast limited adaptive histogram equalization", Graphics Gems IV, 1994).
- :func:`match_histograms`: maps each image's grey levels onto the intensity distribution of a
  reference set, the classical baseline for cross-dataset transfer.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

NormalizeMode = Literal["per_image", "dataset", "none"]
NORMALIZE_MODES: tuple[str, ...] = ("per_image", "dataset", "none")
_EPS = 1e-6


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected {name} of shape [N, C, H, W], got {shape}")


def dataset_stats(images: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of all pixels of a (training) set, for ``normalize(mode="dataset")``.

    Args:
        images: the training images.

    Returns:
        ``(mean, std)`` as Python floats (JSON-able, to save with a run's config).

    Raises:
        ValueError: if ``images`` is not 4-D or is empty.

    Shape:
        images ``[N, C, H, W]``.
    """
    _check_images(images)
    if images.numel() == 0:
        raise ValueError("expected at least one image to compute statistics, got none")
    values = images.detach().double()
    return float(values.mean()), float(values.std(unbiased=False))


def normalize(images: Tensor, mode: NormalizeMode = "per_image", stats: tuple[float, float] | None = None) -> Tensor:
    """Normalise images for a segmenter; differentiable with respect to ``images``.

    Args:
        images: ``[0, 1]`` grey levels.
        mode: ``"per_image"``: z-score of each image with its own mean and standard deviation
            (insensitive to a linear change of contrast and brightness); ``"dataset"``: z-score
            with ``stats = dataset_stats(train_images)``; ``"none"``: unchanged.
        stats: ``(mean, std)`` of the training set; required for ``mode="dataset"`` only.

    Returns:
        Normalised images, same shape, dtype and device. A constant image maps to (about) zeros:
            ``per_image`` divides by ``sqrt(var + 1e-6)``.

    Raises:
        ValueError: for an unknown mode, missing or bad ``stats`` in dataset mode, or non 4-D images.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """
    _check_images(images)
    if mode == "per_image":
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        var = images.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (images - mean) * torch.rsqrt(var + _EPS)
    if mode == "dataset":
        if stats is None:
            raise ValueError('expected stats=(mean, std) for mode="dataset", got None; use dataset_stats(train_images)')
        mean, std = (float(v) for v in stats)
        if not std > 0:
            raise ValueError(f"expected a positive std in stats, got {std}")
        return (images - mean) / std
    if mode == "none":
        return images
    raise ValueError(f"expected mode in {NORMALIZE_MODES}, got {mode!r}")
