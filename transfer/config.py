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
#: the rules of :mod:`transfer.selection` that a preset uses or that won a measurement (docs/results/transfer.md)
SELECTION_RULES = ("shape_cycle", "shape_prior", "label_free", "paper_target_val", "last")
#: switches removed in issue 11 (measured neutral or harmful, docs/results/transfer.md) with the value they had by
#: default: an old ``config.json`` that holds one at that value describes today's computation (:func:`without_removed`)
REMOVED = {"weight_generative": 1.0, "weight_translated": 0.0, "weight_target_direct": 0.0, "pseudo_filter": "none",
           "snapshots": 1, "segmenter_init": "source", "generator_supervision": True, "n_discriminative": 1,
           "n_generative": 1, "n_supervised": 1}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class TransferConfig:
    """Hyper-parameters of the transfer loop (:class:`transfer.orchestrator.TransferOrchestrator`).

    One iteration is a discriminative, a generative and a supervised step; ``warmup_iterations`` train the translator
    alone first. The supervised step weighs M_A on (a, y_a) (``weight_source``), on G_BA(G_AB(a)) (``weight_cycle``),
    on G_BA(b) with y_b (``weight_target``) and on confident pseudo-labels (``weight_pseudo``, from ``pseudo_start`` x
    ``iterations`` on, made by the ``pseudo_teacher`` from a ``pseudo_views`` average). ``ema_decay`` averages the
    weights that predict (a ``predict_views`` average) and that ``selection`` scores every ``steps_per_epoch``
    iterations (``select_start``: the start too). ``augment``: ``"none"`` (the paper), ``"labelled"`` or ``"all"``.
    ``loss`` (multi-label) and ``normalize_mode`` are M_A's; ``amp``: bf16 autocast on CUDA; ``grad_clip`` 0: none.
    Presets (:meth:`preset`): ``default`` (the measured additions, docs/results/transfer.md) and ``paper`` (exactly
    the published method, SIBGRAPI 2018); a preset leaves the budget (iterations, batch size, learning rates) alone.
    """

    iterations: int = 3000
    warmup_iterations: int = 1000
    steps_per_epoch: int = 250
    batch_size: int = 8
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_segmenter: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_source: float = 1.0
    weight_cycle: float = 1.0
    weight_target: float = 1.0
    weight_pseudo: float = 0.5
    pseudo_threshold: float = 0.9
    pseudo_start: float = 0.5
    pseudo_teacher: str = "selected"
    ema_decay: float = 0.999
    selection: str = "shape_cycle"
    select_start: bool = True
    loss: str = "dice_bce"
    normalize_mode: str = "per_image"
    augment: str = "all"
    predict_views: tuple[str, ...] = PREDICT_VIEWS
    pseudo_views: tuple[str, ...] = PREDICT_VIEWS
    amp: bool = True
    seed: int = 0
    log_every: int = 10
    grad_clip: float = 0.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "paper": {"predict_views": ("translated",), "pseudo_views": ("translated",), "weight_pseudo": 0.0,
                  "ema_decay": 0.0, "augment": "none", "loss": "bce", "selection": "paper_target_val",
                  "pseudo_teacher": "ema", "select_start": False},
    }

    def __post_init__(self) -> None:
        for name in ("iterations", "warmup_iterations", "weight_source", "weight_cycle", "weight_target",
                     "weight_pseudo", "grad_clip"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "batch_size", "log_every"):
            _check(getattr(self, name) >= 1, f"expected {name} >= 1, got {getattr(self, name)}")
        for name in ("lr_generator", "lr_discriminator", "lr_segmenter"):
            _check(getattr(self, name) > 0, f"expected {name} > 0, got {getattr(self, name)}")
        _check(0.5 < self.pseudo_threshold < 1, f"expected 0.5 < pseudo_threshold < 1, got {self.pseudo_threshold}")
        _check(0 <= self.pseudo_start <= 1, f"expected 0 <= pseudo_start <= 1, got {self.pseudo_start}")
        _check(0 <= self.ema_decay < 1, f"expected 0 <= ema_decay < 1, got {self.ema_decay}")
        _check(len(self.betas) == 2, f"expected two Adam betas, got {self.betas}")
        for name, allowed in (("selection", SELECTION_RULES), ("augment", ("none", "labelled", "all")),
                              ("pseudo_teacher", ("ema", "selected"))):
            _check(getattr(self, name) in allowed, f"expected {name} in {allowed}, got {getattr(self, name)!r}")
        for name in ("predict_views", "pseudo_views"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            _check(len(getattr(self, name)) >= 1 and all(v in PREDICT_VIEWS for v in getattr(self, name)),
                   f"expected {name} to be a non-empty subset of {PREDICT_VIEWS}, got {getattr(self, name)}")

    def replace(self, **changes: object) -> "TransferConfig":
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "TransferConfig":
        """The configuration of preset ``name`` with ``changes`` on top.

        Raises:
            ValueError: for an unknown preset name.
        """
        if name not in cls.PRESETS:
            raise ValueError(f"expected a preset in {sorted(cls.PRESETS)}, got {name!r}")
        return cls(**{**cls.PRESETS[name], **changes})


def without_removed(data: dict[str, Any]) -> dict[str, Any]:
    """An ``ExperimentConfig`` dict (a ``config.json``) without the :data:`REMOVED` transfer fields at their old value.

    Raises:
        ValueError: one line naming a removed field set to another value: today's code cannot run what it describes.
    """
    transfer = dict(data.get("transfer") or {})
    for name, default in REMOVED.items():
        if name in transfer and transfer.pop(name) != default:
            raise ValueError(f"transfer.{name} was removed (measured neutral or harmful, docs/results/transfer.md); "
                             f"expected it absent or {default!r}, got {data['transfer'][name]!r}: delete it")
    return {**data, "transfer": transfer} if "transfer" in data else dict(data)


DARK_GATE = 0.02
"""Default ``ExperimentConfig.dark_gate``. Fixed before it was measured (padding is exactly black, and no labelled
JSRT lung pixel lies below 10% of its image's range); turned on because it raised M_A's Jaccard on the validation
images of every fold of the 5-fold Montgomery protocol (benchmarks/dark_gate_validation.py, docs/RESULTS.md)."""


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
        channels_last: the transfer loop's networks in channels-last memory format on CUDA (no effect on the CPU).
        compile: ``torch.compile`` the transfer loop's training networks (opt-in: minutes of compilation first, then
            faster steps on a GPU). Like ``device``, neither is part of a cell's identity: the results they give are
            the eager ones to float rounding (tests/transfer/test_speed_paths.py).
        dark_gate: label-free prior of every method's predictions and pseudo-labels: pixels within this share of an
            image's intensity range from its darkest value are background (film padding, air beside the body;
            ``segmentation.postprocess.gate_dark``); :data:`DARK_GATE` by default, 0 is off. Part of a cell's identity
            when not 0 (the cells measured before the gate existed, all without it, keep their keys).
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
    channels_last: bool = True
    compile: bool = False
    dark_gate: float = DARK_GATE
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
        _check(self.folds == 0 or self.folds >= 2, f"expected folds 0 (one split) or >= 2, got {self.folds}")
        _check(0 <= self.fold < max(1, self.folds), f"expected 0 <= fold < {max(1, self.folds)}, got {self.fold}")
        _check(0.0 <= self.dark_gate < 1.0, f"expected 0 <= dark_gate < 1, got {self.dark_gate}")
        for name in ("source_iterations", "finetune_iterations", "max_test"):
            _check(getattr(self, name) >= 0, f"expected {name} >= 0, got {getattr(self, name)}")

    @property
    def model_classes(self) -> tuple[str, ...]:
        """Classes of the source segmenter M_A (``source_classes`` or, when empty, ``classes``)."""
        return self.source_classes or self.classes

    def replace(self, **changes: object) -> "ExperimentConfig":
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
