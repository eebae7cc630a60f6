"""Frozen configurations of the transfer method and of one experiment cell.

Built once at the edge (the CLI or a test), saved as ``config.json`` beside the run, never read from a global.
The method follows Oliveira & dos Santos, "Cross-dataset transfer learning for chest X-ray segmentation through
unpaired image-to-image translation" (SIBGRAPI 2018): a translator (G_AB, G_BA, D_A, D_B) and the source segmenter
M_A are trained together by alternating discriminative, generative and supervised steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from segmentation.data.splits import LABEL_FRACTIONS as PAPER_FRACTIONS  # noqa: F401 - the paper's fractions

PREDICT_VIEWS = ("translated", "direct", "translated_flip", "direct_flip")
SELECTION_RULES = ("shape_cycle", "shape_prior", "label_free", "source_cycle", "cycle_agreement", "view_agreement",
                   "consensus", "confidence", "kid", "labelled", "paper_target_val", "last")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class TransferConfig:
    """Hyper-parameters of the alternating transfer method.

    Args:
        iterations: adaptation iterations after the warm-up (one iteration = the three kinds of step).
        warmup_iterations: unsupervised translator iterations (discriminative + generative steps only) before the
            supervised step joins; the paper uses 20 epochs. A warmed-up translator can be cached and reused.
        steps_per_epoch: iterations between evaluations, checkpoints and selection (the target set is tiny, so an
            "epoch" is a fixed number of steps over forever-iterators).
        batch_size: images per step for source and target batches.
        n_discriminative / n_generative / n_supervised: steps of each kind per iteration.
        lr_generator / lr_discriminator / lr_segmenter: Adam learning rates; ``betas`` are shared.
        weight_generative: scale of the translator's own generator losses (adversarial, cycle, identity...).
        weight_source: M_A on source pairs (a, y_a).
        weight_cycle: M_A on G_BA(G_AB(a)) with y_a; flows into both generators.
        weight_target: M_A on G_BA(b) with y_b for the labelled target images; flows into G_BA.
        weight_pseudo: M_A on G_BA(b) with confident pseudo-labels (self-training); 0 disables it.
        weight_target_direct: M_A on the labelled target pairs (b, y_b) without translation (not in the paper; it
            trains the direct views of the prediction as fine-tuning does).
        weight_translated: M_A on G_AB(a) with y_a (source images in target style, CyCADA's task loss; not in the
            paper); flows into G_AB; 0 disables it.
        pseudo_threshold: a pixel is confident when the EMA model's probability is above it or below 1 - it.
        pseudo_start: fraction of ``iterations`` after which self-training starts.
        ema_decay: decay of the exponential moving average of generator and segmenter weights; 0 disables EMA.
        selection: rule that picks the checkpoint (see :mod:`transfer.selection`); ``"paper_target_val"`` uses all
            target validation labels (the paper's protocol) and must be reported as such.
        loss: segmentation loss name for ``segmentation.losses.create_loss`` (multi-label mode).
        normalize_mode: ``segmentation.data.preprocessing.normalize`` mode for segmenter inputs.
        amp: bf16 autocast on CUDA (ignored on CPU).
        seed: seed of the iterators and of the run.
        log_every: iterations between TensorBoard scalar writes.
        grad_clip: max gradient norm for every optimizer step (0 disables it).
        predict_views: views whose probabilities are averaged at prediction (test-time stabiliser, not in the
            paper): ``"translated"`` is the paper's M_A(G_BA(b)), ``"direct"`` is M_A(b) (the adapted segmenter on the
            raw target image), ``*_flip`` the same on the horizontally flipped image (flipped back). Self-training
            pseudo-labels use ``pseudo_views``. The default averages all four: measured at 0% labels
            it raised transfer over the paper's single view on phantoms (5 seeds) and on JSRT -> Montgomery
            (docs/results/transfer.md); ``("translated",)`` is the paper's prediction.
        pseudo_views: views averaged (by the EMA models) to make the self-training pseudo-labels; default all four
            (measured at 0% labels: +7 points over pseudo-labels from the paper's view M_A(G_BA(b)) on phantoms, +0.4
            on JSRT -> Montgomery; docs/results/transfer.md); ``("translated",)`` is the paper-view variant.
        snapshots: average predictions over the EMA weights of the last ``snapshots`` evaluations instead of using
            the selected ones (1: the selected weights only).
        pseudo_filter: ``"shape"`` keeps a target image's pseudo-label of a class only when its shape (number of
            connected components, area) is one the source masks show (``transfer.selection.ShapePrior``), so
            self-training does not learn from failed predictions; ``"none"`` keeps every confident pixel.
        generator_supervision: the paper's coupling: the supervised loss back-propagates into G_AB and G_BA;
            False trains M_A only in the supervised step (an ablation).
        segmenter_init: ``"source"`` starts the loop from M_A as the paper does; ``"finetune"`` first fine-tunes M_A
            on the labelled target subset (the fine-tuning baseline, same settings) and starts from that, so the loop
            begins where the strongest labelled baseline ends (not in the paper; identical to ``"source"`` at 0%).
        augment: random geometry and intensity (``segmentation.data.augmentation.Augmenter`` with its defaults, the
            augmentation the fine-tuning and source baselines train with) in the supervised step: ``"labelled"``
            augments the source pairs (a, y_a) and the labelled target pairs (b, y_b) before they are translated
            and segmented; ``"all"`` also the self-training images with their pseudo-labels and weights (the same
            warp for all three; pseudo-labels are made on the un-augmented image, so the student learns them under
            a perturbation); ``"none"`` (the paper) trains on the images as they are. The default ``"all"`` was
            measured at 0% labels: on phantoms (10 seeds, 240 iterations) it stopped the drift of the loop (the
            default selection picks 0.757 mean Jaccard against 0.705 without it; source-only 0.709), on JSRT ->
            Montgomery 92.38 against 92.27 (docs/results/transfer.md).
        pseudo_teacher: the models that make the self-training pseudo-labels: ``"ema"`` the EMA models (they follow
            the student within a few dozen iterations), ``"selected"`` the best-scoring EMA weights so far (by
            ``selection``; the starting point when nothing scored better), so the labels only change when the
            label-free score improves and a student that starts to fail cannot teach itself its failures. The
            default ``"selected"`` was measured on JSRT -> Montgomery at 0% labels: with ``"ema"`` self-training
            collapsed 100-150 iterations after it began (one image failing outright, -2.5 to -4.4 points), with
            ``"selected"`` a 450-iteration run rose steadily to the end (92.90); on phantoms the two tie
            (docs/results/transfer.md).
        select_start: also score the starting point (the warmed-up translator with M_A unchanged, iteration 0), so
            that selection can keep it when adaptation only makes things worse.
    """

    iterations: int = 3000
    warmup_iterations: int = 1000
    steps_per_epoch: int = 250
    batch_size: int = 8
    n_discriminative: int = 1
    n_generative: int = 1
    n_supervised: int = 1
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_segmenter: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_generative: float = 1.0
    weight_source: float = 1.0
    weight_cycle: float = 1.0
    weight_target: float = 1.0
    weight_pseudo: float = 0.5
    weight_translated: float = 0.0
    weight_target_direct: float = 0.0
    pseudo_threshold: float = 0.9
    pseudo_start: float = 0.5
    ema_decay: float = 0.999
    selection: str = "shape_cycle"
    loss: str = "dice_bce"
    normalize_mode: str = "per_image"
    amp: bool = True
    seed: int = 0
    log_every: int = 10
    grad_clip: float = 0.0
    predict_views: tuple[str, ...] = ("translated", "direct", "translated_flip", "direct_flip")
    pseudo_views: tuple[str, ...] = ("translated", "direct", "translated_flip", "direct_flip")
    snapshots: int = 1
    select_start: bool = True
    pseudo_filter: str = "none"
    generator_supervision: bool = True
    segmenter_init: str = "source"
    augment: str = "all"
    pseudo_teacher: str = "selected"

    def __post_init__(self) -> None:
        for name in ("iterations", "warmup_iterations"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "batch_size", "log_every"):
            _check(getattr(self, name) >= 1, f"expected {name} >= 1, got {getattr(self, name)}")
        for name in ("n_discriminative", "n_generative", "n_supervised"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")
        for name in ("lr_generator", "lr_discriminator", "lr_segmenter"):
            _check(getattr(self, name) > 0, f"expected {name} > 0, got {getattr(self, name)}")
        for name in ("weight_generative", "weight_source", "weight_cycle", "weight_target", "weight_pseudo",
                     "weight_translated", "weight_target_direct", "grad_clip"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")
        _check(0.5 < self.pseudo_threshold < 1, f"expected 0.5 < pseudo_threshold < 1, got {self.pseudo_threshold}")
        _check(0 <= self.pseudo_start <= 1, f"expected 0 <= pseudo_start <= 1, got {self.pseudo_start}")
        _check(0 <= self.ema_decay < 1, f"expected 0 <= ema_decay < 1, got {self.ema_decay}")
        _check(self.selection in SELECTION_RULES,
               f"expected selection in {SELECTION_RULES}, got {self.selection!r}")
        object.__setattr__(self, "predict_views", tuple(self.predict_views))
        _check(len(self.predict_views) >= 1 and all(v in PREDICT_VIEWS for v in self.predict_views),
               f"expected predict_views to be a non-empty subset of {PREDICT_VIEWS}, got {self.predict_views}")
        object.__setattr__(self, "pseudo_views", tuple(self.pseudo_views))
        _check(len(self.pseudo_views) >= 1 and all(v in PREDICT_VIEWS for v in self.pseudo_views),
               f"expected pseudo_views to be a non-empty subset of {PREDICT_VIEWS}, got {self.pseudo_views}")
        _check(self.pseudo_filter in ("none", "shape"),
               f"expected pseudo_filter 'none' or 'shape', got {self.pseudo_filter!r}")
        _check(self.segmenter_init in ("source", "finetune"),
               f"expected segmenter_init 'source' or 'finetune', got {self.segmenter_init!r}")
        _check(self.augment in ("none", "labelled", "all"),
               f"expected augment 'none', 'labelled' or 'all', got {self.augment!r}")
        _check(self.pseudo_teacher in ("ema", "selected"),
               f"expected pseudo_teacher 'ema' or 'selected', got {self.pseudo_teacher!r}")
        _check(self.snapshots >= 1, f"expected snapshots >= 1, got {self.snapshots}")
        _check(len(self.betas) == 2, f"expected two Adam betas, got {self.betas}")

    def replace(self, **changes: object) -> "TransferConfig":
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    #: named sets of fields: ``default`` is the dataclass defaults (the additions measured in docs/results/transfer.md);
    #: ``paper`` is exactly the published method (SIBGRAPI 2018): the translated prediction M_A(G_BA(b)) only, no EMA,
    #: no self-training, no view averaging, no augmentation, (binary) cross-entropy, the checkpoint chosen on the
    #: target validation labels. A preset leaves the budget (iterations, warm-up, batch size, learning rates) alone.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "paper": {"predict_views": ("translated",), "pseudo_views": ("translated",), "weight_pseudo": 0.0,
                  "ema_decay": 0.0, "augment": "none", "loss": "bce", "selection": "paper_target_val",
                  "pseudo_teacher": "ema", "select_start": False, "snapshots": 1},
    }

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "TransferConfig":
        """The configuration of preset ``name`` with ``changes`` on top.

        Raises:
            ValueError: for an unknown preset name.
        """
        if name not in cls.PRESETS:
            raise ValueError(f"expected a preset in {sorted(cls.PRESETS)}, got {name!r}")
        return cls(**{**cls.PRESETS[name], **changes})


@dataclass(frozen=True)
class ExperimentConfig:
    """One cell of the label-fraction experiment: a method, a label fraction and a seed.

    Args:
        method: a name of the registry :data:`transfer.methods.METHODS` (``transfer``, ``paper``, ``finetune``,
            ``scratch``, ``source_only``, ``histmatch``, ...), checked where the cell runs.
        fraction: share of the target training split whose labels may be used, in [0, 1].
        seed: seed of the split draw is ``split_seed``; ``seed`` seeds models, subsets and iterators.
        source / target: prepared dataset folders (``images/``, ``masks/<organ>/``).
        out: root folder of the sweep (cells go to ``out/cells/<method>/f<fraction>/s<seed>-<identity>``, see
            :func:`transfer.cell.cell_key`).
        classes: organ classes to segment and score on the target (groups of
            ``segmentation.data.dataset.CLASS_GROUPS``).
        source_classes: classes of the source segmenter M_A when it has more than the target is scored on (e.g.
            ``("lungs", "heart", "clavicles")`` on JSRT while Montgomery has lung masks only); must include every
            one of ``classes``. Empty: the same as ``classes``. Every method then works on the ``classes`` channels
            of M_A (its head sliced); the other channels are drawn on target test images (``overlays.png`` of the
            source_only and transfer cells, gathered by ``experiment report``) since no ground truth exists.
        size: image side in pixels.
        segmenter / segmenter_kwargs: name for ``segmentation.models.create_segmenter`` and its keywords.
        translator / translator_preset / translator_kwargs: for ``translation.create_translator``.
        source_iterations: iterations of the source segmenter M_A (trained once per seed and cached).
        finetune_iterations: iterations for fine-tuning and from-scratch baselines.
        source_lr / finetune_lr: learning rates of those segmenter trainings.
        split_seed: seed of the Montgomery 60/20/20 split (fixed across seeds so every cell sees the same test set).
        folds / fold: ``folds = k >= 2`` cross-validates over the whole target set (``transfer.protocol.fold_splits``):
            the cell runs fold ``fold`` (its test part is one k-th of the target images); 0 keeps the single split.
        max_test: evaluate on at most this many test images (0 = all); for quick checks only.
        device: ``auto``, ``cpu``, ``cuda``...
        transfer: hyper-parameters of the transfer method.
        method_options: the options of other methods, by method name (e.g. ``{"fda": {"beta": 0.01}}``); each
            method reads its own entry into its own typed options (``transfer.methods.base.method_options``).
    """

    method: str = "transfer"
    fraction: float = 0.0
    seed: int = 0
    source: str = ""
    target: str = ""
    out: str = "runs/sweep"
    classes: tuple[str, ...] = ("lungs",)
    source_classes: tuple[str, ...] = ()
    size: int = 256
    segmenter: str = "unet"
    segmenter_kwargs: dict = field(default_factory=dict)
    translator: str = "cyclegan"
    translator_preset: str = "default"
    translator_kwargs: dict = field(default_factory=dict)
    source_iterations: int = 3000
    finetune_iterations: int = 1500
    source_lr: float = 1e-3
    finetune_lr: float = 3e-4
    split_seed: int = 0
    folds: int = 0
    fold: int = 0
    max_test: int = 0
    device: str = "auto"
    transfer: TransferConfig = field(default_factory=TransferConfig)
    method_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.method, str) and bool(self.method), f"expected a method name, got {self.method!r}")
        _check(0.0 <= self.fraction <= 1.0, f"expected 0 <= fraction <= 1, got {self.fraction}")
        _check(self.seed >= 0, f"expected seed >= 0, got {self.seed}")
        _check(self.size >= 8, f"expected size >= 8, got {self.size}")
        _check(len(self.classes) >= 1, f"expected at least one class, got {self.classes}")
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "source_classes", tuple(self.source_classes))
        missing = [c for c in self.classes if self.source_classes and c not in self.source_classes]
        _check(not missing, f"expected source_classes {self.source_classes} to include every target class, got "
                            f"{missing} missing; add them to --source-classes")
        _check(self.transfer.segmenter_init != "finetune" or not self.source_classes
               or tuple(self.source_classes) == tuple(self.classes),
               f"expected segmenter_init 'source' when M_A has more classes than the target ({self.source_classes} vs "
               f"{self.classes}); fine-tune initialisation needs the same classes")
        _check(self.folds == 0 or self.folds >= 2, f"expected folds 0 (one split) or >= 2, got {self.folds}")
        _check(0 <= self.fold < max(1, self.folds), f"expected 0 <= fold < {max(1, self.folds)}, got {self.fold}")
        for name in ("source_iterations", "finetune_iterations", "max_test"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")

    @property
    def model_classes(self) -> tuple[str, ...]:
        """Classes of the source segmenter M_A (``source_classes`` or, when empty, ``classes``)."""
        return self.source_classes or self.classes

    def replace(self, **changes: object) -> "ExperimentConfig":
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
