"""The translators by name, and :func:`create_translator`: the one place a name becomes a class (saving and loading
look names up here too)."""

from __future__ import annotations

import inspect
from typing import Any

from translation.base import Translator
from translation.cyclegan import CycleGAN
from translation.munit import MUNIT
from translation.unit import UNIT

TRANSLATORS: dict[str, type[Translator]] = {"cyclegan": CycleGAN, "unit": UNIT, "munit": MUNIT}


def create_translator(name: str, preset: str = "default", **kwargs: Any) -> Translator:
    """Build the translator ``name`` from a preset, overridden by ``kwargs``.

    Args:
        name: "cyclegan", "unit" or "munit".
        preset: "default" (the paper's architecture) or "tiny" (few channels, 2 encoder and 2 decoder layers,
            2-convolution discriminators: CPU tests and the scale of Oliveira & dos Santos 2018).
        **kwargs: constructor keywords of the translator (e.g. ``channels=3``, ``gan_mode="hinge"``).

    Returns:
        The translator, in training mode.

    Raises:
        ValueError: on an unknown name or preset (listing the valid ones) or a bad keyword.
    """
    if name not in TRANSLATORS:
        raise ValueError(f"expected a translator name in {sorted(TRANSLATORS)}, got {name!r}")
    cls = TRANSLATORS[name]
    if preset not in cls.presets:
        raise ValueError(f"expected preset in {sorted(cls.presets)} for {name}, got {preset!r}")
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"expected keywords of {name} among {valid}, got {unknown}")
    return cls(**{**cls.presets[preset], **kwargs})
