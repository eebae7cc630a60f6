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

import math
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.enhance import equalize_clahe
from torch import Tensor

from runtime.store import DiskArray, is_stored

NormalizeMode = Literal["per_image", "dataset", "none"]
NORMALIZE_MODES: tuple[str, ...] = ("per_image", "dataset", "none")
_EPS = 1e-6


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected {name} of shape [N, C, H, W], got {shape}")


def resize_images(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Anti-aliased bilinear resize of ``[N, C, H, W]`` float images to ``size`` (an int: square); identity when
    already at that size."""
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_masks(masks: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Label-safe resize of ``{0, 1}`` masks ``[N, C, H, W]``: anti-aliased bilinear, then threshold at 0.5, in the
    masks' own dtype (bool stays bool).

    The result holds only 0 and 1, and each channel's area scales with the size (no label bleeds into a neighbour,
    unlike interpolating a label map).
    """
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(masks.shape[-2:]) == size:
        return masks
    return (resize_images(masks.float(), size) >= 0.5).to(masks.dtype)


def dataset_stats(images: Tensor | DiskArray, chunk: int = 256) -> tuple[float, float]:
    """Mean and standard deviation of all pixels of a (training) set, for ``normalize(mode="dataset")``.

    Args:
        images: the training images (a :class:`runtime.store.DiskArray` is read ``chunk`` rows at a time).
        chunk: rows per read of a disk array.

    Returns:
        ``(mean, std)`` as Python floats (JSON-able, to save with a run's config).

    Raises:
        ValueError: if ``images`` is not 4-D or is empty.

    Shape:
        images ``[N, C, H, W]``.
    """
    if is_stored(images):
        if len(images) == 0:
            raise ValueError("expected at least one image to compute statistics, got none")
        total = total_sq = 0.0
        count = 0
        for begin in range(0, len(images), chunk):
            values = images[begin:begin + chunk].double()
            total, total_sq, count = total + float(values.sum()), total_sq + float((values * values).sum()), \
                count + values.numel()
        mean = total / count
        return mean, math.sqrt(max(0.0, total_sq / count - mean * mean))
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


def equalize_hist(images: Tensor, bins: int = 256) -> Tensor:
    """Global histogram equalisation of each image and channel.

    Grey levels are binned into ``bins`` levels; a pixel maps to the fraction of the image's pixels at
    or below its level, rescaled so that the darkest level maps to 0 and the brightest to 1:
    ``(cdf(v) - cdf(v_min)) / (1 - cdf(v_min))``.

    Args:
        images: grey levels in ``[0, 1]``.
        bins: number of grey levels, ``>= 2``.

    Returns:
        Equalised images in ``[0, 1]``, same shape, dtype and device. A constant image maps to zeros.

    Raises:
        ValueError: for non 4-D images or ``bins < 2``.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """
    _check_images(images)
    if bins < 2:
        raise ValueError(f"expected bins >= 2, got {bins}")
    n, c, h, w = images.shape
    flat = images.detach().reshape(n * c, h * w).float()
    levels = (flat.clamp(0.0, 1.0) * (bins - 1)).round().long()
    counts = torch.zeros(n * c, bins, device=images.device).scatter_add_(1, levels, torch.ones_like(flat))
    cdf = counts.cumsum(1) / (h * w)
    low = cdf.gather(1, levels.min(dim=1, keepdim=True).values)
    mapped = (cdf.gather(1, levels) - low) / (1.0 - low).clamp_min(1e-12)
    return mapped.clamp(0.0, 1.0).reshape(n, c, h, w).to(images.dtype)


def clahe(images: Tensor, clip_limit: float = 2.0, grid: tuple[int, int] = (8, 8)) -> Tensor:
    """Contrast-limited adaptive histogram equalisation (Zuiderveld 1994), via ``kornia.enhance.equalize_clahe``.

    Args:
        images: grey levels in ``[0, 1]``.
        clip_limit: histogram clip limit relative to a uniform histogram, ``> 0`` (1 is almost no
            change; 2-4 is usual for radiographs).
        grid: tiles along height and width, each ``>= 1``.

    Returns:
        Images in ``[0, 1]``, same shape, dtype and device.

    Raises:
        ValueError: for non 4-D images, ``clip_limit <= 0`` or a bad grid.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """
    _check_images(images)
    if not clip_limit > 0:
        raise ValueError(f"expected clip_limit > 0, got {clip_limit}")
    grid = tuple(int(g) for g in grid)
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"expected grid = (rows, cols) with both >= 1, got {grid}")
    if grid[0] > images.shape[2] or grid[1] > images.shape[3]:
        raise ValueError(f"expected a grid no finer than the image {tuple(images.shape[2:])}, got {grid}")
    out = equalize_clahe(images.float().clamp(0.0, 1.0), clip_limit=float(clip_limit), grid_size=grid)
    return out.clamp(0.0, 1.0).to(images.dtype)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation like ``numpy.interp`` (``xp`` increasing), in torch."""
    index = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x0, x1 = xp[index - 1], xp[index]
    f0, f1 = fp[index - 1], fp[index]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


def match_histograms(images: Tensor, reference_images: Tensor) -> Tensor:
    """Map each image's grey levels onto the pooled intensity distribution of a reference set.

    Quantile mapping as in ``skimage.exposure.match_histograms``: a grey level at cumulative
    fraction ``q`` of its image becomes the reference level at the same fraction of all reference
    pixels (linear between levels). The classical baseline for cross-dataset transfer: target
    images are matched to the source (training) set before a source segmenter sees them.

    Args:
        images: ``[N, C, H, W]`` grey levels (each image and channel matched on its own).
        reference_images: ``[M, C', H', W']`` grey levels of the reference set, any size, pooled.

    Returns:
        Matched images, same shape, dtype and device as ``images``.

    Raises:
        ValueError: for non 4-D inputs or an empty reference.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``.
    """
    _check_images(images)
    _check_images(reference_images, "reference_images")
    if reference_images.numel() == 0:
        raise ValueError("expected at least one reference image, got none")
    ref_values, ref_counts = torch.unique(reference_images.detach().float().flatten(), return_counts=True)
    ref_values = ref_values.to(images.device)
    ref_quantiles = (ref_counts.cumsum(0).double() / reference_images.numel()).float().to(images.device)
    if ref_values.numel() == 1:
        return torch.full_like(images, float(ref_values[0]))
    n, c, h, w = images.shape
    flat = images.detach().float().reshape(n * c, h * w)
    out = torch.empty_like(flat)
    for row in range(n * c):
        values, inverse, counts = torch.unique(flat[row], return_inverse=True, return_counts=True)
        quantiles = counts.cumsum(0).float() / flat.shape[1]
        out[row] = _interp(quantiles, ref_quantiles, ref_values)[inverse]
    return out.reshape(n, c, h, w).to(images.dtype)
