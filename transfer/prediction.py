"""Prediction of target images by a (translator, segmenter) pair: the paper's M_A(G_BA(b)) and the other views.

Shared by the orchestrator (selection, pseudo-labels, ``predict``), the selection criteria, the sweep and
``cxr-transfer transfer predict``; it imports neither, so none of them imports another to reach it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from runtime.distributed import unwrap
from transfer.config import PREDICT_VIEWS
from transfer.steps import from_translator, to_translator


@torch.no_grad()
def predict_target(translator: nn.Module, segmenter: nn.Module, images: Tensor,
                   normalize: Callable[[Tensor], Tensor]) -> Tensor:
    """Logits of M_A(G_BA(b)) in eval mode (train modes restored).

    Shape:
        images: ``[N, 1, H, W]`` in ``[0, 1]`` -> logits ``[N, K, H, W]``.
    """
    translator, segmenter = unwrap(translator), unwrap(segmenter)
    modes = (translator.training, segmenter.training)
    translator.eval()
    segmenter.eval()
    try:
        return segmenter(normalize(from_translator(translator.b_to_a(to_translator(images))))).float()
    finally:
        translator.train(modes[0])
        segmenter.train(modes[1])


@torch.no_grad()
def predict_views(translator: nn.Module, segmenter: nn.Module, images: Tensor,
                  normalize: Callable[[Tensor], Tensor], views: Sequence[str] = ("translated",)) -> Tensor:
    """Mean probability of M_A over several views of target images (a test-time stabiliser beyond the paper).

    ``"translated"``: M_A(G_BA(b)), the paper's prediction; ``"direct"``: M_A(b); ``"translated_flip"`` /
    ``"direct_flip"``: the same on the horizontally flipped image, flipped back.

    Args:
        translator / segmenter: the models (eval mode is set and restored by :func:`predict_target`).
        images: ``[N, 1, H, W]`` in ``[0, 1]``.
        normalize: segmenter input normalisation.
        views: names from ``transfer.config.PREDICT_VIEWS``.

    Returns:
        Probabilities ``[N, K, H, W]`` (float32).

    Raises:
        ValueError: on an empty or unknown view list.
    """
    if not views or any(v not in PREDICT_VIEWS for v in views):
        raise ValueError(f"expected views from {PREDICT_VIEWS}, got {tuple(views)}")
    total, home = None, images.device
    images = images.to(module_device(segmenter))  # the caller's images may live elsewhere (CPU data, GPU model)
    for view in views:
        x = images.flip(-1) if view.endswith("_flip") else images
        if view.startswith("translated"):
            logits = predict_target(translator, segmenter, x, normalize)
        else:
            logits = _predict_direct(segmenter, x, normalize)
        probs = torch.sigmoid(logits)
        probs = probs.flip(-1) if view.endswith("_flip") else probs
        total = probs if total is None else total + probs
    return (total / len(views)).to(home)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    module = unwrap(module)
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def _predict_direct(segmenter: nn.Module, images: Tensor, normalize: Callable[[Tensor], Tensor]) -> Tensor:
    segmenter = unwrap(segmenter)
    mode = segmenter.training
    segmenter.eval()
    try:
        return segmenter(normalize(images)).float()
    finally:
        segmenter.train(mode)
