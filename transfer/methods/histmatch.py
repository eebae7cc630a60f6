"""histmatch: target images histogram-matched to the source training images, then M_A (a free classical baseline)."""

from __future__ import annotations

from transfer.baselines import histogram_matched
from transfer.methods.base import CellContext, Method, MethodOutput, segmenter_predictor


def run(ctx: CellContext) -> MethodOutput:
    """M_A on each target image with its grey levels mapped onto the source training distribution."""
    reference = ctx.source.subset(ctx.source_split["train"]).images
    predict = segmenter_predictor(ctx.m_a, ctx.seg_config, transform=lambda x: histogram_matched(x, reference))
    return MethodOutput(predict=predict, config=ctx.seg_config)


METHOD = Method("histmatch", run, "target grey levels matched to the source histogram, then M_A", fraction_free=True)
