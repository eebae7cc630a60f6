"""Seeding and RNG state capture, so that a resumed run continues exactly where it stopped.

The captured state holds only tensors, ints, strings and tuples, so a checkpoint that carries it loads with
``torch.load(..., weights_only=True)``; restoring takes the state from any device (a checkpoint loaded with
``map_location="cuda"`` would otherwise hand GPU tensors to ``torch.set_rng_state``, which accepts CPU bytes only).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    Raises:
        ValueError: if ``seed`` is negative.
    """
    if seed < 0:
        raise ValueError(f"expected seed >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Return the state of every global RNG (Python, NumPy, torch CPU and CUDA) in weights-only-loadable types."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": (int(version), torch.tensor(internal, dtype=torch.int64), gauss),
        "numpy": (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state` (its tensors may live on any device)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in torch.as_tensor(internal).cpu().tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, torch.as_tensor(keys).cpu().numpy().astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    torch.set_rng_state(cpu_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = [cpu_bytes(s) for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
        else:  # another number of GPUs than the run that saved it: restore the ones both have
            for index, s in enumerate(saved[:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, index)


def cpu_bytes(state: torch.Tensor) -> torch.Tensor:
    """An RNG state as the CPU ``uint8`` tensor that ``set_rng_state`` and ``Generator.set_state`` accept."""
    return state.detach().to("cpu", torch.uint8)


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    """``generator.set_state(state)`` for a generator on any device, from a state tensor on any device."""
    generator.set_state(cpu_bytes(state))
