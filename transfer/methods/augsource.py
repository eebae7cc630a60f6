"""augsource: a source segmenter trained with strong appearance randomisation, applied to the target as it is.

Domain generalisation instead of adaptation: the segmenter never sees a target image, but during training every
source image may take a random bias field, gamma, contrast, blur, resolution and noise
(:class:`segmentation.data.augmentation.AppearanceAugmenter`), the "deep stacked transformations" of Zhang et al.,
"Generalizing deep learning for medical image segmentation to unseen domains via deep stacked transformation",
IEEE TMI 2020. Everything else is M_A's recipe: the same architecture, initial weights, budget (``source_iterations``
at ``source_lr``), batch size, geometric augmentation and best source-validation Dice selection.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from runtime.distributed import data_parallel, sync_from_main
from segmentation.config import SegmentationConfig
from segmentation.data.augmentation import AppearanceAugmenter
from segmentation.data.dataset import CXRData
from segmentation.data.preprocessing import dataset_stats, normalize, resize_images
from segmentation.inference import build_segmenter
from segmentation.training import TrainResult, train_segmenter
from transfer.baselines import segmentation_config, select_classes
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    method_options,
    segmenter_predictor,
)

NAME = "augsource"


@dataclass(frozen=True)
class AugSourceOptions:
    """Options of ``augsource`` (``ExperimentConfig.method_options["augsource"]``): the ranges of
    :class:`~segmentation.data.augmentation.AppearanceAugmenter`, whose arguments they are.

    Raises:
        ValueError: for a bad range or amount (from the augmenter).
    """

    gamma: tuple[float, float] = (0.5, 2.0)
    contrast: tuple[float, float] = (0.6, 1.5)
    brightness: float = 0.1
    noise: float = 0.05
    blur: float = 1.0
    bias_field: float = 0.3
    resolution: tuple[float, float] = (1.0, 2.0)
    p: float = 0.5

    def __post_init__(self) -> None:
        self.augmenter()

    def augmenter(self) -> AppearanceAugmenter:
        """The augmenter of these options (drawing from the global generator that training seeds and saves)."""
        return AppearanceAugmenter(**dataclasses.asdict(self))


def _to_unit(x: Tensor, config: SegmentationConfig) -> Tensor:
    """Normalised segmenter inputs back to grey levels in ``[0, 1]``: exactly for ``dataset`` and ``none``, up to
    the per-image affine map that ``per_image`` normalisation removes again (a min-max rescale)."""
    if config.normalization == "none":
        return x
    if config.normalization == "dataset":
        mean, std = config.norm_stats
        return x * std + mean
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (high - low).clamp_min(1e-6)


def train_with_appearance(model: nn.Module, train: CXRData, val: CXRData | None, config: SegmentationConfig,
                          appearance: nn.Module, run_dir: str | os.PathLike | None = None,
                          init_state: dict[str, Tensor] | None = None) -> TrainResult:
    """:func:`segmentation.training.train_segmenter` with ``appearance`` applied to every training batch.

    ``appearance`` maps ``[0, 1]`` images to ``[0, 1]`` images; it runs after the geometric ``Augmenter`` (when
    ``config.augment``) and before the network, on the normalised batch turned back into grey levels, under
    ``no_grad`` and without autocast, through a forward pre-hook of the model that only acts in training mode and
    is removed on return: validation and prediction see the images as they are, the weights and checkpoints are
    those of a plain segmenter. Randomness should come from the global torch generator, which ``train_segmenter``
    seeds with ``config.seed`` and saves in ``checkpoints/last.pt``, so a resumed run ends with the weights of an
    uninterrupted one. Inside a process group of several ranks (torchrun) the model trains in
    ``DistributedDataParallel`` (``runtime.distributed.data_parallel``: each rank its share of every batch, gradients
    averaged, rank 0 alone writes) and ends with rank 0's weights on every rank.

    Args:
        model: the segmenter (built by the caller, on this rank's device).
        train / val: source data with masks of ``config.classes`` (``val`` None keeps the last weights).
        config: the training; with ``normalization="dataset"`` and no ``norm_stats`` they are computed from
            ``train`` first, as ``train_segmenter`` would.
        appearance: the image transform of training batches.
        run_dir: the run folder (resumed when it holds a checkpoint); None trains in memory.
        init_state: weights to start from.

    Returns:
        ``train_segmenter``'s result; the model holds the selected weights.
    """
    if config.normalization == "dataset" and config.norm_stats is None:
        config = config.replace(norm_stats=dataset_stats(resize_images(train.images.float(), config.size)))

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        if not module.training:
            return None
        x = args[0]
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            out = normalize(appearance(_to_unit(x.float(), config)), config.normalization, stats=config.norm_stats)
        return (out.to(x.dtype), *args[1:])

    handle = model.register_forward_pre_hook(hook)  # on the module itself: a DDP wrapper calls it
    try:
        result = train_segmenter(data_parallel(model), train, val, config, run_dir=run_dir,
                                 resume=run_dir is not None, init_state=init_state)
    finally:
        handle.remove()
    sync_from_main(model)
    return result


def train_source(ctx: CellContext, appearance: nn.Module) -> tuple[nn.Module, SegmentationConfig]:
    """A segmenter of every source class trained exactly as M_A (same seed, so the same initial weights, same
    budget, split and selection) with ``appearance`` on its training batches, in ``ctx.run / "segment"``."""
    exp = ctx.exp
    config = segmentation_config(exp, exp.source_iterations, exp.source_lr, augment=True, classes=exp.model_classes)
    train = ctx.source_full.subset(ctx.source_split["train"])
    val = ctx.source_full.subset(ctx.source_split["val"]) if ctx.source_split["val"] else None
    torch.manual_seed(config.seed)
    model = build_segmenter(config).to(ctx.device)
    train_with_appearance(model, train, val, config, appearance, run_dir=ctx.run / "segment")
    return model, config


def source_output(ctx: CellContext, model: nn.Module, logs: dict[str, object]) -> MethodOutput:
    """The output of a segmenter of every source class: its scored channels, and all of them for the overlays."""
    scored = model if ctx.m_a_full is ctx.m_a else select_classes(model, ctx.class_index)
    full = segmenter_predictor(model, ctx.full_config) if scored is not model else None
    return MethodOutput(predict=segmenter_predictor(scored, ctx.seg_config), config=ctx.seg_config, logs=logs,
                        predict_all_classes=full)


def run(ctx: CellContext) -> MethodOutput:
    """Train the randomised source segmenter (resumable) and predict the target images as they are."""
    options = method_options(ctx.exp, NAME, AugSourceOptions)
    model, config = train_source(ctx, options.augmenter())
    return source_output(ctx, model, {"augsource_iterations": config.epochs * config.steps_per_epoch})


METHOD = Method(NAME, run, "a source segmenter trained with strong appearance randomisation (no target image)",
                fraction_free=True, options=(f"method_options.{NAME}", "source_iterations", "source_lr"))
