"""source_only: M_A, trained on the source, applied to the target images as they are (no target label)."""

from __future__ import annotations

from transfer.methods.base import CellContext, Method, MethodOutput, segmenter_predictor


def run(ctx: CellContext) -> MethodOutput:
    """M_A's prediction; with a source of more classes, also every class of M_A for the overlays."""
    full = segmenter_predictor(ctx.m_a_full, ctx.full_config) if ctx.m_a_full is not ctx.m_a else None
    return MethodOutput(predict=segmenter_predictor(ctx.m_a, ctx.seg_config), config=ctx.seg_config,
                        predict_all_classes=full)


METHOD = Method("source_only", run, "M_A applied to the target images as they are", fraction_free=True)
