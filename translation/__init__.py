"""Unpaired image-to-image translators (CycleGAN, UNIT, MUNIT) between two domains of image tensors.

Images are ``[B, C, H, W]`` tensors in ``[-1, 1]``; grayscale (C = 1) by default. Translators know nothing of
segmentation or datasets. Build one with :func:`create_translator`; save and reuse it with :func:`save_translator` /
:func:`load_translator`.
"""

from __future__ import annotations

from translation.base import Translator
from translation.cyclegan import CycleGAN
from translation.inference import translate_image
from translation.io import load_translator, save_translator
from translation.munit import MUNIT
from translation.registry import TRANSLATORS, create_translator
from translation.unit import UNIT

__all__ = ["CycleGAN", "MUNIT", "TRANSLATORS", "Translator", "UNIT", "create_translator", "load_translator",
           "save_translator", "translate_image"]
