"""Checkpoints written atomically, found again on resume, rotated to the newest few."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterable

import torch

from runtime.io import atomic_save_torch

_STEP = re.compile(r"(\d+)")
_UNSAFE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a checkpoint dict atomically (an interrupted save leaves the previous file intact)."""
    return atomic_save_torch(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict written by :func:`save_checkpoint`, onto the CPU, as data only.

    The file is read with ``weights_only=True``: tensors, numbers, strings and containers load; a pickle that asks
    to import or call anything is refused before any of it runs (a model file received from someone else cannot
    execute code). Everything lands on the CPU: the caller moves weights with ``load_state_dict`` into a model on
    its device (optimisers cast their state to their parameters' device), and RNG states, which
    ``torch.set_rng_state`` accepts only as CPU bytes, stay where they must be.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable checkpoint (truncated, not a torch file, or not data only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSAFE.search(str(err))
        what = f"it asks to run {found.group(1)}" if found else "it holds more than tensors and plain values"
        raise ValueError(f"refusing to load {path}: {what}, so it is not a cxr-transfer file; nothing in it was run. "
                         "Use a file written by cxr-transfer") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"checkpoint {path} is unreadable ({type(err).__name__}: {_first_line(err)}); "
                         "it is truncated or not a torch file: delete it or pass another file") from err
    if not isinstance(state, dict):
        raise ValueError(f"expected a dict in checkpoint {path}, got {type(state).__name__}")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].strip() if text else type(err).__name__


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


def _step_key(path: Path) -> tuple[int, str]:
    """The last number in a checkpoint's name (``iter_0000250.pt``, ``step_00000010.suspect.pt``), then the name."""
    numbers = _STEP.findall(path.name)
    return (int(numbers[-1]) if numbers else -1, path.name)


def keep_latest(folder: str | os.PathLike, pattern: str, keep: int, also_keep: Iterable[Path] = ()) -> list[Path]:
    """Delete the checkpoints matching ``pattern`` in ``folder`` but the ``keep`` with the largest step numbers.

    The checkpoint rotation of every training loop (transfer, translation). Hidden files (an atomic write in progress)
    are left alone.

    Args:
        folder: the checkpoint folder (missing: nothing to do).
        pattern: glob of the rotated files, e.g. ``"iter_*.pt"``.
        keep: how many of the newest to keep (0: none but ``also_keep``).
        also_keep: files kept whatever their step (e.g. the newest healthy checkpoint, for a rollback).

    Returns:
        The kept files, newest first.

    Raises:
        ValueError: on ``keep < 0``.
    """
    if keep < 0:
        raise ValueError(f"expected keep >= 0, got {keep}")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted((p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")), key=_step_key,
                   reverse=True)
    kept = set(files[:keep]) | {Path(p) for p in also_keep}
    for path in files:
        if path not in kept:
            path.unlink(missing_ok=True)
    return [p for p in files if p in kept]
