"""Model selection for the transfer method, with and without target labels.

Plain translation "mostly removes failures, its gain in the mean is small and it drifts" (issue 5), so *when* to
stop matters as much as *how* to train. The rules (``TransferConfig.selection``), scored on the EMA models, higher
is better:

* ``source_cycle``: mean Dice of M_A(G_BA(G_AB(a))) against y_a on the **source validation** split. It needs no
  target label; it drops when the cycle loses what M_A needs (anatomy moved, contrast destroyed).
* ``cycle_agreement``: mean Dice between M_A(G_BA(b)) and M_A(G_BA(G_AB(G_BA(b)))) on unlabelled target images
  (training + validation images, never test). No label; it drops when the target translation is unstable.
* ``label_free`` (default, usable at 0%): the mean of the two above. Documented in docs/results/transfer.md.
* ``kid``: minus the KID between G_BA(b) and source images (``translation.metrics.kid``): distribution match only.
* ``labelled``: mean Dice of M_A(G_BA(b)) on the labelled target subset (f > 0 only; those are training images,
  the only target labels a fraction grants).
* ``paper_target_val``: mean Dice on the **full** target validation labels, the protocol of Oliveira & dos Santos
  (2018). It uses more target labels than a fraction grants and must be reported under this name.
* ``last``: the last weights.

Every criterion that can be computed is returned (and logged) whatever the rule; ``score`` is the rule's value.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from segmentation.metrics import confusion_counts, dice
from transfer.config import SELECTION_RULES
from transfer.steps import from_translator, to_translator


def mean_dice(pred: Tensor, target: Tensor) -> float:
    """Mean over images and classes of the Dice of bool masks (1 where both are empty)."""
    return float(dice(*confusion_counts(pred, target)).mean())


class Selector:
    """Scores a (translator, segmenter) pair by the chosen rule (see the module docstring).

    Args:
        rule: one of :data:`transfer.config.SELECTION_RULES`.
        normalize: segmenter input normalisation of ``[0, 1]`` images.
        source_val: (images, masks) of the source validation split, for ``source_cycle``.
        target_images: unlabelled target images (training/validation), for ``cycle_agreement`` and ``kid``.
        labelled: (images, masks) of the labelled target subset, for ``labelled``.
        target_val: (images, masks) of the full target validation split, for ``paper_target_val`` only.
        batch_size: images per forward pass.
        max_images: cap on the images of each set (evaluation cost on CPU).
        target_channels: the segmenter's output channels that the target masks label (when it has more classes
            than the target); None: all.

    Raises:
        ValueError: on an unknown rule, or when the data the rule needs is missing.
    """

    def __init__(self, rule: str, normalize: Callable[[Tensor], Tensor],
                 source_val: tuple[Tensor, Tensor] | None = None, target_images: Tensor | None = None,
                 labelled: tuple[Tensor, Tensor] | None = None, target_val: tuple[Tensor, Tensor] | None = None,
                 batch_size: int = 16, max_images: int = 64, target_channels: list[int] | None = None) -> None:
        if rule not in SELECTION_RULES:
            raise ValueError(f"expected selection rule in {SELECTION_RULES}, got {rule!r}")
        needs = {"source_cycle": source_val, "cycle_agreement": target_images, "kid": target_images,
                 "labelled": labelled, "paper_target_val": target_val}
        if rule == "label_free" and (source_val is None or target_images is None):
            raise ValueError("expected source validation pairs and target images for selection 'label_free', got "
                             "None; pass both or choose another rule")
        if rule == "kid" and source_val is None:
            raise ValueError("expected source validation images for selection 'kid', got None")
        if rule in needs and needs[rule] is None:
            hint = " (a fraction of 0 has no labelled subset: use 'label_free')" if rule == "labelled" else ""
            raise ValueError(f"expected the data of selection rule {rule!r}, got None{hint}")
        self.rule = rule
        self.normalize = normalize
        self.batch_size = batch_size
        cap = slice(0, max_images)
        self.source_val = _cap(source_val, cap)
        self.target_images = target_images[cap] if target_images is not None else None
        self.labelled = _cap(labelled, cap)
        self.target_val = _cap(target_val, cap)
        self.target_channels = list(target_channels) if target_channels is not None else None

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
            direct = self._segment(segmenter, b, translator, "b2a") > 0
            cycled = self._segment(segmenter, b, translator, "cycle_b") > 0
            out["cycle_agreement"] = mean_dice(cycled, direct)
            if self.rule == "kid" and self.source_val is not None:
                from translation.metrics import kid

                fake_a = self._translate_b2a(translator, b)
                out["kid"] = float(kid(fake_a, to_translator(self.source_val[0]), subset_size=min(50, len(b)),
                                       num_subsets=20)[0])
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
            return 0.5 * (c["source_cycle"] + c["cycle_agreement"])
        if rule == "source_cycle":
            return c["source_cycle"]
        if rule == "cycle_agreement":
            return c["cycle_agreement"]
        if rule == "kid":
            return -c["kid"]
        if rule == "labelled":
            return c["labelled_dice"]
        if rule == "paper_target_val":
            return c["target_val_dice"]
        return math.inf  # "last": every evaluation ties and the latest one wins

    def _translate_b2a(self, translator: nn.Module, x: Tensor) -> Tensor:
        device = next(translator.parameters()).device
        return torch.cat([translator.b_to_a(to_translator(x[i:i + self.batch_size].to(device))).float().cpu()
                          for i in range(0, len(x), self.batch_size)])

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


def _cap(pair: tuple[Tensor, Tensor] | None, cap: slice) -> tuple[Tensor, Tensor] | None:
    return (pair[0][cap], pair[1][cap]) if pair is not None else None
