"""Checkpoints written atomically, found again on resume."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from runtime.io import atomic_save_torch

_STEP = re.compile(r"(\d+)")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a checkpoint dict atomically (an interrupted save leaves the previous file intact)."""
    return atomic_save_torch(state, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable checkpoint (truncated, or not a torch file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the run folder or drop --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"checkpoint {path} is unreadable ({err}); delete it to restart from the previous one") from err
    if not isinstance(state, dict):
        raise ValueError(f"expected a dict in checkpoint {path}, got {type(state).__name__}")
    return state


def latest_checkpoint(folder: str | os.PathLike, pattern: str = "*.pt") -> Path | None:
    """Return the checkpoint in ``folder`` with the largest number in its name (or the newest), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    if not files:
        return None

    def key(p: Path) -> tuple[int, float]:
        numbers = _STEP.findall(p.stem)
        return (int(numbers[-1]) if numbers else -1, p.stat().st_mtime)

    return max(files, key=key)
