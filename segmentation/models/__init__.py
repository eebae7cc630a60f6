"""Segmentation architectures behind one lookup: ``create_segmenter(name, **kwargs)``.

Every model subclasses :class:`segmentation.models.base.Segmenter`: ``forward(x)`` returns logits,
``predict(x)`` runs in eval mode under :func:`torch.inference_mode`, ``num_parameters()`` counts weights and
``required_divisor`` gives the allowed input sizes.
"""

from __future__ import annotations

from typing import Any

from segmentation.models.base import Segmenter
from segmentation.models.unet import UNet

SEGMENTERS: dict[str, type[Segmenter]] = {
    "unet": UNet,
}


def create_segmenter(name: str, **kwargs: Any) -> Segmenter:
    """Build the segmenter registered as ``name`` with its keyword arguments.

    Args:
        name: one of :data:`SEGMENTERS` (e.g. ``"unet"``).
        **kwargs: the architecture's keywords (``in_channels``, ``out_channels`` and its own).

    Returns:
        The freshly initialised model.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a bad keyword value.
        TypeError: for a keyword the architecture does not take.
    """
    if name not in SEGMENTERS:
        raise ValueError(f"expected a segmenter name in {sorted(SEGMENTERS)}, got {name!r}")
    return SEGMENTERS[name](**kwargs)


__all__ = ["SEGMENTERS", "Segmenter", "UNet", "create_segmenter"]
