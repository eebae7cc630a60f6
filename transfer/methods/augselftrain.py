"""augselftrain: ``selftrain`` started from the ``augsource`` segmenter, its source images randomised as augsource's.

At the cross-validated CPU protocol (docs/results/crossval.md) ``selftrain`` has the best mean Jaccard at 0% labels
but fails more images (Jaccard < 70) than ``augsource``, and the two fail different images: ``augsource`` repairs
images that M_A and the self-trained student both get badly wrong. Self-training amplifies what its first teacher
gets right and cannot repair an image the teacher is confidently wrong on, so this method composes the two
registered methods:

1. the ``augsource`` segmenter: every source class, M_A's seed, budget, split and selection, with
   ``AugSourceOptions`` (``method_options["augsource"]``) on its training batches, in ``segment/`` of the cell;
2. the ``selftrain`` loop (identity translator, source pairs, labelled target pairs, confident pseudo-labels,
   label-free selection with the start scored) from those weights, with ``SelftrainOptions``
   (``method_options["selftrain"]``), in the cell folder; with ``loop_appearance`` (the default) the loop's source
   images keep the same appearance randomisation, so the student does not unlearn the robustness it started with.

Measured without ``loop_appearance`` (the loop on plain source images, 64 px CPU protocol, 5 folds): below
``selftrain`` at every fraction, and the images ``augsource`` had repaired failed again (docs/results/crossval.md).
Both stages resume exactly (their own checkpoints; the loop's appearance draws come from the global generator that
its checkpoints save). The prediction is the selected EMA student over the direct views, as ``selftrain``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from transfer.methods import augsource, selftrain
from transfer.methods.base import CellContext, Method, MethodOutput, method_options

NAME = "augselftrain"


@dataclass(frozen=True)
class AugSelftrainOptions:
    """Options of ``augselftrain`` (``method_options["augselftrain"]``); the stages read ``augsource``'s and
    ``selftrain``'s own options.

    Args:
        loop_appearance: apply ``augsource``'s appearance randomisation to the loop's source images too.
    """

    loop_appearance: bool = True


def run(ctx: CellContext) -> MethodOutput:
    """Train the randomised source segmenter, then self-train it on the target training images."""
    exp = ctx.exp
    options = method_options(exp, NAME, AugSelftrainOptions)
    appearance = method_options(exp, augsource.NAME, augsource.AugSourceOptions)
    start, start_config = augsource.train_source(ctx, appearance.augmenter())
    config = selftrain.selftrain_config(exp, method_options(exp, selftrain.NAME, selftrain.SelftrainOptions))
    channels = ctx.class_index if tuple(exp.model_classes) != tuple(exp.classes) else None
    orch, fit = selftrain.self_train(ctx, config, start, ctx.source_full, ctx.labelled,
                                     ctx.target.unlabelled_images(), ctx.run, target_channels=channels,
                                     source_appearance=appearance.augmenter() if options.loop_appearance else None)
    return selftrain.loop_output(ctx, orch, fit, config, NAME, channels,
                                 {"augsource_iterations": start_config.epochs * start_config.steps_per_epoch})


#: what both stages read: augsource's options and source budget, selftrain's options and loop fields
OPTIONS = tuple(dict.fromkeys((f"method_options.{NAME}", *augsource.METHOD.options, *selftrain.OPTIONS)))

METHOD = Method(NAME, run, "selftrain from the augsource segmenter, the loop's source images randomised the same way",
                options=OPTIONS)
