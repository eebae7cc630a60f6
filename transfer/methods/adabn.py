"""adabn: M_A with its BatchNorm statistics re-estimated on the target images (no target label, no training).

Adaptive batch normalisation (Li, Wang, Shi, Liu, Hou, "Revisiting batch normalization for practical domain
adaptation", ICLR workshop 2017 / Pattern Recognition 2018): the weights learnt on the source stay, and every
BatchNorm layer normalises with the mean and variance its input has on the target domain instead of the source's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from segmentation.config import SegmentationConfig
from segmentation.data.preprocessing import normalize, resize_images
from transfer.baselines import select_classes
from transfer.config import ExperimentConfig
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    method_options,
    segmenter_predictor,
)

NAME = "adabn"
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class AdaBNOptions:
    """Options of ``adabn`` (``ExperimentConfig.method_options["adabn"]``).

    Args:
        batch_size: target images per forward pass of the re-estimation; each layer's statistics are the average
            of the per-batch ones (``momentum=None``), so larger batches are closer to the statistics of the whole
            target set.

    Raises:
        ValueError: for ``batch_size < 1``.
    """

    batch_size: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {self.batch_size!r}")


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` with running statistics (what AdaBN re-estimates)."""
    return [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


@torch.no_grad()
def adapt_batch_norm(model: nn.Module, images: Tensor, config: SegmentationConfig, batch_size: int = 16) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``images`` (AdaBN).

    The running statistics are reset and, with ``momentum=None``, become the cumulative average of the batch
    statistics of forward passes over ``images`` (resized and normalised as ``config`` says, no gradient) with
    only the BatchNorm layers in training mode, so dropout stays off. The copy is returned in eval mode with the
    layers' momentum restored; every weight is M_A's.

    Args:
        model: the segmenter.
        images: ``[N, 1, H, W]`` in ``[0, 1]``, any device (moved batch by batch to the model's).
        config: gives ``size``, ``normalization`` and ``norm_stats``.
        batch_size: images per forward pass.

    Returns:
        The adapted copy.

    Raises:
        ValueError: when the model has no BatchNorm layer, or ``images`` is empty.
    """
    if len(images) == 0:
        raise ValueError("expected at least one target image to re-estimate BatchNorm statistics, got 0")
    adapted = copy.deepcopy(model).eval()
    layers = batch_norm_layers(adapted)
    if not layers:
        raise ValueError(f"expected a segmenter with BatchNorm layers, got {type(model).__name__} without any")
    momenta = [layer.momentum for layer in layers]
    device = next(adapted.parameters()).device
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    for start in range(0, len(images), batch_size):
        x = resize_images(images[start:start + batch_size].to(device, torch.float32), config.size)
        adapted(normalize(x, config.normalization, stats=config.norm_stats))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return adapted.eval()


def _check_batch_norm(model: nn.Module, exp: ExperimentConfig) -> None:
    if not batch_norm_layers(model):
        raise ValueError(f"expected a segmenter with BatchNorm layers for adabn, got {exp.segmenter!r} (segmenter_kwargs "
                         f"{dict(exp.segmenter_kwargs)}) with none; set norm='batch' in segmenter_kwargs, or use "
                         "method 'histmatch' or 'augsource' instead")


def run(ctx: CellContext) -> MethodOutput:
    """M_A (every source class) adapted on all target training images, then its head cut to the scored classes.

    Raises:
        ValueError: when M_A has no BatchNorm layer (names the segmenter and what to use instead).
    """
    options = method_options(ctx.exp, NAME, AdaBNOptions)
    _check_batch_norm(ctx.m_a_full, ctx.exp)
    images = ctx.target.unlabelled_images()
    full = adapt_batch_norm(ctx.m_a_full, images, ctx.full_config, options.batch_size)
    scored = full if ctx.m_a_full is ctx.m_a else select_classes(full, ctx.class_index)
    logs = {"adabn_images": len(images), "adabn_layers": len(batch_norm_layers(full))}
    return MethodOutput(predict=segmenter_predictor(scored, ctx.seg_config), config=ctx.seg_config, logs=logs,
                        predict_all_classes=segmenter_predictor(full, ctx.full_config) if full is not scored else None)


METHOD = Method(NAME, run, "M_A with its BatchNorm statistics re-estimated on the target training images",
                fraction_free=True, options=(f"method_options.{NAME}",))
