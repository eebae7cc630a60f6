"""Model selection for the transfer method: which evaluation's EMA weights become the predictor.

The rules (``TransferConfig.selection``, :data:`transfer.config.SELECTION_RULES`), higher is better; the ones a preset
uses or that won a measurement (docs/results/transfer.md, "Label-free stopping" and "A stopping rule for short and
long runs"):

* ``shape_cycle`` (the default): the mean of ``shape_prior`` and ``label_free``: a collapse of shapes outweighs any
  cycle gain, one image more or less is outweighed by a clear cycle gain.
* ``shape_prior``: share of (target image, class) predictions of the view average whose number of connected
  components and area lie in the range seen on the **source** training masks (:class:`ShapePrior`); its score adds
  ``1e-3 * label_free`` (when the source validation pairs are given) to break the ties of this coarse share.
* ``label_free``: the mean of ``source_cycle`` (Dice of M_A(G_BA(G_AB(a))) against y_a on the source validation
  split) and ``cycle_agreement`` (Dice between M_A(G_BA(b)) and M_A(G_BA(G_AB(G_BA(b)))) on unlabelled target images).
* ``paper_target_val``: mean Dice on the **full** target validation labels, the protocol of Oliveira & dos Santos
  (2018). It uses more target labels than a fraction grants and must be reported under this name.
* ``last``: the last weights.

No rule reads a target test image; only ``paper_target_val`` reads target labels. Every criterion that can be
computed is returned (and logged to TensorBoard) whatever the rule, so a study can replay other rules from a run's
history: also ``source_dice``, ``view_agreement`` (M_A(G_BA(b)) against M_A(b)), ``consensus`` (each view against
the view average), ``confidence`` (mean ``|2p - 1|``), ``labelled_dice`` (the labelled target subset) and
``target_val_dice``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from segmentation.metrics import confusion_counts, dice
from transfer.config import SELECTION_RULES
from transfer.prediction import predict_views
from transfer.steps import from_translator, to_translator


def mean_dice(pred: Tensor, target: Tensor) -> float:
    """Mean over images and classes of the Dice of bool masks (1 where both are empty)."""
    return float(dice(*confusion_counts(pred, target)).mean())


MAX_IMAGES = 64
"""Images of each set a selector scores (the first ones; evaluation cost on CPU)."""


class Selector:
    """Scores a (translator, segmenter) pair by the chosen rule (see the module docstring).

    Args:
        rule: one of :data:`transfer.config.SELECTION_RULES`.
        normalize: segmenter input normalisation of ``[0, 1]`` images.
        source_val: (images, masks) of the source validation split, for ``source_cycle``.
        target_images: unlabelled target images (training/validation), for ``cycle_agreement`` and the view criteria.
        labelled: (images, masks) of the labelled target subset (logged as ``labelled_dice``; no rule reads it).
        target_val: (images, masks) of the full target validation split, for ``paper_target_val`` only.
        batch_size: images per forward pass.
        max_images: cap on the images of each set (evaluation cost on CPU).
        target_channels: the segmenter's output channels that the target masks label (when it has more classes
            than the target); None: all.
        source_masks: source training masks ``[N, K, H, W]`` for the ``shape_prior`` criterion (None: not computed).
        views: prediction views of ``consensus``, ``confidence`` and ``shape_prior`` (as ``predict_views``).

    Raises:
        ValueError: on an unknown rule, or when the data the rule needs is missing.
    """

    def __init__(self, rule: str, normalize: Callable[[Tensor], Tensor],
                 source_val: tuple[Tensor, Tensor] | None = None, target_images: Tensor | None = None,
                 labelled: tuple[Tensor, Tensor] | None = None, target_val: tuple[Tensor, Tensor] | None = None,
                 batch_size: int = 16, max_images: int = MAX_IMAGES, target_channels: list[int] | None = None,
                 source_masks: Tensor | None = None,
                 views: Sequence[str] = ("translated", "direct", "translated_flip", "direct_flip")) -> None:
        if rule not in SELECTION_RULES:
            raise ValueError(f"expected selection rule in {SELECTION_RULES}, got {rule!r}")
        if rule == "label_free" and (source_val is None or target_images is None):
            raise ValueError("expected source validation pairs and target images for selection 'label_free', got "
                             "None; pass both or choose another rule")
        if rule in ("shape_prior", "shape_cycle") and (source_masks is None or target_images is None):
            raise ValueError(f"expected source_masks and target images for selection {rule!r}, got None")
        if rule == "shape_cycle" and source_val is None:
            raise ValueError("expected source validation pairs for selection 'shape_cycle', got None; pass them or "
                             "choose 'shape_prior'")
        if rule == "paper_target_val" and target_val is None:
            raise ValueError("expected the data of selection rule 'paper_target_val' (the target validation pairs), "
                             "got None")
        self.rule = rule
        self.normalize = normalize
        self.batch_size = batch_size
        cap = slice(0, max_images)
        self.source_val = _cap(source_val, cap)
        self.target_images = target_images[cap] if target_images is not None else None
        self.labelled = _cap(labelled, cap)
        self.target_val = _cap(target_val, cap)
        self.target_channels = list(target_channels) if target_channels is not None else None
        self.shape_prior = ShapePrior.fit(source_masks) if source_masks is not None else None
        self.views = tuple(views)

    @torch.no_grad()
    def __call__(self, translator: nn.Module, segmenter: nn.Module) -> dict[str, float]:
        """Criteria (all computable ones) plus ``score`` for the rule; models are put in eval mode."""
        translator.eval()
        segmenter.eval()
        out: dict[str, float] = {}
        if self.source_val is not None:
            a, y = self.source_val
            out["source_dice"] = mean_dice(self._segment(segmenter, a, translator, "none") > 0, y > 0.5)
            out["source_cycle"] = mean_dice(self._segment(segmenter, a, translator, "cycle_a") > 0, y > 0.5)
        if self.target_images is not None:
            b = self.target_images
            probs = {view: self._view_probabilities(translator, segmenter, b, view)  # each view computed once
                     for view in dict.fromkeys(("translated", "direct") + self.views)}
            translated = probs["translated"] > 0.5
            cycled = self._segment(segmenter, b, translator, "cycle_b") > 0
            out["cycle_agreement"] = mean_dice(cycled, translated)
            out["view_agreement"] = mean_dice(translated, probs["direct"] > 0.5)
            out.update(self._view_criteria([probs[view] for view in self.views]))
        if self.labelled is not None:
            x, y = self.labelled
            out["labelled_dice"] = mean_dice(self._target(self._segment(segmenter, x, translator, "b2a")) > 0,
                                             y > 0.5)
        if self.target_val is not None:
            x, y = self.target_val
            out["target_val_dice"] = mean_dice(self._target(self._segment(segmenter, x, translator, "b2a")) > 0,
                                               y > 0.5)
        out["score"] = self._score(out)
        return out

    def _target(self, logits: Tensor) -> Tensor:
        return logits[:, self.target_channels] if self.target_channels is not None else logits

    def _score(self, c: dict[str, float]) -> float:
        rule = self.rule
        if rule == "label_free":
            return _label_free(c)
        if rule == "shape_prior":  # share of plausible shapes is coarse: label_free (when known) breaks its ties
            return c["shape_prior"] + 1e-3 * (_label_free(c) if "source_cycle" in c else 0.0)
        if rule == "shape_cycle":
            return 0.5 * (c["shape_prior"] + _label_free(c))
        if rule == "paper_target_val":
            return c["target_val_dice"]
        return math.inf  # "last": every evaluation ties and the latest one wins

    def _view_probabilities(self, translator: nn.Module, segmenter: nn.Module, b: Tensor, view: str) -> Tensor:
        device = next(segmenter.parameters()).device
        return torch.cat([predict_views(translator, segmenter, b[i:i + self.batch_size].to(device), self.normalize,
                                        (view,)).cpu() for i in range(0, len(b), self.batch_size)])

    def _view_criteria(self, per_view: list[Tensor]) -> dict[str, float]:
        mean = torch.stack(per_view).mean(0)
        masks = mean > 0.5
        out = {"consensus": float(np.mean([mean_dice(p > 0.5, masks) for p in per_view])),
               "confidence": float((2 * mean - 1).abs().mean())}
        if self.shape_prior is not None:
            out["shape_prior"] = self.shape_prior.score(masks)
        return out

    def _segment(self, segmenter: nn.Module, x: Tensor, translator: nn.Module, path: str) -> Tensor:
        device = next(segmenter.parameters()).device

        def run(batch: Tensor) -> Tensor:
            batch = batch.to(device)
            if path == "none":
                return segmenter(self.normalize(batch))
            t = to_translator(batch)
            if path == "b2a":
                t = translator.b_to_a(t)
            elif path == "cycle_a":
                t = translator.b_to_a(translator.a_to_b(t))
            elif path == "cycle_b":
                t = translator.b_to_a(translator.a_to_b(translator.b_to_a(t)))
            return segmenter(self.normalize(from_translator(t)))

        return torch.cat([run(x[i:i + self.batch_size]).float().cpu() for i in range(0, len(x), self.batch_size)])


class ShapePrior:
    """What segmentations look like on the source: per class, the usual number of connected components and the
    range of areas (a label-free plausibility check of target predictions; a CXR lung class has two components).

    Fitted on source masks: a component counts when its area is at least ``min_component`` of the class's median
    area; the counts seen on at least ``min_share`` of source images are allowed; the area range is the 1st-99th
    percentile widened by ``margin``.

    Args:
        counts: allowed component counts per class.
        area_range: ``(low, high)`` area fraction of the image per class.
        min_area: smallest counted component per class, as a fraction of the image.
    """

    def __init__(self, counts: list[set[int]], area_range: list[tuple[float, float]], min_area: list[float]) -> None:
        self.counts, self.area_range, self.min_area = counts, area_range, min_area

    @classmethod
    def fit(cls, masks: Tensor, min_component: float = 0.05, min_share: float = 0.05,
            margin: float = 0.25) -> "ShapePrior":
        """Fit on source masks ``[N, K, H, W]`` (bool or float in [0, 1]).

        Raises:
            ValueError: on masks that are not 4-D or hold no image.
        """
        if masks.ndim != 4 or len(masks) == 0:
            raise ValueError(f"expected source masks [N, K, H, W] with N >= 1, got shape {tuple(masks.shape)}")
        m = (masks > 0.5).cpu().numpy()
        pixels = m.shape[2] * m.shape[3]
        counts, area_range, min_area = [], [], []
        for k in range(m.shape[1]):
            areas = m[:, k].reshape(len(m), -1).sum(1) / pixels
            floor = min_component * float(np.median(areas[areas > 0])) if (areas > 0).any() else 0.0
            n = np.array([_components(mask, floor * pixels) for mask in m[:, k]])
            values, freq = np.unique(n, return_counts=True)
            counts.append({int(v) for v, f in zip(values, freq) if f >= min_share * len(n)})
            low, high = np.quantile(areas, [0.01, 0.99])
            area_range.append((float(low) * (1 - margin), float(high) * (1 + margin)))
            min_area.append(floor)
        return cls(counts, area_range, min_area)

    def plausible(self, masks: Tensor) -> np.ndarray:
        """Bool ``[N, K]``: is each predicted mask plausible (component count and area within the source's)?"""
        m = (masks > 0.5).cpu().numpy() if masks.dtype != torch.bool else masks.cpu().numpy()
        if m.ndim != 4 or m.shape[1] != len(self.counts):
            raise ValueError(f"expected masks [N, {len(self.counts)}, H, W], got shape {tuple(m.shape)}")
        pixels = m.shape[2] * m.shape[3]
        out = np.zeros(m.shape[:2], dtype=bool)
        for i in range(m.shape[0]):
            for k in range(m.shape[1]):
                area = m[i, k].sum() / pixels
                low, high = self.area_range[k]
                out[i, k] = (low <= area <= high
                             and _components(m[i, k], self.min_area[k] * pixels) in self.counts[k])
        return out

    def score(self, masks: Tensor) -> float:
        """Share of plausible (image, class) predictions."""
        return float(self.plausible(masks).mean())


def _label_free(c: dict[str, float]) -> float:
    """The ``label_free`` criterion: mean of source cycle Dice and target cycle agreement."""
    return 0.5 * (c["source_cycle"] + c["cycle_agreement"])


def _components(mask: np.ndarray, min_pixels: float) -> int:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= max(min_pixels, 1)).sum())


def _cap(pair: tuple[Tensor, Tensor] | None, cap: slice) -> tuple[Tensor, Tensor] | None:
    return (pair[0][cap], pair[1][cap]) if pair is not None else None
