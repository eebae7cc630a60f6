"""selftrain: the transfer default's teacher-student self-training of M_A, without translation (the 0% control).

At CPU scale the transfer default's gain at 0% labels is matched by M_A trained as long inside the loop without the
translation terms (docs/RESULTS.md); this method is that control as a first-class, fairly budgeted method. It is
the transfer loop with the translator replaced by the identity: :class:`transfer.orchestrator.TransferOrchestrator`
runs with the translator fixed (``train_translator=False``: no warm-up, no discriminative or generative step) and no
translation term, so its supervised step trains the student M_A on

* the source pairs (a, y_a), augmented (``TransferConfig.augment``);
* the labelled target pairs (b, y_b) when the fraction is above 0, augmented;
* confident pseudo-labels of unlabelled target training images: the teacher's mean probability over the direct views
  M_A(b) and its horizontal flip (the direct half of the transfer default's ``pseudo_views``), a pixel counting where
  it is above ``pseudo_threshold`` or below ``1 - pseudo_threshold``; image, pseudo-label and weight share one warp.

The teacher is the EMA of the student (``"ema"``) or the best-scoring EMA weights so far (``"selected"``, the transfer
default). Scores and the final pick come from :class:`transfer.selection.Selector` on unlabelled target images (the
training images and the validation *images*, never a validation mask) and the source validation pairs, with a rule
that needs no translator (:data:`RULES`): under the identity ``source_cycle`` is M_A's Dice on the source validation
pairs and ``cycle_agreement`` is 1, so the default ``shape_cycle`` becomes ``0.5 * shape_prior + 0.25 * source Dice +
0.25``: plausible target shapes, with M_A kept sound on the source. The prediction is the selected EMA M_A averaged
over the direct views. Reusing the orchestrator, rather than a copy of its loop, keeps the two methods' EMA, teacher,
augmentation, selection and exact resume (``checkpoints/`` in the cell folder) identical by construction.

Every loop setting is the transfer loop's (``exp.transfer``: iterations, batch size, segmenter learning rate, EMA,
threshold, pseudo weight and start, teacher, augmentation, selection...), so the control gets the transfer loop's
budget; :class:`SelftrainOptions` overrides any of them (``ExperimentConfig.method_options["selftrain"]``). Classes
are handled as in ``transfer``: the student is ``ctx.m_a_full`` with every source class, trained on the source masks
of every class, while target labels, selection and the prediction use the scored channels.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from runtime.device import use_channels_last
from runtime.distributed import is_main_process
from runtime.store import head_rows
from segmentation.data.dataset import CXRData
from segmentation.inference import save_segmenter
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    Predictor,
    method_options,
)
from transfer.orchestrator import TransferOrchestrator, TransferResult
from transfer.prediction import predict_views
from transfer.selection import MAX_IMAGES, Selector
from transfer.shared import normalizer, report_line

NAME = "selftrain"
ADAPTED_SEGMENTER = "segmenter.pt"
#: the prediction and pseudo-label views without a translator (M_A(b) and its flip)
DIRECT_VIEWS = ("direct", "direct_flip")
#: selection rules that need no translator and no target label (``paper_target_val`` reads the validation masks)
RULES = ("shape_cycle", "shape_prior", "label_free", "last")
#: the ``exp.transfer`` fields the loop inherits (the transfer loop's budget and self-training settings)
LOOP_FIELDS = ("iterations", "steps_per_epoch", "batch_size", "lr_segmenter", "betas", "weight_source", "weight_pseudo",
               "pseudo_threshold", "pseudo_start", "ema_decay", "selection", "grad_clip", "select_start", "augment",
               "pseudo_teacher", "log_every")


@dataclass(frozen=True)
class SelftrainOptions:
    """The options of ``selftrain`` (``ExperimentConfig.method_options["selftrain"]``); None takes ``exp.transfer``'s.

    Args:
        iterations: student updates (the transfer loop's ``iterations``, the fair budget).
        pseudo_threshold: a pixel's pseudo-label counts where the teacher's probability is above it or below 1 - it.
        weight_pseudo: weight of the pseudo-label term (0: M_A trained as long on the source and labelled pairs).
        pseudo_start: share of ``iterations`` after which pseudo-labels join.
        pseudo_teacher: ``"selected"`` (best-scoring weights so far) or ``"ema"``.
        selection: a label-free rule of :data:`RULES`.
        weight_source: weight of the source pairs.
        lr: the student's Adam learning rate (``lr_segmenter``).
        ema_decay: decay of the EMA of the student.
        weight_labelled: weight of the labelled target pairs (fraction > 0); not a transfer-loop field (there the
            labelled pairs enter translated), 1 like the transfer default's ``weight_target``.

    Raises:
        ValueError: for a bad value (a negative count or weight, an unknown teacher or rule).
    """

    iterations: int | None = None
    pseudo_threshold: float | None = None
    weight_pseudo: float | None = None
    pseudo_start: float | None = None
    pseudo_teacher: str | None = None
    selection: str | None = None
    weight_source: float | None = None
    lr: float | None = None
    ema_decay: float | None = None
    weight_labelled: float = 1.0

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 0:
            raise ValueError(f"expected iterations >= 0 or None, got {self.iterations}")
        if self.weight_labelled < 0:
            raise ValueError(f"expected weight_labelled >= 0, got {self.weight_labelled}")
        if self.selection is not None and self.selection not in RULES:
            raise ValueError(f"expected selection in {RULES} (rules that need no translator), got {self.selection!r}")


class IdentityTranslator(nn.Module):
    """The translator interface as the identity: G_AB(x) = G_BA(x) = x, nothing to train.

    The orchestrator builds an Adam optimizer over each parameter group, and Adam refuses an empty list, so both
    groups hold one placeholder parameter that no loss reaches. The translator losses are refused: the loop runs with
    ``train_translator=False`` (no warm-up, discriminative or generative step).
    """

    name = "identity"

    def __init__(self) -> None:
        super().__init__()
        self.placeholder = nn.Parameter(torch.zeros(1))

    def a_to_b(self, x: Tensor) -> Tensor:
        return x

    def b_to_a(self, x: Tensor) -> Tensor:
        return x

    def generator_parameters(self) -> list[nn.Parameter]:
        return [self.placeholder]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [self.placeholder]

    def generator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        raise ValueError("expected no generative step with the identity translator, got one; run the "
                         "orchestrator with train_translator=False")

    def discriminator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None
                             ) -> dict[str, Tensor]:
        raise ValueError("expected no discriminative step with the identity translator, got one; run the "
                         "orchestrator with train_translator=False")


def selftrain_config(exp: ExperimentConfig, options: SelftrainOptions) -> TransferConfig:
    """The transfer loop's settings (:data:`LOOP_FIELDS`) with ``options`` on top and every translation term off.

    Raises:
        ValueError: when the inherited selection rule needs a translator or target labels (set ``selection``).
    """
    loop = {name: getattr(exp.transfer, name) for name in LOOP_FIELDS}
    renamed = {"lr": "lr_segmenter"}
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name != "weight_labelled" and value is not None:
            loop[renamed.get(f.name, f.name)] = value
    if loop["selection"] not in RULES:
        raise ValueError(f"expected a selection rule in {RULES} for {NAME} (the transfer loop's "
                         f"{loop['selection']!r} needs a translator or target labels), got {loop['selection']!r}; "
                         f"set method_options.{NAME}.selection")
    return TransferConfig(**loop, warmup_iterations=0, weight_cycle=0.0, weight_target=options.weight_labelled,
                          predict_views=DIRECT_VIEWS, pseudo_views=DIRECT_VIEWS, loss=exp.transfer.loss,
                          normalize_mode=exp.transfer.normalize_mode, amp=exp.transfer.amp, seed=exp.seed)


def self_train(ctx: CellContext, config: TransferConfig, start: nn.Module, source: CXRData,
               labelled: CXRData | None, pool: Tensor, run_dir: Path,
               target_channels: list[int] | None = None, source_appearance: nn.Module | None = None
               ) -> tuple[TransferOrchestrator, TransferResult]:
    """Run the identity-translator loop from ``start`` in ``run_dir`` (resuming an interrupted run).

    Args:
        ctx: the cell (device, source split, target validation images).
        config: from :func:`selftrain_config`.
        start: the student's initial weights (copied).
        source: source data with the student's classes (its ``ctx.source_split`` train part trains, val scores).
        labelled: labelled target pairs (scored classes), or None.
        pool: target images for pseudo-labels (with the validation images, also the selection's target images).
        run_dir: ``checkpoints/`` and ``tb/`` go here.
        target_channels: the student's channels of the scored classes when it has more; None: all.
        source_appearance: a transform of the source images of every supervised step (``augselftrain``); None.

    Returns:
        The orchestrator (holding the selected EMA student) and its :class:`TransferResult`.
    """
    norm = normalizer(ctx.exp)
    train, val = source.subset(ctx.source_split["train"]), source.subset(ctx.source_split["val"])
    pairs = (labelled.images, labelled.masks) if labelled is not None else None
    selector = Selector(config.selection, norm, source_val=(val.images, val.masks),
                        target_images=head_rows([pool, ctx.target_val.images], MAX_IMAGES), labelled=pairs,
                        target_channels=target_channels, source_masks=train.masks, views=config.predict_views)
    overlay = pairs if pairs is not None else (ctx.target_val.images, None)  # ground truth only where labels exist
    orch = TransferOrchestrator(IdentityTranslator().to(ctx.device), copy.deepcopy(start).to(ctx.device), config,
                                normalize=norm, run_dir=run_dir, target_channels=target_channels, overlay=overlay,
                                show_progress=sys.stderr.isatty(), report=report_line, train_translator=False,
                                source_appearance=source_appearance, dark_gate=ctx.exp.dark_gate,
                                channels_last=use_channels_last(ctx.device, ctx.exp.channels_last),
                                compile=ctx.exp.compile)
    fit = orch.fit(train.images, train.masks, pool, pairs, selector, resume=True)
    return orch, fit


def loop_predictor(orch: TransferOrchestrator, channels: list[int], views: tuple[str, ...] | None = None) -> Predictor:
    """Probabilities on ``channels`` of the selected EMA student averaged over ``views`` (default: its own)."""
    return lambda images: torch.sigmoid(orch.predict(images, views=views))[:, channels]


def fit_logs(fit: TransferResult, config: TransferConfig) -> dict[str, Any]:
    """The loop's facts for the cell's result."""
    return {"best_iteration": fit.best_iteration, "best_score": fit.best_score, "selection": config.selection,
            "iterations": fit.iterations, "history": fit.history, "train_seconds": fit.seconds}


def loop_output(ctx: CellContext, orch: TransferOrchestrator, fit: TransferResult, config: TransferConfig,
                method: str, channels: list[int] | None, logs: dict[str, Any] | None = None) -> MethodOutput:
    """Write the selected student (``segmenter.pt``, rank 0) and return the cell's output: its prediction over the
    direct views, the direct view alone, and every class when the student has more (``channels``)."""
    index = ctx.class_index
    if is_main_process():
        save_segmenter(orch.ema_segmenter.module, ctx.run / ADAPTED_SEGMENTER, ctx.full_config,
                       {"adapted": True, "method": method, "target": ctx.exp.target, "input": "M_A(b)"})
    full = None
    if channels is not None:
        norm = normalizer(ctx.exp)
        full = lambda images: predict_views(orch.ema_translator.module, orch.ema_segmenter.module,  # noqa: E731
                                            images, norm, DIRECT_VIEWS).cpu()
    return MethodOutput(predict=loop_predictor(orch, index), config=ctx.seg_config,
                        logs={**fit_logs(fit, config), **(logs or {})},
                        views={"direct": loop_predictor(orch, index, ("direct",))}, predict_all_classes=full)


def run(ctx: CellContext) -> MethodOutput:
    """Self-train ``ctx.m_a_full`` on source pairs, labelled target pairs and pseudo-labelled target images."""
    exp = ctx.exp
    config = selftrain_config(exp, method_options(exp, NAME, SelftrainOptions))
    channels = ctx.class_index if tuple(exp.model_classes) != tuple(exp.classes) else None
    orch, fit = self_train(ctx, config, ctx.m_a_full, ctx.source_full, ctx.labelled, ctx.target.unlabelled_images(),
                           ctx.run, target_channels=channels)
    return loop_output(ctx, orch, fit, config, NAME, channels)


#: the ExperimentConfig fields read beyond the shared ones (``transfer.cell.SHARED_FIELDS``: loss, normalisation, amp
#: and batch size); the logging interval changes no result
OPTIONS = (f"method_options.{NAME}",
           *(f"transfer.{name}" for name in LOOP_FIELDS if name not in ("log_every", "batch_size")))

METHOD = Method(NAME, run, "M_A self-trained on confident target pseudo-labels, the transfer loop without translation",
                options=OPTIONS)
