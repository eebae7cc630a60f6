"""augselftrain: ``selftrain`` started from the ``augsource`` segmenter instead of M_A.

At the cross-validated CPU protocol (docs/results/crossval.md) ``selftrain`` has the best mean Jaccard at 0% labels
but fails more images (Jaccard < 70) than ``augsource``: self-training amplifies what its first teacher gets right
and cannot repair an image the teacher is confidently wrong on. A source segmenter trained with strong appearance
randomisation is a more robust first teacher, so this method composes the two registered methods without changing
either:

1. the ``augsource`` segmenter: every source class, M_A's seed, budget, split and selection, with
   ``AugSourceOptions`` (``method_options["augsource"]``) on its training batches, in ``segment/`` of the cell;
2. the ``selftrain`` loop (identity translator, source pairs, labelled target pairs, confident pseudo-labels,
   label-free selection with the start scored) from those weights, with ``SelftrainOptions``
   (``method_options["selftrain"]``), in the cell folder.

The loop's source pairs are plain (no appearance randomisation): the target images themselves now teach the
appearance. Both stages resume exactly (their own checkpoints). The prediction is the selected EMA student over the
direct views, as ``selftrain``'s.
"""

from __future__ import annotations

from runtime.distributed import is_main_process
from segmentation.inference import save_segmenter
from transfer.methods import augsource, selftrain
from transfer.methods.base import CellContext, Method, MethodOutput, method_options
from transfer.prediction import predict_views
from transfer.shared import normalizer

NAME = "augselftrain"


def run(ctx: CellContext) -> MethodOutput:
    """Train the randomised source segmenter, then self-train it on the target training images."""
    exp = ctx.exp
    start, start_config = augsource.train_source(ctx, method_options(exp, augsource.NAME,
                                                                     augsource.AugSourceOptions).augmenter())
    config = selftrain.selftrain_config(exp, method_options(exp, selftrain.NAME, selftrain.SelftrainOptions))
    index = ctx.class_index
    channels = index if tuple(exp.model_classes) != tuple(exp.classes) else None
    orch, fit = selftrain.self_train(ctx, config, start, ctx.source_full, ctx.labelled,
                                     ctx.target.unlabelled_images(), ctx.run, target_channels=channels)
    if is_main_process():
        save_segmenter(orch.ema_segmenter.module, ctx.run / selftrain.ADAPTED_SEGMENTER, ctx.full_config,
                       {"adapted": True, "method": NAME, "target": exp.target, "input": "M_A(b)"})
    full = None
    if channels is not None:
        norm = normalizer(exp)
        full = lambda images: predict_views(orch.ema_translator.module, orch.ema_segmenter.module,  # noqa: E731
                                            images, norm, selftrain.DIRECT_VIEWS).cpu()
    logs = {**selftrain.fit_logs(fit, config),
            "augsource_iterations": start_config.epochs * start_config.steps_per_epoch}
    return MethodOutput(predict=selftrain.loop_predictor(orch, index), config=ctx.seg_config, logs=logs,
                        views={"direct": selftrain.loop_predictor(orch, index, ("direct",))},
                        predict_all_classes=full)


#: what both stages read: augsource's options and source budget, selftrain's options and loop fields
OPTIONS = tuple(dict.fromkeys((*augsource.METHOD.options, *selftrain.OPTIONS)))

METHOD = Method(NAME, run, "selftrain started from the augsource segmenter (appearance-randomised first teacher)",
                options=OPTIONS)
