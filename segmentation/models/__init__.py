"""Segmentation architectures behind one lookup: ``create_segmenter(name, **kwargs)``.

Every model subclasses :class:`segmentation.models.base.Segmenter`: ``forward(x)`` returns logits,
``predict(x)`` runs in eval mode under :func:`torch.inference_mode`, ``num_parameters()`` counts weights and
``required_divisor`` gives the allowed input sizes.
"""

from __future__ import annotations

from typing import Any

from segmentation.models.all_convolutional import AllConvolutional
from segmentation.models.all_dropout import AllDropout, GaussianDropout, NovikovNet
from segmentation.models.attention_unet import AttentionBCDUNet, AttentionUNet
from segmentation.models.base import Segmenter
from segmentation.models.fcn import FCN
from segmentation.models.invertednet import InvertedNet
from segmentation.models.res_cr_net import ResCRNet
from segmentation.models.segnet import SegNet
from segmentation.models.unet import UNet

SEGMENTERS: dict[str, type[Segmenter]] = {
    "unet": UNet,
    "segnet": SegNet,
    "fcn": FCN,
    "invertednet": InvertedNet,
    "all_dropout": AllDropout,
    "all_convolutional": AllConvolutional,
    "attention_unet": AttentionUNet,
    "attention_bcdu_net": AttentionBCDUNet,
    "res_cr_net": ResCRNet,
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


__all__ = [
    "FCN",
    "SEGMENTERS",
    "AllConvolutional",
    "AllDropout",
    "AttentionBCDUNet",
    "AttentionUNet",
    "GaussianDropout",
    "InvertedNet",
    "NovikovNet",
    "ResCRNet",
    "SegNet",
    "Segmenter",
    "UNet",
    "create_segmenter",
]
