"""Device and mixed-precision selection. Library code takes the device from its inputs."""

from __future__ import annotations

import contextlib
import copy
from typing import ContextManager

import torch
from torch import nn


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


def use_channels_last(device: torch.device, enabled: bool = True) -> bool:
    """Whether loops put their networks in channels-last memory format: on CUDA when ``enabled`` (cuDNN's NHWC
    convolutions with bf16), never on the CPU (where the NCHW kernels of these small networks are as fast)."""
    return enabled and device.type == "cuda"


def configure_backends(device: torch.device) -> None:
    """Backend settings for training on ``device``: on CUDA ``cudnn.benchmark`` (each convolution shape times its
    algorithms once and keeps the fastest; GPU runs are not bitwise repeatable anyway); nothing elsewhere."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_networks(*modules: nn.Module) -> None:
    """``torch.compile`` each module in place (``nn.Module.compile``: weights, ``state_dict`` keys and checkpoints
    stay those of the plain module).

    A module with a forward of its own (a segmenter) is compiled whole; a translator, whose interface is methods
    (``a_to_b``, ``generator_losses``...), has each of its child networks with parameters compiled instead (CycleGAN:
    G_AB, G_BA, D_A, D_B).
    """
    for module in modules:
        if type(module).forward is not nn.Module.forward:
            module.compile()
            continue
        for child in module.children():
            if any(True for _ in child.parameters()):
                child.compile()


def plain_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that runs eagerly: no compiled forward is carried over (one that was would call
    the original module's weights on some torch versions)."""
    copied = copy.deepcopy(module)
    for sub in copied.modules():
        if getattr(sub, "_compiled_call_impl", None) is not None:
            sub._compiled_call_impl = None
    return copied
