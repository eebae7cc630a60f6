"""scratch: the same architecture trained on the labelled target subset only (undefined at 0% labels)."""

from __future__ import annotations

from transfer.baselines import from_scratch
from transfer.methods.base import CellContext, Method, MethodOutput, segmenter_predictor
from transfer.methods.finetune import OPTIONS, finetune_config


def run(ctx: CellContext) -> MethodOutput:
    """Train a new segmenter on the labelled target images (the source learning rate, the fine-tuning budget)."""
    config = finetune_config(ctx.exp)
    model = from_scratch(ctx.labelled, config.replace(lr=ctx.exp.source_lr), run_dir=ctx.run / "segment")
    return MethodOutput(predict=segmenter_predictor(model, config), config=config)


METHOD = Method("scratch", run, "trained on the labelled target images only", needs_labels=True, options=OPTIONS)
