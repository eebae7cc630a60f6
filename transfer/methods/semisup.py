"""semisup: fine-tuning, then self-training on the unlabelled target images, kept only where a held-out check agrees.

At a labelled fraction the method uses both target parts: M_A is fine-tuned on the labelled subset (exactly the
``finetune`` method), then the ``selftrain`` loop (:mod:`transfer.methods.selftrain`: no translator, source pairs,
labelled pairs, confident pseudo-labels of a teacher under one augmentation warp, label-free selection with the
starting point scored) continues from the fine-tuned weights, with pseudo-labels from the start (the fine-tuned model
is the first teacher) on the target training images that have no label.

"Not worse than fine-tuning" is made to hold where the labels allow it, by a held-out check on the labelled subset
only (never a validation mask, never the test split):

1. the labelled subset L is split (seeded by the cell's seed) into a fitting part and a held-out part of
   ``holdout * |L|`` images (at least 1, leaving at least 1 to fit);
2. both candidates are trained on the fitting part alone, fine-tuning and fine-tuning + self-training (whose
   pseudo-label pool excludes every labelled image, so neither candidate has seen the held-out pixels);
3. their mean Jaccard on the held-out images decides: self-training is kept only when it scores higher by more than
   ``min_gain`` (default half a Jaccard point; a smaller difference on a handful of images is noise, and a tie keeps
   fine-tuning);
4. the winner is trained again on all of L; a fine-tuning winner is the ``finetune`` method's model (same call, same
   settings and seed), so the method then returns exactly fine-tuning.

With one labelled image nothing can be held out, and with no unlabelled training image (fraction 1) there is nothing to
self-train on: both return fine-tuning (``logs["choice_reason"]`` says which). The check guards against a loss it
can see on a handful of images: it is noisy at small fractions and can still keep self-training where it is slightly
worse on the test split. ``choose="semisup"`` skips it (always fine-tuning + self-training). At fraction 0 there is no
label to fine-tune on or to check with: the method is ``selftrain`` (its options, its prediction).

Classes: fine-tuning works on the scored classes (``ctx.m_a``, as ``finetune``), so the self-training after it uses
the source masks of the scored classes (``ctx.source``) as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from segmentation.data.dataset import CXRData
from transfer.baselines import fine_tune
from transfer.config import TransferConfig
from transfer.methods import finetune, selftrain
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    Predictor,
    mean_jaccard,
    method_options,
    score,
    segmenter_predictor,
)

NAME = "semisup"
CHOICES = ("holdout", "semisup")


@dataclass(frozen=True)
class SemisupOptions:
    """The options of ``semisup`` (``ExperimentConfig.method_options["semisup"]``); the self-training settings not
    named here are ``selftrain``'s (:class:`transfer.methods.selftrain.SelftrainOptions`, then ``exp.transfer``).

    Args:
        iterations: self-training iterations after fine-tuning (None: ``selftrain``'s, the transfer loop's budget).
        pseudo_start: share of those iterations before pseudo-labels join (0: from the fine-tuned teacher on).
        weight_source: weight of the source pairs in the self-training (they keep M_A sound on the source and feed
            the selection's source Dice; the labelled target pairs keep weight ``selftrain.weight_labelled``).
        holdout: share of the labelled images held out to choose between the candidates.
        min_gain: the held-out Jaccard gain self-training must exceed to be kept: half a Jaccard point by default,
            a floor under the noise of a few held-out images, not a guarantee (on phantoms a held-out win of 0.010
            on 2 images still came with a 1.8-point loss on the test images).
        choose: ``"holdout"`` (the check above) or ``"semisup"`` (always fine-tuning + self-training).

    Raises:
        ValueError: for a bad value.
    """

    iterations: int | None = None
    pseudo_start: float = 0.0
    weight_source: float = 1.0
    holdout: float = 0.3
    min_gain: float = 0.005
    choose: str = "holdout"

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 0:
            raise ValueError(f"expected iterations >= 0 or None, got {self.iterations}")
        if not 0 <= self.pseudo_start <= 1:
            raise ValueError(f"expected 0 <= pseudo_start <= 1, got {self.pseudo_start}")
        if self.weight_source < 0:
            raise ValueError(f"expected weight_source >= 0, got {self.weight_source}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"expected 0 < holdout < 1, got {self.holdout}")
        if self.min_gain < 0:
            raise ValueError(f"expected min_gain >= 0, got {self.min_gain}")
        if self.choose not in CHOICES:
            raise ValueError(f"expected choose in {CHOICES}, got {self.choose!r}")


def semisup_config(ctx: CellContext, options: SemisupOptions) -> TransferConfig:
    """``selftrain``'s loop with this method's iterations, pseudo-label start and source weight."""
    base = selftrain.selftrain_config(ctx.exp, method_options(ctx.exp, selftrain.NAME, selftrain.SelftrainOptions))
    return base.replace(iterations=base.iterations if options.iterations is None else options.iterations,
                        pseudo_start=options.pseudo_start, weight_source=options.weight_source)


def split_holdout(labelled: CXRData, share: float, seed: int) -> tuple[CXRData, CXRData]:
    """A seeded (fitting, held-out) split of the labelled subset; the held-out part has ``round(share * n)``
    images, at least 1 and at most ``n - 1``.

    Raises:
        ValueError: with fewer than 2 labelled images.
    """
    n = len(labelled)
    if n < 2:
        raise ValueError(f"expected at least 2 labelled images to hold one out, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_hold = min(n - 1, max(1, round(share * n)))
    return labelled.subset(sorted(order[n_hold:])), labelled.subset(sorted(order[:n_hold]))


def unlabelled_pool(ctx: CellContext) -> Tensor:
    """The target training images outside the labelled subset (possibly none)."""
    labelled = set(ctx.target.labelled_ids)
    keep = torch.tensor([i not in labelled for i in ctx.target.ids], dtype=torch.bool)
    return ctx.target.unlabelled_images()[keep]


def semi_supervised(ctx: CellContext, config: TransferConfig, start: nn.Module, labelled: CXRData, pool: Tensor,
                    folder: str) -> tuple[Predictor, dict[str, Any]]:
    """Self-train the fine-tuned ``start`` in ``ctx.run / folder``; its predictor and loop logs."""
    orch, fit = selftrain.self_train(ctx, config, start, ctx.source, labelled, pool, ctx.run / folder)
    return selftrain.loop_predictor(orch, list(range(len(ctx.exp.classes)))), selftrain.fit_logs(fit, config)


def run(ctx: CellContext) -> MethodOutput:
    """Fine-tuning, then self-training kept where the held-out labelled images agree (``selftrain`` at 0%)."""
    labelled = ctx.labelled
    if labelled is None:
        output = selftrain.run(ctx)
        output.logs["choice"], output.logs["choice_reason"] = "selftrain", "fraction 0: no label"
        return output
    options = method_options(ctx.exp, NAME, SemisupOptions)
    config, ft_config = semisup_config(ctx, options), finetune.finetune_config(ctx.exp)
    pool = unlabelled_pool(ctx)
    logs: dict[str, Any] = {"choice": "semisup", "choice_reason": "choose='semisup'"}
    if len(pool) == 0:
        logs.update(choice="finetune", choice_reason="every training image is labelled: nothing to self-train on")
    elif options.choose == "holdout" and len(labelled) < 2:
        logs.update(choice="finetune", choice_reason="one labelled image: nothing to hold out")
    elif options.choose == "holdout":
        fit, held = split_holdout(labelled, options.holdout, ctx.exp.seed)
        ft_fit = fine_tune(ctx.m_a, fit, ft_config, run_dir=ctx.run / "holdout" / "segment")
        ss_fit, _ = semi_supervised(ctx, config, ft_fit, fit, pool, "holdout/semisup")
        tuned_fit = segmenter_predictor(ft_fit, ft_config)
        scores = {"finetune": mean_jaccard(score(tuned_fit, ft_config, held), held.classes),
                  "semisup": mean_jaccard(score(ss_fit, ctx.seg_config, held), held.classes)}
        won = scores["semisup"] > scores["finetune"] + options.min_gain
        logs.update(choice="semisup" if won else "finetune", holdout_jaccard=scores, holdout_ids=list(held.ids),
                    choice_reason=f"held-out Jaccard on {len(held)} labelled image(s), fitted on {len(fit)}")
    model = fine_tune(ctx.m_a, labelled, ft_config, run_dir=ctx.run / "segment")  # the finetune method's model
    tuned = segmenter_predictor(model, ft_config)
    if logs["choice"] == "finetune":
        return MethodOutput(predict=tuned, config=ft_config, logs=logs)
    predict, loop_logs = semi_supervised(ctx, config, model, labelled, pool, "semisup")
    return MethodOutput(predict=predict, config=ctx.seg_config, logs={**logs, **loop_logs},
                        views={"finetune": tuned})


OPTIONS = (f"method_options.{NAME}", *selftrain.OPTIONS, *finetune.OPTIONS)

METHOD = Method(NAME, run, "M_A fine-tuned on the labelled target images, then self-trained on the unlabelled ones "
                "where a held-out labelled check agrees (selftrain at 0%)", options=OPTIONS)
