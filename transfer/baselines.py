"""Baselines of the label-fraction experiment, all built on ``segmentation.training`` (nothing copied).

* source-only: M_A (trained on the source) applied to target images as they are;
* histogram matching: each target image's grey levels mapped to the source intensity distribution
  (``segmentation.data.preprocessing.match_histograms``), then M_A; a free classical baseline;
* fine-tuning: M_A fine-tuned on the labelled target subset (at 0% it is source-only);
* from scratch: the same architecture trained on the labelled target subset only (undefined at 0%).

They must be the strongest honest ones (issue 5): M_A is trained with per-image z-score normalisation and light
geometric / gamma augmentation, which on JSRT -> Montgomery gives a source-only Jaccard near 90, far above the
4.30 of Oliveira & dos Santos (2018), whose figure came from a preprocessing mismatch.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from typing import Any

import torch
from torch import Tensor, nn

from segmentation.config import SegmentationConfig
from segmentation.data.dataset import CXRData
from segmentation.data.preprocessing import match_histograms
from segmentation.inference import build_segmenter
from segmentation.training import evaluate_segmenter, train_segmenter
from transfer.config import ExperimentConfig

STEPS_PER_EPOCH = 25
CHECKPOINT_STEPS = 250


def segmentation_config(exp: ExperimentConfig, iterations: int, lr: float, augment: bool = True,
                        seed_offset: int = 0, classes: tuple[str, ...] | None = None) -> SegmentationConfig:
    """The ``SegmentationConfig`` of a segmenter training inside an experiment cell.

    ``iterations`` optimizer steps are laid out as epochs of at most :data:`STEPS_PER_EPOCH` steps.

    Raises:
        ValueError: if ``iterations < 1``.
    """
    if iterations < 1:
        raise ValueError(f"expected iterations >= 1, got {iterations}")
    steps = min(STEPS_PER_EPOCH, iterations)
    return SegmentationConfig(model=exp.segmenter, model_kwargs=dict(exp.segmenter_kwargs),
                              classes=tuple(classes or exp.classes),
                              size=exp.size, loss=exp.transfer.loss, epochs=max(1, math.ceil(iterations / steps)),
                              steps_per_epoch=steps, batch_size=exp.transfer.batch_size, lr=lr, augment=augment,
                              normalization=exp.transfer.normalize_mode, seed=exp.seed + seed_offset,
                              device=exp.device, amp=exp.transfer.amp, progress=sys.stderr.isatty(), overlays=0,
                              dark_gate=exp.dark_gate,
                              # resume checkpoints every ~250 steps, not every 25-step epoch (a U-Net's file with
                              # its optimiser state is ~100 MB at full size, written with an fsync)
                              checkpoint_every=max(1, CHECKPOINT_STEPS // steps))


def select_classes(model: nn.Module, index: list[int]) -> nn.Module:
    """A copy of a segmenter whose 1x1 ``head`` keeps only the output channels ``index`` (same body weights).

    Used when M_A has more classes (e.g. lungs, heart, clavicles on JSRT) than the target is scored on (lungs on
    Montgomery): every method then works on the shared classes.

    Raises:
        ValueError: if the model has no ``head`` convolution or an index is out of range.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Conv2d) or not index or max(index) >= head.out_channels or min(index) < 0:
        raise ValueError(f"expected a segmenter with a 1x1 Conv2d `head` and channel indices in "
                         f"[0, {getattr(head, 'out_channels', 0)}), got head {head!r} and {index}")
    out = copy.deepcopy(model)
    new = nn.Conv2d(head.in_channels, len(index), head.kernel_size, bias=head.bias is not None).to(
        head.weight.device, head.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(head.weight[index])
        if head.bias is not None:
            new.bias.copy_(head.bias[index])
    out.head = new
    if hasattr(out, "out_channels"):
        out.out_channels = len(index)
    return out


def train_source_segmenter(train: CXRData, val: CXRData | None, config: SegmentationConfig,
                           run_dir: str | os.PathLike | None = None) -> nn.Module:
    """Train M_A on the labelled source data (best source-validation Dice kept); returns the model."""
    torch.manual_seed(config.seed)
    model = build_segmenter(config)
    train_segmenter(model, train, val, config, run_dir=run_dir, resume=run_dir is not None)
    return model


def source_only(model: nn.Module, target: CXRData, config: SegmentationConfig) -> list[dict[str, Any]]:
    """Per-image metrics of M_A applied to the target images unchanged."""
    return evaluate_segmenter(model, target, config)


def histogram_matched(images: Tensor, reference: Tensor) -> Tensor:
    """Each image's grey levels mapped onto the pooled intensity distribution of ``reference`` images.

    Shape:
        images ``[N, 1, H, W]`` and reference ``[M, 1, H', W']`` in ``[0, 1]`` -> ``[N, 1, H, W]``.
    """
    return match_histograms(images, reference)


def histogram_matching(model: nn.Module, target: CXRData, source_images: Tensor,
                       config: SegmentationConfig) -> list[dict[str, Any]]:
    """Per-image metrics of M_A on target images histogram-matched to the source."""
    matched = CXRData(images=histogram_matched(target.images, source_images), masks=target.masks, ids=target.ids,
                      classes=target.classes, spacing_mm=target.spacing_mm)
    return evaluate_segmenter(model, matched, config)


def fine_tune(source_model: nn.Module, labelled: CXRData | None, config: SegmentationConfig,
              run_dir: str | os.PathLike | None = None) -> nn.Module:
    """M_A fine-tuned on the labelled target subset; a copy of M_A when there is none (fraction 0).

    The last weights are kept: at fraction f the only target labels are the training subset, so there is no
    honest validation set to pick an epoch with.
    """
    model = copy.deepcopy(source_model)
    if labelled is None or len(labelled) == 0:
        return model
    init = {k: v.detach().clone() for k, v in source_model.state_dict().items()}
    train_segmenter(model, labelled, None, config, run_dir=run_dir, resume=run_dir is not None, init_state=init)
    return model


def from_scratch(labelled: CXRData | None, config: SegmentationConfig,
                 run_dir: str | os.PathLike | None = None) -> nn.Module:
    """The segmenter trained on the labelled target subset only (last weights kept).

    Raises:
        ValueError: when there is no labelled image (fraction 0).
    """
    if labelled is None or len(labelled) == 0:
        raise ValueError("expected at least one labelled target image for training from scratch, got none; "
                         "'scratch' is undefined at fraction 0")
    torch.manual_seed(config.seed)
    model = build_segmenter(config)
    train_segmenter(model, labelled, None, config, run_dir=run_dir, resume=run_dir is not None)
    return model
