"""Segmentation losses on logits: cross-entropy, soft Dice family, Tversky, Tanimoto, pixel weight maps.

Every loss is a pure function taking **logits** (never probabilities) plus a thin ``nn.Module`` that stores its
options (class weights as buffers) and calls the function. Two output modes, validated once:

- ``"multilabel"``: one sigmoid per channel, classes may overlap (lungs and heart and clavicles as separate
  channels). Targets are float ``[B, C, H, W]`` in ``{0, 1}`` (soft targets in ``[0, 1]`` are accepted).
- ``"multiclass"``: softmax over the channels, exactly one label per pixel (Novikov et al.'s exclusive encoding,
  channel 0 = background). Targets are ``int64 [B, H, W]`` holding class indices in ``[0, C)``.

All losses compute in float32 for half/bfloat16 logits (autocast), in the logits' dtype otherwise; the Dice-like
losses sum the soft counts over the batch and the image (batch Dice, as in Novikov et al.), then average over
classes.

References:
    Novikov et al., "Fully convolutional architectures for multi-class segmentation in chest radiographs",
    IEEE TMI 2018 (soft Dice with inverse class-frequency weights).
    Sudre et al., "Generalised Dice overlap as a deep learning loss function for highly unbalanced
    segmentations", DLMIA 2017.
    Salehi et al., "Tversky loss function for image segmentation using 3D fully convolutional deep networks",
    MLMI 2017; Abraham & Khan, "A novel focal Tversky loss function with improved attention U-Net for lesion
    segmentation", ISBI 2019; Maga, "Attention BCDU-Net", 2021 (alpha 0.6, beta 0.4, gamma 0.675).
    Diakogiannis et al., "ResUNet-a", ISPRS 2020 (Tanimoto with complement), used by Res-CR-Net
    (Abdallah et al. 2020).
    Holste et al. (pixel weight maps: blurred class edges times inverse class frequency).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

Mode = Literal["multilabel", "multiclass"]
MODES: tuple[str, ...] = ("multilabel", "multiclass")

__all__ = [
    "LOSSES",
    "MODES",
    "BCELoss",
    "CELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "SumLoss",
    "TanimotoLoss",
    "TverskyLoss",
    "WeightMapLoss",
    "WeightedDiceLoss",
    "batch_class_weights",
    "bce_loss",
    "ce_loss",
    "compute_weight_maps",
    "create_loss",
    "dice_bce_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "generalized_dice_weights",
    "tanimoto_loss",
    "tversky_loss",
    "weight_map_loss",
    "weighted_dice_loss",
]


# ----------------------------------------------------------------------------------------------------------------
# validation and shared helpers


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise.

    Raises:
        ValueError: for any other value.
    """
    if mode not in MODES:
        raise ValueError(
            f"expected mode 'multilabel' (sigmoid, float targets [B,C,H,W]) or 'multiclass' (softmax, long targets "
            f"[B,H,W]), got {mode!r}"
        )
    return mode


def _check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"expected {name} > 0, got {value}")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if not value >= 0:
        raise ValueError(f"expected {name} >= 0, got {value}")
    return float(value)


def _check_inputs(logits: Tensor, targets: Tensor, mode: str) -> None:
    check_mode(mode)
    if logits.ndim != 4:
        raise ValueError(f"expected logits of shape [B, C, H, W], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"expected floating-point logits, got dtype {logits.dtype}")
    b, c, h, w = logits.shape
    if mode == "multilabel":
        if targets.shape != logits.shape:
            raise ValueError(
                f"expected multilabel targets of the logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}; "
                "for exclusive long labels [B,H,W] use mode='multiclass'"
            )
    else:
        if c < 2:
            raise ValueError(f"expected >= 2 channels (background + classes) for mode='multiclass', got {c}")
        if targets.shape != (b, h, w):
            raise ValueError(
                f"expected multiclass targets of shape {(b, h, w)} (class indices), got {tuple(targets.shape)}; "
                "for float one-hot/multi-label targets use mode='multilabel'"
            )
        if targets.dtype != torch.long:
            raise ValueError(f"expected multiclass targets of dtype torch.int64, got {targets.dtype}")
        # The range check needs a device sync; it is done on CPU only (on GPU, one_hot asserts instead).
        if targets.device.type == "cpu" and targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= c):
            raise ValueError(
                f"expected multiclass target values in [0, {c - 1}], got range [{int(targets.min())}, "
                f"{int(targets.max())}]; the logits need one channel per class including background"
            )


def _upcast(logits: Tensor) -> Tensor:
    """float32 for half/bfloat16 logits (autocast), the dtype itself for float32/float64."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _class_weights_tensor(class_weights: Sequence[float] | Tensor | None) -> Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten().clone()
    if weights.numel() == 0 or bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"expected class_weights finite and >= 0, one per channel, got {weights.tolist()}")
    if float(weights.sum()) <= 0:
        raise ValueError(f"expected class_weights with a positive sum, got {weights.tolist()}")
    return weights


def _check_weights_len(weights: Tensor | None, channels: int) -> None:
    if weights is not None and weights.numel() != channels:
        raise ValueError(f"expected {channels} class_weights (one per logit channel), got {weights.numel()}")


def probabilities_and_targets(logits: Tensor, targets: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Turn logits into float32 probabilities and targets into float32 one-hot/multi-hot maps.

    Args:
        logits: raw network outputs.
        targets: float masks (multilabel) or class indices (multiclass).
        mode: ``"multilabel"`` or ``"multiclass"``.

    Returns:
        ``(probs, onehot)``, both float32 ``[B, C, H, W]``.

    Raises:
        ValueError: on a bad mode, shape, dtype or (on CPU) label value.
    """
    _check_inputs(logits, targets, mode)
    logits = _upcast(logits)
    if mode == "multilabel":
        return torch.sigmoid(logits), targets.to(logits.dtype)
    onehot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return torch.softmax(logits, dim=1), onehot


def _soft_counts(probs: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class soft TP, FP, FN summed over batch and space, each ``[C]``."""
    dims = (0, 2, 3)
    tp = (probs * onehot).sum(dims)
    fp = (probs * (1 - onehot)).sum(dims)
    fn = ((1 - probs) * onehot).sum(dims)
    return tp, fp, fn


def _weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return values.mean()
    weights = weights.to(values)
    return (values * weights).sum() / weights.sum()


# ----------------------------------------------------------------------------------------------------------------
# cross-entropy


def bce_loss(
    logits: Tensor, targets: Tensor, class_weights: Tensor | None = None, pos_weight: Tensor | None = None
) -> Tensor:
    """Binary cross-entropy on logits (multilabel), optionally weighted per class.

    Args:
        logits: raw outputs, one sigmoid channel per class.
        targets: float masks in ``[0, 1]``, same shape as ``logits``.
        class_weights: optional ``[C]`` weight of each channel's term; the result is the weighted mean over
            channels (so uniform weights give the plain mean).
        pos_weight: optional ``[C]`` extra weight of positive pixels (as in ``F.binary_cross_entropy_with_logits``).

    Returns:
        Scalar loss.

    Raises:
        ValueError: on a shape mismatch or a wrong number of weights.

    Shape:
        logits, targets: ``[B, C, H, W]``.
    """
    _check_inputs(logits, targets, "multilabel")
    c = logits.shape[1]
    _check_weights_len(class_weights, c)
    _check_weights_len(pos_weight, c)
    logits = _upcast(logits)
    pw = None if pos_weight is None else pos_weight.to(logits).view(c, 1, 1)
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pw, reduction="none")
    return _weighted_mean(per_pixel.mean((0, 2, 3)), class_weights)


def ce_loss(logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Softmax cross-entropy on logits (multiclass), optionally with class weights.

    Args:
        logits: raw outputs, one channel per class including background.
        targets: class indices.
        class_weights: optional ``[C]`` weights; as in ``F.cross_entropy`` the result is the weighted mean over
            pixels (sum of w[y] * nll / sum of w[y]).

    Returns:
        Scalar loss.

    Raises:
        ValueError: on bad shapes, dtypes, label values or weight count.

    Shape:
        logits: ``[B, C, H, W]``; targets: ``int64 [B, H, W]``.
    """
    _check_inputs(logits, targets, "multiclass")
    _check_weights_len(class_weights, logits.shape[1])
    logits = _upcast(logits)
    weight = None if class_weights is None else class_weights.to(logits)
    return F.cross_entropy(logits, targets, weight=weight)


def _cross_entropy(logits: Tensor, targets: Tensor, mode: str, class_weights: Tensor | None = None) -> Tensor:
    if check_mode(mode) == "multilabel":
        return bce_loss(logits, targets, class_weights=class_weights)
    return ce_loss(logits, targets, class_weights=class_weights)


# ----------------------------------------------------------------------------------------------------------------
# Dice family


def batch_class_weights(onehot: Tensor) -> Tensor:
    """Novikov et al.'s class weights: the inverse of each class's pixel share in the batch, normalised to sum 1.

    Classes absent from the batch get weight 0 (their inverse share is infinite and their Dice carries no
    information); if every class is absent the weights are uniform.

    Args:
        onehot: float targets ``[B, C, H, W]`` (one-hot or multi-hot).

    Returns:
        float32 ``[C]`` weights, detached.
    """
    counts = onehot.detach().float().sum((0, 2, 3))
    total = onehot.shape[0] * onehot.shape[2] * onehot.shape[3]
    present = counts > 0
    inverse_share = torch.where(present, total / counts.clamp_min(1e-12), torch.zeros_like(counts))
    norm = inverse_share.sum()
    uniform = torch.full_like(counts, 1.0 / counts.numel())
    # torch.where instead of an `if` keeps this free of device syncs (and graph breaks under torch.compile).
    return torch.where(norm > 0, inverse_share / norm.clamp_min(1e-12), uniform)


def generalized_dice_weights(onehot: Tensor) -> Tensor:
    """Sudre et al.'s weights ``1 / (sum of target pixels)^2``, normalised to sum 1.

    Absent classes get the largest weight of a present class. The normalisation leaves the loss unchanged but keeps
    the smoothing term small relative to the weighted counts (raw weights of a 256x256 lung are ~1e-9).

    Args:
        onehot: float targets ``[B, C, H, W]``.

    Returns:
        float32 ``[C]`` weights, detached (uniform if every class is absent).
    """
    counts = onehot.detach().float().sum((0, 2, 3))
    present = counts > 0
    weights = torch.where(present, 1.0 / counts.clamp_min(1e-12) ** 2, torch.zeros_like(counts))
    weights = torch.where(present, weights, weights.max())
    weights = torch.where(present.any(), weights, torch.ones_like(counts))
    return weights / weights.sum()


def _dice_from_counts(tp: Tensor, fp: Tensor, fn: Tensor, smooth: float) -> Tensor:
    return (2 * tp + smooth) / (2 * tp + fp + fn + smooth)


def dice_loss(
    logits: Tensor,
    targets: Tensor,
    mode: Mode = "multilabel",
    class_weights: Tensor | None = None,
    smooth: float = 1.0,
) -> Tensor:
    """Soft Dice loss ``1 - sum_l w_l D_l / sum_l w_l`` with ``D_l = (2 TP + s) / (2 TP + FP + FN + s)``.

    Soft counts are summed over the batch and the image; ``smooth`` (``s``) keeps a class that is absent from
    both prediction and target at Dice 1.

    Args:
        logits: raw outputs.
        targets: float masks (multilabel) or class indices (multiclass).
        mode: ``"multilabel"`` (sigmoid) or ``"multiclass"`` (softmax; background is channel 0 and is included).
        class_weights: optional ``[C]`` weights; uniform when ``None``.
        smooth: additive smoothing ``s >= 0``.

    Returns:
        Scalar loss in ``[0, 1]``.

    Raises:
        ValueError: on a bad mode, shape, weight count or smoothing.

    Shape:
        logits: ``[B, C, H, W]``; targets: ``[B, C, H, W]`` float or ``[B, H, W]`` long.
    """
    _check_non_negative("smooth", smooth)
    probs, onehot = probabilities_and_targets(logits, targets, mode)
    _check_weights_len(class_weights, probs.shape[1])
    dice = _dice_from_counts(*_soft_counts(probs, onehot), smooth)
    return 1 - _weighted_mean(dice, class_weights)


def weighted_dice_loss(logits: Tensor, targets: Tensor, mode: Mode = "multilabel", smooth: float = 1.0) -> Tensor:
    """Soft Dice weighted by the inverse pixel share of each class in the batch (Novikov et al. 2018).

    Args:
        logits, targets, mode, smooth: as in :func:`dice_loss`.

    Returns:
        Scalar loss in ``[0, 1]``; the weights come from :func:`batch_class_weights`.

    Shape:
        as :func:`dice_loss`.
    """
    _check_non_negative("smooth", smooth)
    probs, onehot = probabilities_and_targets(logits, targets, mode)
    dice = _dice_from_counts(*_soft_counts(probs, onehot), smooth)
    return 1 - _weighted_mean(dice, batch_class_weights(onehot))


def generalized_dice_loss(
    logits: Tensor, targets: Tensor, mode: Mode = "multilabel", smooth: float = 1e-5
) -> Tensor:
    """Generalised Dice loss (Sudre et al. 2017): ``1 - 2 sum_l w_l TP_l / sum_l w_l (2 TP_l + FP_l + FN_l)``.

    Args:
        logits, targets, mode: as in :func:`dice_loss`.
        smooth: additive smoothing of numerator and denominator.

    Returns:
        Scalar loss in ``[0, 1]``; ``w_l = 1 / (target pixels of l)^2`` (:func:`generalized_dice_weights`).

    Shape:
        as :func:`dice_loss`.
    """
    _check_non_negative("smooth", smooth)
    probs, onehot = probabilities_and_targets(logits, targets, mode)
    tp, fp, fn = _soft_counts(probs, onehot)
    w = generalized_dice_weights(onehot)
    return 1 - (2 * (w * tp).sum() + smooth) / ((w * (2 * tp + fp + fn)).sum() + smooth)


def tversky_loss(
    logits: Tensor,
    targets: Tensor,
    mode: Mode = "multilabel",
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    class_weights: Tensor | None = None,
    smooth: float = 1.0,
) -> Tensor:
    """(Focal) Tversky loss: mean over classes of ``(1 - TI_l) ** gamma``, ``TI = (TP+s)/(TP + a FP + b FN + s)``.

    ``alpha`` weighs false positives and ``beta`` false negatives (Salehi et al. 2017); ``alpha = beta = 0.5`` and
    ``gamma = 1`` is the soft Dice loss with smoothing ``2 s``. ``gamma`` is the exponent itself (Abraham & Khan
    write ``1/gamma``: their ``gamma = 4/3`` is ``gamma = 0.75`` here); Maga 2021 uses alpha 0.6, beta 0.4, gamma 0.675.

    Args:
        logits, targets, mode: as in :func:`dice_loss`.
        alpha: false-positive weight, ``>= 0``.
        beta: false-negative weight, ``>= 0``.
        gamma: focal exponent, ``> 0``.
        class_weights: optional ``[C]`` weights of the per-class terms.
        smooth: additive smoothing ``>= 0``.

    Returns:
        Scalar loss in ``[0, 1]``.

    Raises:
        ValueError: on bad coefficients, mode or shapes.

    Shape:
        as :func:`dice_loss`.
    """
    _check_non_negative("alpha", alpha)
    _check_non_negative("beta", beta)
    _check_positive("gamma", gamma)
    _check_non_negative("smooth", smooth)
    if alpha + beta <= 0:
        raise ValueError(f"expected alpha + beta > 0, got alpha={alpha}, beta={beta}")
    probs, onehot = probabilities_and_targets(logits, targets, mode)
    _check_weights_len(class_weights, probs.shape[1])
    tp, fp, fn = _soft_counts(probs, onehot)
    tversky = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    per_class = (1 - tversky).clamp_min(0)
    if gamma != 1.0:
        per_class = per_class**gamma
    return _weighted_mean(per_class, class_weights)


def focal_tversky_loss(
    logits: Tensor,
    targets: Tensor,
    mode: Mode = "multilabel",
    alpha: float = 0.6,
    beta: float = 0.4,
    gamma: float = 0.675,
    class_weights: Tensor | None = None,
    smooth: float = 1.0,
) -> Tensor:
    """Focal Tversky loss with Maga 2021's defaults (alpha 0.6, beta 0.4, gamma 0.675); see :func:`tversky_loss`."""
    return tversky_loss(logits, targets, mode, alpha, beta, gamma, class_weights, smooth)


def tanimoto_loss(
    logits: Tensor,
    targets: Tensor,
    mode: Mode = "multilabel",
    complement: bool = True,
    class_weights: Tensor | None = None,
    smooth: float = 1e-5,
) -> Tensor:
    """Tanimoto loss with complement (Diakogiannis et al. 2020, used by Res-CR-Net).

    ``T(p, t) = (sum p t + s) / (sum (p^2 + t^2 - p t) + s)`` per class over batch and image; with complement the
    score is ``(T(p, t) + T(1 - p, 1 - t)) / 2``, which also rewards getting the background right.

    Args:
        logits, targets, mode: as in :func:`dice_loss`.
        complement: average with the Tanimoto coefficient of the complements.
        class_weights: optional ``[C]`` weights of the per-class terms.
        smooth: additive smoothing ``>= 0``.

    Returns:
        Scalar loss ``1 - mean_l T_l`` in ``[0, 1]``.

    Shape:
        as :func:`dice_loss`.
    """
    _check_non_negative("smooth", smooth)
    probs, onehot = probabilities_and_targets(logits, targets, mode)
    _check_weights_len(class_weights, probs.shape[1])

    def tanimoto(p: Tensor, t: Tensor) -> Tensor:
        dims = (0, 2, 3)
        inter = (p * t).sum(dims)
        return (inter + smooth) / ((p * p).sum(dims) + (t * t).sum(dims) - inter + smooth)

    score = tanimoto(probs, onehot)
    if complement:
        score = (score + tanimoto(1 - probs, 1 - onehot)) / 2
    return 1 - _weighted_mean(score, class_weights)


def dice_bce_loss(
    logits: Tensor,
    targets: Tensor,
    mode: Mode = "multilabel",
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    class_weights: Tensor | None = None,
    smooth: float = 1.0,
) -> Tensor:
    """``dice_weight * dice_loss + ce_weight * cross-entropy`` (BCE for multilabel, CE for multiclass).

    Args:
        logits, targets, mode, smooth: as in :func:`dice_loss`.
        dice_weight, ce_weight: non-negative weights of the two terms.
        class_weights: optional ``[C]`` weights used by both terms.

    Returns:
        Scalar loss.

    Shape:
        as :func:`dice_loss`.
    """
    _check_non_negative("dice_weight", dice_weight)
    _check_non_negative("ce_weight", ce_weight)
    return dice_weight * dice_loss(logits, targets, mode, class_weights, smooth) + ce_weight * _cross_entropy(
        logits, targets, mode, class_weights
    )


# ----------------------------------------------------------------------------------------------------------------
# pixel weight maps


def compute_weight_maps(
    masks: Tensor | np.ndarray,
    sigma: float = 3.0,
    edge_weight: float = 5.0,
    class_frequencies: Sequence[float] | None = None,
    exclusive: bool = False,
) -> Tensor:
    """Pre-compute pixel weight maps: blurred class edges times inverse class frequency (Holste et al.).

    For each class ``c`` with pixel share ``f_c`` (over the given masks, or ``class_frequencies``) the balance
    term is ``0.5 / f_c`` inside the class and ``0.5 / (1 - f_c)`` outside, so that it averages to 1 over the
    masks; the edge term is ``1 + edge_weight * E_c`` where ``E_c`` is the class boundary (pixels whose 3x3
    neighbourhood crosses the mask border) blurred with a Gaussian of width ``sigma`` and scaled to a maximum of 1.
    The map is their product. Computed once on the training masks with scipy, not per step.

    Args:
        masks: ``[N, C, H, W]`` masks (bool or {0, 1}).
        sigma: Gaussian blur of the edges in pixels, ``> 0``.
        edge_weight: extra weight at the edges, ``>= 0`` (0 gives pure class balancing).
        class_frequencies: optional ``[C]`` pixel shares in ``(0, 1)``; default: measured on ``masks``.
        exclusive: return ``[N, H, W]`` maps for multiclass losses (the maximum over classes) instead.

    Returns:
        float32 ``[N, C, H, W]`` (or ``[N, H, W]`` when ``exclusive``) weight maps, all ``> 0``.

    Raises:
        ValueError: on a bad shape, ``sigma``, ``edge_weight`` or frequencies.
    """
    _check_positive("sigma", sigma)
    _check_non_negative("edge_weight", edge_weight)
    arr = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if arr.ndim != 4:
        raise ValueError(f"expected masks of shape [N, C, H, W], got shape {arr.shape}")
    arr = arr > 0.5
    n, c = arr.shape[:2]
    if class_frequencies is None:
        freq = arr.mean(axis=(0, 2, 3))
    else:
        freq = np.asarray(class_frequencies, dtype=np.float64).ravel()
        if freq.size != c:
            raise ValueError(f"expected {c} class_frequencies (one per mask channel), got {freq.size}")
    # A class that fills nothing or everything would give an infinite weight; clamp to one pixel's share.
    pixel = 1.0 / max(1, n * arr.shape[2] * arr.shape[3])
    freq = np.clip(freq, pixel, 1 - pixel)
    footprint = np.ones((3, 3), dtype=bool)
    out = np.empty(arr.shape, dtype=np.float32)
    for i in range(n):
        for k in range(c):
            m = arr[i, k]
            edges = ndimage.binary_dilation(m, footprint) & ~ndimage.binary_erosion(m, footprint, border_value=1)
            blurred = ndimage.gaussian_filter(edges.astype(np.float64), sigma)
            peak = blurred.max()
            if peak > 0:
                blurred /= peak
            balance = np.where(m, 0.5 / freq[k], 0.5 / (1 - freq[k]))
            out[i, k] = balance * (1 + edge_weight * blurred)
    maps = torch.from_numpy(out)
    return maps.amax(dim=1) if exclusive else maps


def weight_map_loss(logits: Tensor, targets: Tensor, weight_maps: Tensor, mode: Mode = "multilabel") -> Tensor:
    """Cross-entropy weighted per pixel by pre-computed maps (:func:`compute_weight_maps`).

    Args:
        logits, targets, mode: as in :func:`dice_loss`.
        weight_maps: ``[B, C, H, W]`` for multilabel, ``[B, H, W]`` for multiclass, non-negative.

    Returns:
        Scalar ``mean(weight * per-pixel cross-entropy)``.

    Raises:
        ValueError: if the maps' shape does not match.
    """
    _check_inputs(logits, targets, mode)
    expected = tuple(logits.shape) if mode == "multilabel" else tuple(targets.shape)
    if tuple(weight_maps.shape) != expected:
        raise ValueError(
            f"expected weight_maps of shape {expected} for mode={mode!r}, got {tuple(weight_maps.shape)}; "
            "compute them with compute_weight_maps(masks, exclusive=(mode == 'multiclass'))"
        )
    logits = _upcast(logits)
    weight_maps = weight_maps.to(logits)
    if mode == "multilabel":
        per_pixel = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, targets, reduction="none")
    return (weight_maps * per_pixel).mean()


# ----------------------------------------------------------------------------------------------------------------
# modules


class _ModeLoss(nn.Module):
    """Base of the thin loss modules: a validated mode and optional class weights kept as a buffer."""

    class_weights: Tensor | None

    def __init__(self, mode: Mode = "multilabel", class_weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.register_buffer("class_weights", _class_weights_tensor(class_weights))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class BCELoss(_ModeLoss):
    """Binary cross-entropy on logits (multilabel only); see :func:`bce_loss`.

    Args:
        class_weights: optional per-channel weights (buffer).
        pos_weight: optional per-channel weight of positive pixels (buffer).
        mode: must be ``"multilabel"`` (accepted so that every loss takes ``mode``).

    Raises:
        ValueError: for ``mode="multiclass"`` (use ``CELoss``) or bad weights.
    """

    pos_weight: Tensor | None

    def __init__(
        self,
        class_weights: Sequence[float] | Tensor | None = None,
        pos_weight: Sequence[float] | Tensor | None = None,
        mode: Mode = "multilabel",
    ) -> None:
        if check_mode(mode) != "multilabel":
            raise ValueError(f"expected mode='multilabel' for bce, got {mode!r}; use 'ce' for exclusive classes")
        super().__init__(mode, class_weights)
        self.register_buffer("pos_weight", _class_weights_tensor(pos_weight))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against float ``targets [B,C,H,W]``."""
        return bce_loss(logits, targets, self.class_weights, self.pos_weight)


class CELoss(_ModeLoss):
    """Softmax cross-entropy on logits (multiclass only); see :func:`ce_loss`.

    Args:
        class_weights: optional per-class weights (buffer).
        mode: must be ``"multiclass"``.

    Raises:
        ValueError: for ``mode="multilabel"`` (use ``BCELoss``) or bad weights.
    """

    def __init__(self, class_weights: Sequence[float] | Tensor | None = None, mode: Mode = "multiclass") -> None:
        if check_mode(mode) != "multiclass":
            raise ValueError(f"expected mode='multiclass' for ce, got {mode!r}; use 'bce' for overlapping classes")
        super().__init__(mode, class_weights)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against long ``targets [B,H,W]``."""
        return ce_loss(logits, targets, self.class_weights)


class DiceLoss(_ModeLoss):
    """Soft Dice loss on logits; see :func:`dice_loss`. Subclasses override :meth:`weights` only.

    Args:
        mode: ``"multilabel"`` or ``"multiclass"``.
        class_weights: optional fixed per-class weights (buffer).
        smooth: additive smoothing ``>= 0``.
    """

    def __init__(
        self, mode: Mode = "multilabel", class_weights: Sequence[float] | Tensor | None = None, smooth: float = 1.0
    ) -> None:
        super().__init__(mode, class_weights)
        self.smooth = _check_non_negative("smooth", smooth)

    def weights(self, onehot: Tensor) -> Tensor | None:
        """Per-class weights for this batch (the fixed ``class_weights`` here)."""
        return self.class_weights

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against targets (float ``[B,C,H,W]`` or long ``[B,H,W]``)."""
        probs, onehot = probabilities_and_targets(logits, targets, self.mode)
        weights = self.weights(onehot)
        _check_weights_len(weights, probs.shape[1])
        return 1 - _weighted_mean(_dice_from_counts(*_soft_counts(probs, onehot), self.smooth), weights)


class WeightedDiceLoss(DiceLoss):
    """Soft Dice with Novikov et al.'s batch class-frequency weights; see :func:`weighted_dice_loss`."""

    def __init__(self, mode: Mode = "multilabel", smooth: float = 1.0) -> None:
        super().__init__(mode, None, smooth)

    def weights(self, onehot: Tensor) -> Tensor:
        """Inverse pixel share of each class in the batch (:func:`batch_class_weights`)."""
        return batch_class_weights(onehot)


class GeneralizedDiceLoss(_ModeLoss):
    """Generalised Dice loss (Sudre et al. 2017); see :func:`generalized_dice_loss`."""

    def __init__(self, mode: Mode = "multilabel", smooth: float = 1e-5) -> None:
        super().__init__(mode)
        self.smooth = _check_non_negative("smooth", smooth)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against targets."""
        return generalized_dice_loss(logits, targets, self.mode, self.smooth)


class TverskyLoss(_ModeLoss):
    """Tversky loss (Salehi et al. 2017); see :func:`tversky_loss`. ``gamma`` is the focal hook.

    Args:
        mode: ``"multilabel"`` or ``"multiclass"``.
        alpha: false-positive weight.
        beta: false-negative weight.
        gamma: focal exponent (1 = plain Tversky).
        class_weights: optional per-class weights (buffer).
        smooth: additive smoothing.

    Raises:
        ValueError: on negative ``alpha``/``beta``/``smooth``, ``alpha + beta == 0`` or ``gamma <= 0``.
    """

    def __init__(
        self,
        mode: Mode = "multilabel",
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        class_weights: Sequence[float] | Tensor | None = None,
        smooth: float = 1.0,
    ) -> None:
        super().__init__(mode, class_weights)
        self.alpha = _check_non_negative("alpha", alpha)
        self.beta = _check_non_negative("beta", beta)
        self.gamma = _check_positive("gamma", gamma)
        self.smooth = _check_non_negative("smooth", smooth)
        if alpha + beta <= 0:
            raise ValueError(f"expected alpha + beta > 0, got alpha={alpha}, beta={beta}")

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against targets."""
        return tversky_loss(
            logits, targets, self.mode, self.alpha, self.beta, self.gamma, self.class_weights, self.smooth
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}"


class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss: :class:`TverskyLoss` with Maga 2021's defaults (alpha 0.6, beta 0.4, gamma 0.675)."""

    def __init__(
        self,
        mode: Mode = "multilabel",
        alpha: float = 0.6,
        beta: float = 0.4,
        gamma: float = 0.675,
        class_weights: Sequence[float] | Tensor | None = None,
        smooth: float = 1.0,
    ) -> None:
        super().__init__(mode, alpha, beta, gamma, class_weights, smooth)


class TanimotoLoss(_ModeLoss):
    """Tanimoto loss with complement (Diakogiannis et al. 2020; Res-CR-Net); see :func:`tanimoto_loss`."""

    def __init__(
        self,
        mode: Mode = "multilabel",
        complement: bool = True,
        class_weights: Sequence[float] | Tensor | None = None,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__(mode, class_weights)
        self.complement = bool(complement)
        self.smooth = _check_non_negative("smooth", smooth)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of ``logits [B,C,H,W]`` against targets."""
        return tanimoto_loss(logits, targets, self.mode, self.complement, self.class_weights, self.smooth)


class WeightMapLoss(_ModeLoss):
    """Cross-entropy weighted by pre-computed pixel maps (Holste et al.); see :func:`weight_map_loss`.

    The maps travel with the batch: ``forward(logits, targets, weight_maps)``.
    """

    def forward(self, logits: Tensor, targets: Tensor, weight_maps: Tensor) -> Tensor:
        """Loss of ``logits`` against ``targets`` weighted by ``weight_maps`` (see the function for shapes)."""
        return weight_map_loss(logits, targets, weight_maps, self.mode)


class SumLoss(nn.Module):
    """Weighted sum of losses that share a ``forward(logits, targets)`` signature.

    Args:
        losses: mapping from a term name to a loss module (e.g. ``{"dice": DiceLoss(), "bce": BCELoss()}``).
        weights: optional mapping from term name to a non-negative weight (default 1 each).

    Raises:
        ValueError: on no losses, unknown or negative weights.
    """

    def __init__(self, losses: dict[str, nn.Module], weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("expected at least one loss in SumLoss, got none")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(losses))
        if unknown:
            raise ValueError(f"expected weights for the terms {sorted(losses)}, got unknown terms {unknown}")
        self.losses = nn.ModuleDict(losses)
        self.weights = {name: _check_non_negative(f"weight of {name!r}", weights.get(name, 1.0)) for name in losses}

    def terms(self, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Each unweighted term by name plus ``"loss"``, the weighted sum (for logging)."""
        out = {name: loss(logits, targets) for name, loss in self.losses.items()}
        out["loss"] = sum(self.weights[name] * value for name, value in out.items())  # type: ignore[assignment]
        return out

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The weighted sum of the terms."""
        return self.terms(logits, targets)["loss"]

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def _dice_bce(
    mode: Mode = "multilabel",
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    class_weights: Sequence[float] | Tensor | None = None,
    smooth: float = 1.0,
) -> SumLoss:
    """Dice + cross-entropy (BCE for multilabel, CE for multiclass) as a :class:`SumLoss`; see :func:`dice_bce_loss`."""
    check_mode(mode)
    ce: nn.Module = BCELoss(class_weights) if mode == "multilabel" else CELoss(class_weights)
    return SumLoss(
        {"dice": DiceLoss(mode, class_weights, smooth), "ce": ce}, {"dice": dice_weight, "ce": ce_weight}
    )


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": BCELoss,
    "ce": CELoss,
    "dice": DiceLoss,
    "weighted_dice": WeightedDiceLoss,
    "generalized_dice": GeneralizedDiceLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "tanimoto": TanimotoLoss,
    "dice_bce": _dice_bce,
}


def create_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a loss module by name.

    Args:
        name: one of ``bce``, ``ce``, ``dice``, ``weighted_dice``, ``generalized_dice``, ``tversky``,
            ``focal_tversky``, ``tanimoto``, ``dice_bce``.
        **kwargs: the loss's keywords (``mode``, ``class_weights``, ``smooth``, ``alpha``...). ``bce`` accepts only
            ``mode="multilabel"`` and ``ce`` only ``mode="multiclass"``.

    Returns:
        An ``nn.Module`` whose ``forward(logits, targets)`` returns a scalar loss.

    Raises:
        ValueError: on an unknown name (the message lists the valid ones) or keywords the loss does not take.
    """
    if name not in LOSSES:
        raise ValueError(f"expected a loss name in {sorted(LOSSES)}, got {name!r}")
    factory = LOSSES[name]
    accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"expected keywords of loss {name!r} among {accepted}, got unknown {unknown}")
    return factory(**kwargs)
