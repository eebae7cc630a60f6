"""Post-processing of predicted masks and failure counts.

Keep the largest ``k`` connected components of each class (two for "lungs" or "clavicles" given as one class, one
for every single organ), then fill holes; count failures as in Holste et al.: a class missing from an image, and
an image whose class falls apart into more regions than the anatomy has (disconnected regions).

:func:`gate_dark` is a label-free prior applied to probabilities before thresholding: pixels within ``level`` of an
image's darkest value (as a share of its intensity range) are background. They are film padding or the air beside
the body, never anatomy; a segmenter trained on images without either (JSRT) marks them as lung otherwise.

Masks are bool ``[N, C, H, W]`` (torch or numpy; the result has the input's type and device). Connected
components use 8-connectivity by default (a diagonal touch joins two regions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

__all__ = [
    "DEFAULT_COMPONENTS",
    "component_counts",
    "failure_counts",
    "dark_pixels",
    "fill_holes",
    "gate_dark",
    "keep_largest_components",
    "postprocess_masks",
]

DEFAULT_COMPONENTS: dict[str, int] = {
    "lungs": 2,
    "clavicles": 2,
    "heart": 1,
    "left_lung": 1,
    "right_lung": 1,
    "left_clavicle": 1,
    "right_clavicle": 1,
}


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (4, 8):
        raise ValueError(f"expected connectivity 4 or 8, got {connectivity}")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def _as_numpy_2d(mask: Tensor | np.ndarray) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D mask [H, W], got shape {arr.shape}")
    return arr.astype(bool)


def keep_largest_components(mask: Tensor | np.ndarray, k: int = 1, connectivity: int = 8) -> np.ndarray:
    """Keep the ``k`` largest connected components of a 2-D mask (ties: the component found first wins).

    Args:
        mask: 2-D mask.
        k: number of components to keep, ``>= 1``.
        connectivity: 4 or 8.

    Returns:
        bool ``[H, W]`` numpy array.

    Raises:
        ValueError: on a non-2-D mask, ``k < 1`` or a bad connectivity.
    """
    if k < 1:
        raise ValueError(f"expected k >= 1 components to keep, got {k}")
    arr = _as_numpy_2d(mask)
    labels, n = ndimage.label(arr, structure=_structure(connectivity))
    if n <= k:
        return arr
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(-sizes, kind="stable")[:k] + 1
    return np.isin(labels, keep)


def fill_holes(mask: Tensor | np.ndarray) -> np.ndarray:
    """Fill the holes of a 2-D mask (background regions not connected to the image border).

    Returns:
        bool ``[H, W]`` numpy array.

    Raises:
        ValueError: on a non-2-D mask.
    """
    return ndimage.binary_fill_holes(_as_numpy_2d(mask))


def dark_pixels(images: Tensor, level: float) -> Tensor:
    """Pixels within ``level`` of each image's darkest value, as a share of its range (max - min).

    Args:
        images: ``[N, 1, H, W]`` in any range.
        level: share of the range, in ``[0, 1)``; 0 marks only pixels equal to the minimum of an image that is not
            constant (a constant image has no dark pixels).

    Returns:
        bool ``[N, 1, H, W]`` on the images' device.

    Raises:
        ValueError: for a level outside ``[0, 1)`` or images that are not ``[N, 1, H, W]``.
    """
    if not 0.0 <= level < 1.0:
        raise ValueError(f"expected a dark level in [0, 1), got {level}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected images [N, 1, H, W], got shape {tuple(images.shape)}")
    flat = images.detach().float().flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    cut = (low + level * (high - low)).view(-1, 1, 1, 1)
    return (images <= cut) & (high > low).view(-1, 1, 1, 1)


def gate_dark(probs: Tensor, images: Tensor, level: float, mode: str = "multilabel") -> Tensor:
    """Probabilities with the dark pixels of ``images`` (:func:`dark_pixels`) made certain background.

    Args:
        probs: ``[N, K, H, W]`` (multilabel: one channel per class; multiclass: background first), at the images'
            height and width.
        images: ``[N, 1, H, W]``, the images the probabilities are for.
        level: :func:`dark_pixels`'s level; 0 returns ``probs`` unchanged (the gate is off).
        mode: ``"multilabel"`` or ``"multiclass"``.

    Returns:
        A new tensor like ``probs`` (``probs`` itself when ``level`` is 0).

    Raises:
        ValueError: for mismatched shapes or a bad level.
    """
    if level == 0:
        return probs
    if probs.shape[0] != images.shape[0] or probs.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"expected probabilities for the images' {tuple(images.shape[-2:])} pixels, got shape "
                         f"{tuple(probs.shape)} for images {tuple(images.shape)}")
    dark = dark_pixels(images, level).to(probs.device)
    out = probs.masked_fill(dark, 0.0)
    if mode == "multiclass":
        out[:, :1] = probs[:, :1].masked_fill(dark, 1.0)
    return out


def _components_per_class(classes: Sequence[str], components: Mapping[str, int] | None) -> list[int]:
    table = {**DEFAULT_COMPONENTS, **(components or {})}
    missing = [c for c in classes if c not in table]
    if missing:
        raise ValueError(
            f"expected a component count for every class, got none for {missing}; pass components={{name: k}} "
            f"(known defaults: {sorted(DEFAULT_COMPONENTS)})"
        )
    counts = [int(table[c]) for c in classes]
    bad = [c for c, k in zip(classes, counts) if k < 1]
    if bad:
        raise ValueError(f"expected component counts >= 1, got {[table[c] for c in bad]} for {bad}")
    return counts


def _as_numpy_4d(masks: Tensor | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    arr = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if arr.ndim != 4:
        raise ValueError(f"expected masks of shape [N, C, H, W], got shape {arr.shape}")
    if arr.shape[1] != len(classes):
        raise ValueError(f"expected {arr.shape[1]} class names (one per mask channel), got {len(classes)}")
    return arr > 0.5 if arr.dtype != bool else arr


def postprocess_masks(
    masks: Tensor | np.ndarray,
    classes: Sequence[str],
    components: Mapping[str, int] | None = None,
    fill: bool = True,
    connectivity: int = 8,
) -> Tensor | np.ndarray:
    """Keep the largest components of each class, then fill holes.

    Args:
        masks: predicted masks (bool, or numbers thresholded at 0.5).
        classes: one name per channel.
        components: components to keep per class, overriding :data:`DEFAULT_COMPONENTS` (lungs 2, heart 1, ...).
        fill: fill holes after keeping the components.
        connectivity: 4 or 8.

    Returns:
        bool masks of the same shape; a torch tensor on the input's device if a tensor came in.

    Raises:
        ValueError: on bad shapes, a class without a component count, or a bad connectivity.

    Shape:
        masks: ``[N, C, H, W]``.
    """
    ks = _components_per_class(classes, components)
    arr = _as_numpy_4d(masks, classes)
    out = np.empty(arr.shape, dtype=bool)
    for i in range(arr.shape[0]):
        for c, k in enumerate(ks):
            m = keep_largest_components(arr[i, c], k, connectivity)
            out[i, c] = fill_holes(m) if fill else m
    if isinstance(masks, Tensor):
        return torch.from_numpy(out).to(masks.device)
    return out


def component_counts(masks: Tensor | np.ndarray, classes: Sequence[str], connectivity: int = 8) -> np.ndarray:
    """Number of connected components of every class in every image.

    Returns:
        int64 ``[N, C]`` array.

    Raises:
        ValueError: on bad shapes or connectivity.
    """
    structure = _structure(connectivity)
    arr = _as_numpy_4d(masks, classes)
    counts = np.zeros(arr.shape[:2], dtype=np.int64)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            counts[i, c] = ndimage.label(arr[i, c], structure=structure)[1]
    return counts


def failure_counts(
    masks: Tensor | np.ndarray,
    classes: Sequence[str],
    components: Mapping[str, int] | None = None,
    connectivity: int = 8,
) -> dict[str, int]:
    """Count failed predictions per class, as in Holste et al.

    A prediction fails as **missing** when the class is empty in the image, and as **disconnected** when the
    class has more connected components than the anatomy (:data:`DEFAULT_COMPONENTS` or ``components``: two
    lungs, one heart...), i.e. extra regions or a split organ.

    Args:
        masks: predicted masks ``[N, C, H, W]``.
        classes: one name per channel.
        components: expected components per class, overriding the defaults.
        connectivity: 4 or 8.

    Returns:
        ``{"missing/<class>": images, "disconnected/<class>": images, ..., "images_with_failure": images,
        "images": N}``.

    Raises:
        ValueError: as :func:`postprocess_masks`.
    """
    expected = np.asarray(_components_per_class(classes, components))
    counts = component_counts(masks, classes, connectivity)
    missing = counts == 0
    disconnected = counts > expected[None, :]
    out: dict[str, int] = {}
    for c, name in enumerate(classes):
        out[f"missing/{name}"] = int(missing[:, c].sum())
        out[f"disconnected/{name}"] = int(disconnected[:, c].sum())
    out["images_with_failure"] = int((missing | disconnected).any(axis=1).sum())
    out["images"] = int(counts.shape[0])
    return out
