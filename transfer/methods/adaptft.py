"""adaptft: adapt, then fine-tune: the ``selftrain`` student fine-tuned on the labelled target images.

At the cross-validated 128 px CPU protocol (docs/results/crossval.md) the two best methods with a few labels fail in
opposite ways: ``selftrain`` (the labelled pairs inside its loop, beside source pairs and pseudo-labels) fails fewer
images, while ``finetune`` (M_A trained on the labelled images alone) follows the target's annotation convention more
closely on the images it does not fail. This method composes the two registered methods, in the order the issue
calls adapt-then-fine-tune:

1. the ``selftrain`` loop at the cell's fraction (``SelftrainOptions``, ``method_options["selftrain"]``: identity
   translator, source pairs of the scored classes, the labelled target pairs, confident pseudo-labels, label-free
   selection with the start scored) from M_A, in ``selftrain/`` of the cell;
2. ``finetune`` of the selected EMA student on the labelled subset alone (``finetune_iterations``, ``finetune_lr``,
   last weights: no honest validation labels exist), in ``segment/``.

It predicts with the mean of the two stages' probabilities (``AdaptftOptions.predict = "average"``: the student over
its direct views, the fine-tuned model directly). That default was chosen on the folds' validation images only
(``benchmarks/adaptft_stages_validation.py``, docs/RESULTS.md: above both stages at 1.25, 5 and 20%, 0.07 below the
fine-tuned stage at 100%); ``"fine_tuned"`` is the method as first measured. Both stages resume exactly (their own
checkpoints) and are written as model files, ``segmenter.pt`` (fine-tuned) and ``adapted_segmenter.pt`` (the
student); ``segment predict --model segmenter.pt --model adapted_segmenter.pt`` averages them (without the student's
flip view). Each stage's prediction is reported beside the result as a view (``adapted``, ``fine_tuned``); the
validation Jaccard of the stages and their average is logged (``val_stages``) and chooses nothing in a cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from runtime.distributed import is_main_process
from segmentation.inference import save_segmenter
from transfer.methods import finetune, selftrain
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    mean_jaccard,
    method_options,
    score,
    segmenter_predictor,
)
from transfer.shared import report_line

NAME = "adaptft"
PREDICT = ("average", "fine_tuned", "adapted")
FINE_TUNED_SEGMENTER = "segmenter.pt"
ADAPTED_SEGMENTER = "adapted_segmenter.pt"


@dataclass(frozen=True)
class AdaptftOptions:
    """The options of ``adaptft`` (``ExperimentConfig.method_options["adaptft"]``; the stages read ``selftrain``'s
    and fine-tuning's own).

    Args:
        predict: ``"average"`` (the mean of both stages' probabilities), ``"fine_tuned"`` or ``"adapted"`` (one stage).

    Raises:
        ValueError: for another value.
    """

    predict: str = "average"

    def __post_init__(self) -> None:
        if self.predict not in PREDICT:
            raise ValueError(f"expected adaptft predict in {PREDICT}, got {self.predict!r}")


def run(ctx: CellContext) -> MethodOutput:
    """Self-train M_A with the labelled pairs in the loop, then fine-tune the selected student on them alone."""
    labelled = ctx.labelled
    if labelled is None:
        raise ValueError(f"expected labelled target images for {NAME}, got fraction 0; run selftrain there")
    exp = ctx.exp
    options = method_options(exp, NAME, AdaptftOptions)
    config = selftrain.selftrain_config(exp, method_options(exp, selftrain.NAME, selftrain.SelftrainOptions))
    orch, fit = selftrain.self_train(ctx, config, ctx.m_a, ctx.source, labelled, ctx.target.unlabelled_images(),
                                     ctx.run / "selftrain")
    adapted = selftrain.loop_predictor(orch, list(range(len(exp.classes))))
    ft_config = finetune.finetune_config(exp)
    report_line(f"{NAME}: fine-tuning the self-trained student {exp.finetune_iterations} steps on {len(labelled)} "
                "labelled target images")
    model = finetune.fine_tune_on_ranks(ctx, labelled, ft_config, ctx.run / "segment",
                                        start=orch.ema_segmenter.module)
    fine_tuned = segmenter_predictor(model, ft_config)

    def average(images: Tensor) -> Tensor:
        return (adapted(images).cpu() + fine_tuned(images).cpu()) / 2

    if is_main_process():
        facts = {"adapted": True, "method": NAME, "target": exp.target, "input": "M_A(b)"}
        save_segmenter(model, ctx.run / FINE_TUNED_SEGMENTER, ft_config, {**facts, "stage": "fine_tuned"})
        save_segmenter(orch.ema_segmenter.module, ctx.run / ADAPTED_SEGMENTER, ctx.seg_config,
                       {**facts, "stage": "adapted"})
    stages = {"adapted": adapted, "fine_tuned": fine_tuned, "average": average}
    val = ctx.target_val
    logs = {**selftrain.fit_logs(fit, config), "predict": options.predict, "val_stages": {  # chooses nothing here
        name: mean_jaccard(score(p, ft_config, val), val.classes) for name, p in stages.items()}}
    return MethodOutput(predict=stages[options.predict], config=ft_config, logs=logs,
                        views={n: p for n, p in stages.items() if n != options.predict})


OPTIONS = tuple(dict.fromkeys((f"method_options.{NAME}", *selftrain.OPTIONS, *finetune.OPTIONS)))

METHOD = Method(NAME, run, "selftrain with the labelled images in its loop, then fine-tuned on them alone; "
                "predicts with both", needs_labels=True, options=OPTIONS)
