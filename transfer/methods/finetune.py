"""finetune: M_A fine-tuned on the labelled target subset (at 0% labels it is M_A itself)."""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from segmentation.config import SegmentationConfig
from segmentation.data.dataset import CXRData
from transfer.baselines import segmentation_config
from transfer.config import ExperimentConfig
from transfer.methods.base import CellContext, Method, MethodOutput, segmenter_predictor
from transfer.shared import report_line, train_on_ranks

OPTIONS = ("finetune_iterations", "finetune_lr")


def finetune_config(exp: ExperimentConfig) -> SegmentationConfig:
    """The segmentation training of the labelled-target baselines (fine-tuning, from scratch)."""
    return segmentation_config(exp, max(1, exp.finetune_iterations), exp.finetune_lr, augment=True, seed_offset=1000)


def fine_tune_on_ranks(ctx: CellContext, labelled: CXRData, config: SegmentationConfig, run_dir: Path,
                       start: nn.Module | None = None) -> nn.Module:
    """A copy of ``start`` (default M_A) fine-tuned on ``labelled`` in ``run_dir`` as ``transfer.baselines.fine_tune``
    does it (last weights kept, resumable), across the ranks under torchrun (``transfer.shared.train_on_ranks``)."""
    start = ctx.m_a if start is None else start
    init = {k: v.detach().clone() for k, v in start.state_dict().items()}
    model = copy.deepcopy(start).requires_grad_(True)  # an EMA copy (adaptft's start) holds frozen parameters
    return train_on_ranks(model, labelled, None, config, run_dir, ctx.device, init_state=init)


def run(ctx: CellContext) -> MethodOutput:
    """Fine-tune a copy of M_A on the labelled subset (last weights: no honest validation labels exist)."""
    labelled = ctx.labelled
    if labelled is None:
        return MethodOutput(predict=segmenter_predictor(ctx.m_a, ctx.seg_config), config=ctx.seg_config)
    config = finetune_config(ctx.exp)
    report_line(f"finetune: {ctx.exp.finetune_iterations} steps on {len(labelled)} labelled target images")
    model = fine_tune_on_ranks(ctx, labelled, config, ctx.run / "segment")
    return MethodOutput(predict=segmenter_predictor(model, config), config=config)


METHOD = Method("finetune", run, "M_A fine-tuned on the labelled target images", options=OPTIONS)
