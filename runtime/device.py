"""Device and mixed-precision selection. Library code takes the device from its inputs."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device for ``name`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    Raises:
        ValueError: if a CUDA device is asked for and none is available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"expected an available CUDA device for --device {name}, got none; use --device cpu")
    return device


def autocast(device: torch.device, enabled: bool = True) -> ContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere (CPU bf16 is slower than fp32 here)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
