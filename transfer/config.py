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
    """Hyper-parameters of the alternating transfer method (measurements behind each default: docs/results/transfer.md).

    Args:
        iterations / warmup_iterations: adaptation iterations (one = the three kinds of step) after an unsupervised
            translator warm-up (discriminative + generative steps only; cached and reused across label fractions).
        steps_per_epoch: iterations between evaluations, checkpoints and selection (forever-iterators: the target
            set is tiny). batch_size: images per step.
        n_discriminative / n_generative / n_supervised: steps of each kind per iteration (the paper: 1 each).
        lr_generator / lr_discriminator / lr_segmenter, betas: Adam.
        weight_generative: scale of the translator's own losses. weight_source: M_A on (a, y_a). weight_cycle: M_A
            on G_BA(G_AB(a)) with y_a. weight_target: M_A on G_BA(b) with y_b (labelled target). weight_pseudo:
            self-training on confident pseudo-labels of unlabelled target images (0 disables it).
        weight_translated / weight_target_direct: ablations beyond the paper (CyCADA's M_A(G_AB(a)) with y_a; M_A on
            (b, y_b) untranslated); 0 disables them.
        pseudo_threshold / pseudo_start: confidence of a pseudo-labelled pixel; share of ``iterations`` before
            self-training starts. pseudo_teacher: ``"selected"`` (the best-scoring weights so far) or ``"ema"``.
        ema_decay: EMA of generator and segmenter weights (0: none). snapshots: average the last evaluations' EMA
            weights at prediction (1: the selected weights).
        selection: the checkpoint rule (:mod:`transfer.selection`); ``"paper_target_val"`` reads every target
            validation label (the paper's protocol) and is reported as such. select_start: also score the starting
            point, so adaptation that only hurts keeps M_A.
        loss / normalize_mode: segmentation loss (multi-label) and segmenter input normalisation.
        amp: bf16 autocast on CUDA. seed, log_every, grad_clip (0: none).
        predict_views / pseudo_views: views of the target image averaged at prediction / for pseudo-labels
            (``translated`` = the paper's M_A(G_BA(b)), ``direct`` = M_A(b), ``*_flip``); ``("translated",)`` is the
            paper.
        pseudo_filter: ``"shape"`` drops pseudo-labels whose shape the source masks never show (an ablation).
        generator_supervision: the paper's coupling (the supervised loss also trains the generators); False is an
            ablation. segmenter_init: ``"finetune"`` starts from the fine-tuning baseline at f > 0 (an ablation).
        augment: augmentation in the supervised step: ``"none"`` (the paper), ``"labelled"`` (the labelled pairs),
            ``"all"`` (also the self-training images with their pseudo-labels).

    Presets (:meth:`preset`): ``default`` (these defaults) and ``paper`` (exactly the published method).
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
