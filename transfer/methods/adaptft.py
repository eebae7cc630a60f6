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

It needs labels (at 0% it would be ``selftrain`` itself, which the grid already runs). Both stages resume exactly
(their own checkpoints). The selftrain stage's prediction is reported beside the result as the view ``adapted``; the
validation Jaccard of both stages is logged (``val_stages``) and never used to choose anything.
"""

from __future__ import annotations

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


def run(ctx: CellContext) -> MethodOutput:
    """Self-train M_A with the labelled pairs in the loop, then fine-tune the selected student on them alone."""
    labelled = ctx.labelled
    if labelled is None:
        raise ValueError(f"expected labelled target images for {NAME}, got fraction 0; run selftrain there")
    exp = ctx.exp
    config = selftrain.selftrain_config(exp, method_options(exp, selftrain.NAME, selftrain.SelftrainOptions))
    orch, fit = selftrain.self_train(ctx, config, ctx.m_a, ctx.source, labelled, ctx.target.unlabelled_images(),
                                     ctx.run / "selftrain")
    adapted = selftrain.loop_predictor(orch, list(range(len(exp.classes))))
    ft_config = finetune.finetune_config(exp)
    report_line(f"{NAME}: fine-tuning the self-trained student {exp.finetune_iterations} steps on {len(labelled)} "
                "labelled target images")
    model = finetune.fine_tune_on_ranks(ctx, labelled, ft_config, ctx.run / "segment",
                                        start=orch.ema_segmenter.module)
    predict = segmenter_predictor(model, ft_config)
    val = ctx.target_val
    logs = {**selftrain.fit_logs(fit, config), "val_stages": {  # reported only: nothing is chosen by them
        "adapted": mean_jaccard(score(adapted, ctx.seg_config, val), val.classes),
        "fine_tuned": mean_jaccard(score(predict, ft_config, val), val.classes)}}
    return MethodOutput(predict=predict, config=ft_config, logs=logs, views={"adapted": adapted})


OPTIONS = tuple(dict.fromkeys((*selftrain.OPTIONS, *finetune.OPTIONS)))

METHOD = Method(NAME, run, "selftrain with the labelled images in its loop, then fine-tuned on them alone",
                needs_labels=True, options=OPTIONS)
