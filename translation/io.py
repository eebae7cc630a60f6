"""Save and load a trained translator as one self-describing file.

The file (written atomically with ``torch.save``) holds a format tag, the translator's name and constructor config,
its weights (without training-only state such as image pools), and user metadata. Metadata should describe how to
reuse the translator on new images: ``image_size``, ``normalization`` (e.g. ``"x * 2 - 1 of [0, 1] images"``),
``domains`` (e.g. ``{"a": "jsrt", "b": "montgomery"}``) and ``checksums`` of the training data. It must be JSON-able.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from runtime import atomic_save_torch, unwrap
from translation.base import Translator
from translation.registry import TRANSLATORS

FORMAT = "cxr-transfer-translator"
VERSION = 1
METADATA_KEYS = ("image_size", "normalization", "domains", "checksums")
_TRAINING_ONLY = "._extra_state"


def save_translator(translator: Translator, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``translator`` and ``metadata`` to ``path`` atomically.

    Args:
        translator: a translator, possibly wrapped by DDP or ``torch.compile``.
        path: the file to write (parent folders are created).
        metadata: a JSON-able dict; :data:`METADATA_KEYS` are the keys reuse relies on.

    Returns:
        The path written.

    Raises:
        TypeError: if ``translator`` is not a :class:`Translator`.
        ValueError: if ``metadata`` is not a JSON-able dict.
    """
    translator = unwrap(translator)
    if not isinstance(translator, Translator):
        raise TypeError(f"expected a Translator, got {type(translator).__name__}")
    if not isinstance(metadata, dict):
        raise ValueError(f"expected metadata as a dict, got {type(metadata).__name__}")
    try:
        metadata = json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"expected JSON-able metadata, got {err}; convert tensors and paths to lists and strings"
        ) from None
    state = {
        k: v.detach().cpu().clone()
        for k, v in translator.state_dict().items()
        if not k.endswith(_TRAINING_ONLY) and isinstance(v, torch.Tensor)
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "name": translator.name,
        "config": translator.config,
        "state_dict": state,
        "metadata": metadata,
    }
    return atomic_save_torch(payload, path)


def load_translator(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Translator, dict[str, Any]]:
    """Load a file written by :func:`save_translator`.

    Args:
        path: the translator file.
        map_location: the device to load onto ("cpu", "cuda", a ``torch.device``).

    Returns:
        ``(translator, metadata)``; the translator is on ``map_location`` and in eval mode.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable translator file, names an unknown translator, or its weights do not
            fit its config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"translator file {path} does not exist; check the path or train one first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # data only: no code runs
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ValueError(
            f"translator file {path} is unreadable ({type(err).__name__}: {reason}); it is truncated or not a "
            "translator file: save it again with translation.save_translator"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"expected a translator file with format {FORMAT!r} in {path}, got "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}; "
            "save it with translation.save_translator"
        )
    if payload.get("version") != VERSION:
        raise ValueError(f"expected translator file version {VERSION} in {path}, got {payload.get('version')!r}")
    name = payload.get("name")
    if name not in TRANSLATORS:
        raise ValueError(f"expected a translator name in {sorted(TRANSLATORS)} in {path}, got {name!r}")
    try:
        translator = TRANSLATORS[name](**payload["config"])
        missing, unexpected = translator.load_state_dict(payload["state_dict"], strict=False)
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"translator file {path} does not fit its config ({err}); save it again") from err
    missing = [k for k in missing if not k.endswith(_TRAINING_ONLY)]
    if missing or unexpected:
        raise ValueError(
            f"translator file {path} does not fit its {name} config: missing {missing}, unexpected {unexpected}; "
            "save it again with translation.save_translator"
        )
    translator.to(torch.device(map_location) if isinstance(map_location, str) else map_location)
    translator.eval()
    return translator, payload["metadata"]
