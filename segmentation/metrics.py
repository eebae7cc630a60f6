"""Segmentation metrics: overlap scores from tp/fp/fn/tn, surface distances, summaries and paired tests.

Overlap scores are pure functions of per-image, per-class confusion counts, with one explicit rule for empty
masks (``0 / 0``):

- **both prediction and target empty** -> 1.0 for Dice, Jaccard, precision and recall (the organ is correctly
  absent);
- **only one of them empty** -> the ordinary formula, which gives 0.0 (for precision with an empty prediction and
  recall with an empty target, where the formula is ``0 / 0``, the result is also 0.0).

Surface distances (symmetric mean absolute surface distance, 95% Hausdorff) use
``scipy.ndimage.distance_transform_edt`` between mask boundaries, in pixels and, when the pixel spacing is known,
in millimetres. Rule for empty masks: both empty -> ``nan`` (undefined; left out of summaries), exactly one
empty -> ``inf`` (the organ was missed or hallucinated; counted apart by :func:`summarize`).

References:
    Oliveira & dos Santos, "Deep transfer learning for segmentation of anatomical structures in chest
    radiographs", SIBGRAPI 2018 (Jaccard per organ). Novikov et al., IEEE TMI 2018.
    Holste et al. (failure analysis; see :mod:`segmentation.postprocess`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage, stats
from torch import Tensor

__all__ = [
    "OVERLAP_METRICS",
    "SURFACE_METRICS",
    "MetricAccumulator",
    "accuracy",
    "confusion_counts",
    "dice",
    "evaluate_masks",
    "hd95",
    "jaccard",
    "mean_surface_distance",
    "precision",
    "recall",
    "summarize",
    "summarize_records",
    "surface_distances",
    "wilcoxon_test",
]

ArrayLike = Tensor | np.ndarray
Spacing = float | tuple[float, float] | None


# ----------------------------------------------------------------------------------------------------------------
# confusion counts and overlap scores


def _as_bool_tensor(x: ArrayLike, name: str) -> Tensor:
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise ValueError(f"expected {name} as a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.dtype != torch.bool:
        if t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            t = t > 0.5
        else:
            raise ValueError(f"expected {name} of dtype bool (or {{0, 1}} numbers), got {t.dtype}")
    return t


def confusion_counts(pred: ArrayLike, target: ArrayLike) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-image, per-class true/false positives/negatives.

    Args:
        pred: predicted masks (bool, or numbers thresholded at 0.5).
        target: reference masks, same shape.

    Returns:
        ``(tp, fp, fn, tn)``, each int64 ``[N, C]`` on the inputs' device.

    Raises:
        ValueError: if the shapes differ or are not 4-D.

    Shape:
        pred, target: ``[N, C, H, W]``.
    """
    p = _as_bool_tensor(pred, "pred")
    t = _as_bool_tensor(target, "target")
    if p.ndim != 4 or p.shape != t.shape:
        raise ValueError(
            f"expected pred and target of the same shape [N, C, H, W], got {tuple(p.shape)} and {tuple(t.shape)}"
        )
    t = t.to(p.device)
    dims = (2, 3)
    tp = (p & t).sum(dims)
    fp = (p & ~t).sum(dims)
    fn = (~p & t).sum(dims)
    tn = (~p & ~t).sum(dims)
    return tp, fp, fn, tn


def _ratio(num: Tensor, den: Tensor, both_empty: Tensor) -> Tensor:
    num = num.double()
    den = den.double()
    out = torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))
    return torch.where(both_empty, torch.ones_like(out), out)


def dice(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor | None = None) -> Tensor:
    """Dice ``2 TP / (2 TP + FP + FN)``; 1.0 when both masks are empty. float64, same shape as ``tp``."""
    return _ratio(2 * tp, 2 * tp + fp + fn, (tp + fp + fn) == 0)


def jaccard(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor | None = None) -> Tensor:
    """Jaccard (IoU) ``TP / (TP + FP + FN)``; 1.0 when both masks are empty. float64, same shape as ``tp``."""
    return _ratio(tp, tp + fp + fn, (tp + fp + fn) == 0)


def precision(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor | None = None) -> Tensor:
    """Precision ``TP / (TP + FP)``; 1.0 when both masks are empty, 0.0 when only the prediction is."""
    return _ratio(tp, tp + fp, (tp + fp + fn) == 0)


def recall(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor | None = None) -> Tensor:
    """Recall (sensitivity) ``TP / (TP + FN)``; 1.0 when both masks are empty, 0.0 when only the target is."""
    return _ratio(tp, tp + fn, (tp + fp + fn) == 0)


def accuracy(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor) -> Tensor:
    """Pixel accuracy ``(TP + TN) / (TP + FP + FN + TN)`` (never ``0 / 0`` for a non-empty image)."""
    return _ratio(tp + tn, tp + fp + fn + tn, (tp + fp + fn + tn) == 0)


OVERLAP_METRICS = {"dice": dice, "jaccard": jaccard, "precision": precision, "recall": recall, "accuracy": accuracy}
SURFACE_METRICS = ("asd", "hd95")


# ----------------------------------------------------------------------------------------------------------------
# surface distances


def _spacing_pair(spacing: Spacing) -> tuple[float, float]:
    if spacing is None:
        return (1.0, 1.0)
    if np.isscalar(spacing):
        values = (float(spacing), float(spacing))  # type: ignore[arg-type]
    else:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(values) != 2 or not all(v > 0 and math.isfinite(v) for v in values):
        raise ValueError(f"expected spacing as a positive number or (row, col) pair in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1), border_value=0)


def surface_distances(pred: ArrayLike, target: ArrayLike, spacing: Spacing = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each boundary pixel of one mask to the nearest boundary pixel of the other.

    Args:
        pred: 2-D predicted mask.
        target: 2-D reference mask, same shape.
        spacing: pixel size (a number, or ``(row, col)``); distances are in its unit (pixels when ``None``).

    Returns:
        ``(pred_to_target, target_to_pred)`` float64 arrays, one value per boundary pixel of the first mask.
        Both are empty when a mask is empty (see :func:`mean_surface_distance` for the rule).

    Raises:
        ValueError: on shapes that differ or are not 2-D, or a bad spacing.
    """
    p = np.asarray(pred.detach().cpu() if isinstance(pred, Tensor) else pred).astype(bool)
    t = np.asarray(target.detach().cpu() if isinstance(target, Tensor) else target).astype(bool)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"expected two 2-D masks of the same shape, got {p.shape} and {t.shape}")
    sampling = _spacing_pair(spacing)
    bp, bt = _boundary(p), _boundary(t)
    if not bp.any() or not bt.any():
        return np.zeros(0), np.zeros(0)
    to_target = ndimage.distance_transform_edt(~bt, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~bp, sampling=sampling)
    return to_target[bp], to_pred[bt]


def _surface_scores(pred: ArrayLike, target: ArrayLike, spacing: Spacing) -> tuple[float, float]:
    """``(asd, hd95)`` from one distance computation, with the empty-mask rule applied."""
    a, b = surface_distances(pred, target, spacing)
    if a.size == 0 and b.size == 0:
        p_any = bool(np.asarray(pred).any()) if not isinstance(pred, Tensor) else bool(pred.any())
        t_any = bool(np.asarray(target).any()) if not isinstance(target, Tensor) else bool(target.any())
        if not p_any and not t_any:
            return math.nan, math.nan
        return math.inf, math.inf
    return float((a.sum() + b.sum()) / (a.size + b.size)), float(max(np.percentile(a, 95), np.percentile(b, 95)))


def mean_surface_distance(pred: ArrayLike, target: ArrayLike, spacing: Spacing = None) -> float:
    """Symmetric mean absolute surface distance: the mean, over the boundary pixels of both masks, of the
    distance to the other mask's boundary.

    Empty masks: both empty -> ``nan``; exactly one empty -> ``inf``.

    Args:
        pred, target: 2-D masks.
        spacing: pixel size; result in its unit (pixels when ``None``).

    Returns:
        The distance as a float.

    Raises:
        ValueError: as :func:`surface_distances`.
    """
    return _surface_scores(pred, target, spacing)[0]


def hd95(pred: ArrayLike, target: ArrayLike, spacing: Spacing = None) -> float:
    """95% Hausdorff distance: the larger of the two directed 95th percentiles of boundary distances.

    Empty masks: both empty -> ``nan``; exactly one empty -> ``inf``.

    Args:
        pred, target: 2-D masks.
        spacing: pixel size; result in its unit (pixels when ``None``).

    Returns:
        The distance as a float.

    Raises:
        ValueError: as :func:`surface_distances`.
    """
    return _surface_scores(pred, target, spacing)[1]


# ----------------------------------------------------------------------------------------------------------------
# per-image evaluation


def evaluate_masks(
    pred_bool: ArrayLike,
    target_bool: ArrayLike,
    classes: Sequence[str],
    spacing_mm: float | Sequence[float | None] | None = None,
    surface: bool = False,
) -> list[dict[str, float]]:
    """Per-image metrics for every class.

    Keys are ``"<metric>/<class>"`` with metric in ``dice``, ``jaccard``, ``precision``, ``recall``, ``accuracy``
    and, when ``surface`` is set, ``asd`` and ``hd95`` in pixels plus ``asd_mm`` and ``hd95_mm`` when
    ``spacing_mm`` is given (``nan`` for an image whose spacing is ``None``). Empty-mask rules: see the module.

    Args:
        pred_bool: predicted masks.
        target_bool: reference masks.
        classes: one name per channel.
        spacing_mm: pixel size in mm of the masks as passed (after any resizing): one number for all images or
            one per image (``None`` where unknown).
        surface: also compute the (slower) surface distances.

    Returns:
        One dict per image, keys in a fixed order, values Python floats.

    Raises:
        ValueError: on shapes that differ, a class count that does not match the channels, or a spacing list of
            the wrong length.

    Shape:
        pred_bool, target_bool: ``[N, C, H, W]``.
    """
    tp, fp, fn, tn = confusion_counts(pred_bool, target_bool)
    n, c = tp.shape
    classes = list(classes)
    if len(classes) != c:
        raise ValueError(f"expected {c} class names (one per mask channel), got {len(classes)}: {classes}")
    if spacing_mm is None or np.isscalar(spacing_mm):
        spacings: list[float | None] = [spacing_mm] * n  # type: ignore[list-item]
    else:
        spacings = list(spacing_mm)  # type: ignore[arg-type]
        if len(spacings) != n:
            raise ValueError(f"expected {n} spacings (one per image) or a single number, got {len(spacings)}")
    scores = {name: fn_(tp, fp, fn, tn).cpu().tolist() for name, fn_ in OVERLAP_METRICS.items()}
    if surface:
        p = _as_bool_tensor(pred_bool, "pred_bool").detach().cpu().numpy()
        t = _as_bool_tensor(target_bool, "target_bool").detach().cpu().numpy()
    records: list[dict[str, float]] = []
    for i in range(n):
        record: dict[str, float] = {}
        for name in OVERLAP_METRICS:
            for k, cls in enumerate(classes):
                record[f"{name}/{cls}"] = float(scores[name][i][k])
        if surface:
            for k, cls in enumerate(classes):
                record[f"asd/{cls}"], record[f"hd95/{cls}"] = _surface_scores(p[i, k], t[i, k], None)
                if spacing_mm is not None:
                    s = spacings[i]
                    mm = (math.nan, math.nan) if s is None else _surface_scores(p[i, k], t[i, k], s)
                    record[f"asd_mm/{cls}"], record[f"hd95_mm/{cls}"] = mm
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------------------------
# summaries and tests


def summarize(values: Iterable[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and t-distribution confidence interval over images.

    ``nan`` values (undefined, e.g. surface distance between two empty masks) are left out and counted in
    ``n_nan``; infinite values (a missed organ's surface distance) are left out and counted in ``n_inf``.

    Args:
        values: per-image scores.
        confidence: two-sided level of the interval, in ``(0, 1)``.

    Returns:
        ``{"mean", "std", "ci_low", "ci_high", "n", "n_nan", "n_inf"}``; ``std`` and the interval are ``nan`` with
        fewer than two finite values, everything but the counts is ``nan`` with none.

    Raises:
        ValueError: on a confidence outside ``(0, 1)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"expected confidence in (0, 1), got {confidence}")
    arr = np.asarray(list(values), dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    out = {"n": float(n), "n_nan": float(np.isnan(arr).sum()), "n_inf": float(np.isinf(arr).sum())}
    mean = float(finite.mean()) if n else math.nan
    std = float(finite.std(ddof=1)) if n > 1 else math.nan
    if n > 1:
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    else:
        half = math.nan
    out.update(mean=mean, std=std, ci_low=mean - half, ci_high=mean + half)
    return out


def summarize_records(records: Sequence[Mapping[str, float]], confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """:func:`summarize` for every numeric key of per-image records (e.g. from :func:`evaluate_masks`)."""
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return {k: summarize([r[k] for r in records if k in r], confidence) for k in keys}


def wilcoxon_test(scores_a: Sequence[float], scores_b: Sequence[float]) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test between two models' paired per-image scores.

    Pairs where either score is not finite are dropped. If every difference is zero the models are
    indistinguishable and the p-value is 1.0.

    Args:
        scores_a: per-image scores of model A.
        scores_b: the same images' scores of model B, same order.

    Returns:
        ``{"statistic", "p_value", "n", "median_difference"}`` (difference = A - B).

    Raises:
        ValueError: on sequences of different lengths or fewer than one usable pair.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two paired 1-D score lists of the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    if diff.size == 0:
        raise ValueError("expected at least one pair of finite scores, got none")
    if not np.any(diff != 0):
        return {"statistic": 0.0, "p_value": 1.0, "n": float(diff.size), "median_difference": 0.0}
    result = stats.wilcoxon(diff)
    return {
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "n": float(diff.size),
        "median_difference": float(np.median(diff)),
    }


class MetricAccumulator:
    """Accumulates per-image metrics over batches: ``reset()``, ``update(pred, target)``, ``compute()``.

    Args:
        classes: one name per mask channel.
        surface: also compute surface distances (slower).
        spacing_mm: default pixel spacing passed to :func:`evaluate_masks`.

    Example:
        >>> acc = MetricAccumulator(("lungs",))
        >>> for pred, target in batches:  # doctest: +SKIP
        ...     acc.update(pred, target)
        >>> acc.compute()["dice/lungs"]  # doctest: +SKIP
    """

    def __init__(
        self, classes: Sequence[str], surface: bool = False, spacing_mm: float | Sequence[float | None] | None = None
    ) -> None:
        if not classes:
            raise ValueError("expected at least one class name, got none")
        self.classes = tuple(classes)
        self.surface = surface
        self.spacing_mm = spacing_mm
        self.records: list[dict[str, float]] = []

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.records = []

    def update(
        self, pred: ArrayLike, target: ArrayLike, spacing_mm: float | Sequence[float | None] | None = None
    ) -> list[dict[str, float]]:
        """Add a batch ``[N, C, H, W]``; returns its per-image records."""
        spacing = spacing_mm if spacing_mm is not None else self.spacing_mm
        batch = evaluate_masks(pred, target, self.classes, spacing, self.surface)
        self.records.extend(batch)
        return batch

    def compute(self) -> dict[str, float]:
        """Mean of every metric over the images seen (finite values only; ``nan`` if none)."""
        return {k: v["mean"] for k, v in summarize_records(self.records).items()}
