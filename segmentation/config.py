"""The frozen configuration of a segmenter's training and inference (saved with every model file)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

MODES = ("multilabel", "multiclass")
NORMALIZATIONS = ("per_image", "dataset", "none")
SCHEDULERS = ("none", "cosine", "plateau")


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything that defines a segmentation training run (saved as ``config.json``).

    Args:
        model: segmenter name for ``segmentation.models.create_segmenter`` ("unet", "invertednet", ...).
        model_kwargs: extra keyword arguments of the segmenter (``in_channels``/``out_channels`` are set here).
        classes: class names, one output channel each (``segmentation.data.dataset.CLASS_GROUPS`` keys).
        size: square training and inference size in pixels; images of other sizes are resized to it.
        mode: "multilabel" (one sigmoid per class, classes may overlap) or "multiclass" (softmax over
            background + classes, the exclusive encoding of Novikov et al.).
        loss: loss name for ``segmentation.losses.create_loss``.
        loss_kwargs: extra keyword arguments of the loss.
        epochs: number of epochs.
        batch_size: images per step (per process under DDP).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        scheduler: "none", "cosine" (annealed to 0 over ``epochs``) or "plateau" (halves the rate after
            ``patience // 2`` validations without improvement, needs validation data).
        augment: apply ``segmentation.data.augmentation.Augmenter`` to training batches.
        augment_kwargs: keyword arguments of the ``Augmenter``.
        mixup_alpha: Beta(alpha, alpha) mixup of training batches; 0 disables it (multilabel only).
        normalization: segmenter input normalisation (``segmentation.data.preprocessing.normalize`` mode).
        norm_stats: dataset statistics for ``normalization="dataset"``; computed from the training images
            when None.
        seed: seed of weights-independent randomness (batch order, augmentation, dropout).
        device: "auto", "cpu", "cuda", "cuda:1"; "auto" keeps a model already placed on an accelerator.
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: channels-last memory format for model and inputs.
        patience: stop after this many epochs without a better validation Dice; None disables early stopping.
        val_every: validate every this many epochs (and at the last epoch).
        steps_per_epoch: optimizer steps per epoch; None means one pass over the training images.
        threshold: probability above which a pixel is foreground (multilabel mode).
        postprocess: keep the largest connected components and fill holes when evaluating and predicting.
        dark_gate: at prediction, pixels within this share of an image's intensity range from its darkest value are
            background (``segmentation.postprocess.gate_dark``: film padding and air, never anatomy); 0 is off.
        eval_batch_size: images per forward pass at validation and inference.
        grad_clip: clip the gradient norm to this value; None disables clipping.
        checkpoint_every: write ``checkpoints/last.pt`` (and ``best.pt`` when it changed) every this many epochs,
            and at the end; a resumed run restarts from the last one written. Raise it for fast GPU runs.
        overlays: number of validation images shown with their predictions in TensorBoard.
        progress: show a progress bar.
    """

    model: str = "unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ("lungs",)
    size: int = 256
    mode: str = "multilabel"
    loss: str = "dice_bce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    augment: bool = False
    augment_kwargs: dict[str, Any] = field(default_factory=dict)
    mixup_alpha: float = 0.0
    normalization: str = "per_image"
    norm_stats: tuple[float, ...] | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = False
    patience: int | None = None
    val_every: int = 1
    steps_per_epoch: int | None = None
    threshold: float = 0.5
    postprocess: bool = True
    dark_gate: float = 0.0
    eval_batch_size: int = 16
    grad_clip: float | None = None
    checkpoint_every: int = 1
    overlays: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        _expect(isinstance(self.model, str) and self.model != "", "model to be a segmenter name", self.model)
        _expect(len(self.classes) >= 1, "at least one class", self.classes)
        _expect(len(set(self.classes)) == len(self.classes), "distinct classes", self.classes)
        _expect(self.size >= 8, "size >= 8", self.size)
        _expect(self.mode in MODES, f"mode in {MODES}", self.mode)
        _expect(self.epochs >= 1, "epochs >= 1", self.epochs)
        _expect(self.batch_size >= 1, "batch_size >= 1", self.batch_size)
        _expect(self.lr > 0, "lr > 0", self.lr)
        _expect(self.weight_decay >= 0, "weight_decay >= 0", self.weight_decay)
        _expect(self.scheduler in SCHEDULERS, f"scheduler in {SCHEDULERS}", self.scheduler)
        _expect(self.mixup_alpha >= 0, "mixup_alpha >= 0", self.mixup_alpha)
        if self.mixup_alpha > 0 and self.mode != "multilabel":
            raise ValueError("expected mixup_alpha = 0 with mode 'multiclass' (mixed labels need soft multilabel "
                             f"targets), got {self.mixup_alpha}; use mode='multilabel' or drop mixup")
        _expect(self.normalization in NORMALIZATIONS, f"normalization in {NORMALIZATIONS}", self.normalization)
        _expect(self.seed >= 0, "seed >= 0", self.seed)
        _expect(self.patience is None or self.patience >= 1, "patience >= 1 or None", self.patience)
        _expect(self.val_every >= 1, "val_every >= 1", self.val_every)
        _expect(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch >= 1 or None",
                self.steps_per_epoch)
        _expect(0.0 < self.threshold < 1.0, "threshold in (0, 1)", self.threshold)
        _expect(0.0 <= self.dark_gate < 1.0, "dark_gate in [0, 1)", self.dark_gate)
        _expect(self.eval_batch_size >= 1, "eval_batch_size >= 1", self.eval_batch_size)
        _expect(self.grad_clip is None or self.grad_clip > 0, "grad_clip > 0 or None", self.grad_clip)
        _expect(self.overlays >= 0, "overlays >= 0", self.overlays)
        _expect(self.checkpoint_every >= 1, "checkpoint_every >= 1", self.checkpoint_every)
        for name in ("model_kwargs", "loss_kwargs", "augment_kwargs"):
            value = getattr(self, name)
            _expect(isinstance(value, Mapping), f"{name} to be a dict", type(value).__name__)
        if "in_channels" in self.model_kwargs or "out_channels" in self.model_kwargs:
            raise ValueError("expected model_kwargs without in_channels/out_channels (set from classes and mode), "
                             f"got {sorted(self.model_kwargs)}")
        if self.scheduler == "plateau" and self.patience is None:
            raise ValueError("expected a patience with scheduler='plateau' (it waits patience // 2 validations), "
                             "got None; set patience or use scheduler='cosine'")
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.norm_stats is not None:
            object.__setattr__(self, "norm_stats", tuple(float(v) for v in self.norm_stats))

    @property
    def out_channels(self) -> int:
        """Segmenter output channels: one per class, plus background in multiclass mode."""
        return len(self.classes) + (1 if self.mode == "multiclass" else 0)

    def replace(self, **changes: Any) -> "SegmentationConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _expect(ok: bool, what: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"expected {what}, got {got!r}")
