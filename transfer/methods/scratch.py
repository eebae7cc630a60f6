"""scratch: the same architecture trained on the labelled target subset only (undefined at 0% labels)."""

from __future__ import annotations

import torch

from segmentation.inference import build_segmenter
from transfer.methods.base import CellContext, Method, MethodOutput, segmenter_predictor
from transfer.methods.finetune import OPTIONS, finetune_config
from transfer.shared import train_on_ranks


def run(ctx: CellContext) -> MethodOutput:
    """Train a new segmenter on the labelled target images (the source learning rate, the fine-tuning budget), as
    ``transfer.baselines.from_scratch`` does it, across the ranks under torchrun (``transfer.shared.train_on_ranks``).

    Raises:
        ValueError: when there is no labelled image (fraction 0).
    """
    config = finetune_config(ctx.exp)
    labelled = ctx.labelled
    if labelled is None or len(labelled) == 0:
        raise ValueError("expected at least one labelled target image for training from scratch, got none; "
                         "'scratch' is undefined at fraction 0")
    train_config = config.replace(lr=ctx.exp.source_lr)
    torch.manual_seed(train_config.seed)
    model = train_on_ranks(build_segmenter(train_config), labelled, None, train_config, ctx.run / "segment", ctx.device)
    return MethodOutput(predict=segmenter_predictor(model, config), config=config)


METHOD = Method("scratch", run, "trained on the labelled target images only", needs_labels=True, options=OPTIONS)
