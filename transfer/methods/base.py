"""The contract of an adaptation method: a cell context in, a predictor for target images out.

A method never sees the target test split: the cell runner (:func:`transfer.cell.run_cell`) applies the returned
predictor to the test images and scores it, so no method can tune on them. Adding a method is one file with a
``run(ctx) -> MethodOutput`` function and one line in :data:`transfer.methods.METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn

from runtime.config import config_from_dict
from segmentation.config import SegmentationConfig
from segmentation.data.dataset import CXRData
from segmentation.inference import predict_probabilities, probabilities_to_masks
from segmentation.metrics import evaluate_masks
from segmentation.postprocess import gate_dark
from transfer.config import ExperimentConfig
from transfer.protocol import TargetView

T = TypeVar("T")

#: target images ``[N, 1, H, W]`` in ``[0, 1]`` -> probabilities ``[N, K, H, W]`` on the CPU (K scored classes)
Predictor = Callable[[Tensor], Tensor]


@dataclass
class CellContext:
    """Everything a method may use in one cell (method, label fraction, seed).

    Attributes:
        exp: the cell's configuration.
        device: where to train.
        run: the cell folder (a method writes its own checkpoints, logs and models under it).
        m_a / seg_config: the source segmenter M_A with the scored classes (its head sliced when the source has more)
            and its segmentation configuration.
        m_a_full / full_config: M_A with every source class (``exp.model_classes``).
        class_index: M_A's channels of the scored classes.
        source / source_full: the source data with the scored / every source class.
        source_split: the source ``train`` / ``val`` ids.
        target: the target training part, labels counted (``view.labelled()`` is the labelled subset).
        target_val: the target validation images (their masks only for the paper's target-validation selection).
    """

    exp: ExperimentConfig
    device: torch.device
    run: Path
    m_a: nn.Module
    seg_config: SegmentationConfig
    m_a_full: nn.Module
    full_config: SegmentationConfig
    class_index: list[int]
    source: CXRData
    source_full: CXRData
    source_split: dict[str, list[str]]
    target: TargetView
    target_val: CXRData

    @property
    def labelled(self) -> CXRData | None:
        """The labelled target subset (None at fraction 0)."""
        return self.target.labelled()


@dataclass
class MethodOutput:
    """What a method returns.

    Attributes:
        predict: the method's prediction of target images (scored on the test split by the runner).
        config: thresholds and post-processing of the masks (``probabilities_to_masks``).
        logs: JSON-able facts the method wants in the cell's result (iterations, selection history...).
        views: other predictions reported beside the result, never used to select anything.
        predict_all_classes: a prediction with every source class, drawn on test images when the source has more
            classes than the target is scored on (``overlays.png``).
    """

    predict: Predictor
    config: SegmentationConfig
    logs: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Predictor] = field(default_factory=dict)
    predict_all_classes: Predictor | None = None


@dataclass(frozen=True)
class Method:
    """A registered adaptation method.

    Attributes:
        name: the registry name (``--method``).
        run: ``run(ctx) -> MethodOutput``.
        summary: one line for ``--help`` and the report.
        needs_labels: undefined at fraction 0 (skipped there by the grid, refused by ``experiment run``).
        fraction_free: the result does not depend on the label fraction (run once per seed).
        translator: the method starts from the seed's warmed-up translator (the sweep trains it once, first).
        options: the ``ExperimentConfig`` fields the method reads beyond the shared ones (dotted for nested ones,
            e.g. ``"method_options.fda"`` for its own entry); they are part of the cell's identity, so changing them
            makes a new cell (and changing another method's does not).
        distributed: the method is correct across ``torchrun`` ranks (its trainings share data and gradients, as
            ``tests/experiments/test_torchrun.py`` shows for the built-in ones); False: refused under torchrun before
            anything is written.
    """

    name: str
    run: Callable[[CellContext], MethodOutput]
    summary: str
    needs_labels: bool = False
    fraction_free: bool = False
    translator: bool = False
    options: tuple[str, ...] = ()
    distributed: bool = True


def method_options(exp: ExperimentConfig, name: str, cls: type[T]) -> T:
    """The typed options of method ``name``: ``exp.method_options[name]`` read into the frozen dataclass ``cls``.

    Raises:
        ValueError: for an unknown field or a bad value (from ``cls``).
    """
    return config_from_dict(cls, dict(exp.method_options.get(name, {})))


def segmenter_predictor(model: nn.Module, config: SegmentationConfig,
                        transform: Callable[[Tensor], Tensor] | None = None) -> Predictor:
    """A predictor that applies a segmenter (after ``transform`` of the images, if given) and returns CPU
    probabilities: what ``segmentation.training.evaluate_segmenter`` scores."""

    def predict(images: Tensor) -> Tensor:
        x = transform(images) if transform is not None else images
        return predict_probabilities(model, x, config).cpu()

    return predict


SCORE_CHUNK = 256
"""Test images predicted and scored at a time."""


def score(predict: Predictor, config: SegmentationConfig, data: CXRData) -> list[dict[str, Any]]:
    """Per-image metric rows (with ``id``) of a predictor's masks against ``data``'s masks (``config.dark_gate``
    applied to its probabilities), ``SCORE_CHUNK`` images at a time (bounded memory for a test set of any size;
    streamed sets are read chunk by chunk)."""
    rows = []
    for begin in range(0, len(data), SCORE_CHUNK):
        end = min(len(data), begin + SCORE_CHUNK)
        images = data.images[begin:end]
        probs = gate_dark(predict(images).cpu(), images, config.dark_gate, config.mode)
        masks = probabilities_to_masks(probs, config)
        rows += evaluate_masks(masks.cpu(), data.masks[begin:end].cpu() > 0.5, data.classes,
                               spacing_mm=None if data.spacing_mm is None else data.spacing_mm[begin:end])
    return [{"id": i, **r} for i, r in zip(data.ids, rows)]



def mean_jaccard(rows: list[dict[str, Any]], classes: tuple[str, ...] | list[str]) -> float:
    """Mean over images of the per-image Jaccard averaged over ``classes``."""
    values = [sum(float(r[f"jaccard/{c}"]) for c in classes) / len(classes) for r in rows]
    return sum(values) / max(1, len(values))
