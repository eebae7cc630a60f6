"""Helpers that let training loops run unchanged under ``torchrun`` with DDP.

Models are built, then wrapped (``DistributedDataParallel``) by the caller; loops use a sampler per
rank; only rank 0 logs and writes checkpoints. Nothing here holds global state of its own: the
process group is torch's.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from runtime.device import resolve_device

T = TypeVar("T")


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank() if _initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if _initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the only rank that logs and saves."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if _initialized():
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside a DDP / DataParallel / ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def rank_indices(n: int, generator: torch.Generator | None = None, shuffle: bool = True) -> torch.Tensor:
    """Indices of ``n`` items that belong to this rank (the tensor-dataset analogue of DistributedSampler).

    Every rank draws the same permutation from ``generator`` and keeps every ``world_size``-th item,
    padding by wrap-around so that all ranks take the same number of steps.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    world, rank = get_world_size(), get_rank()
    per_rank = -(-n // world)
    padded = torch.cat([order, order[: per_rank * world - n]]) if per_rank * world > n else order
    return padded[rank::world]


def all_reduce_gradients(parameters) -> None:  # noqa: ANN001 - any iterable of parameters
    """Average the ``.grad`` of ``parameters`` over all ranks (no-op when not distributed).

    DistributedDataParallel synchronises only gradients produced through the wrapper's ``forward``; translators
    are trained through ``generator_losses`` / ``discriminator_losses`` and the transfer steps call several
    modules, so their loops average gradients explicitly, between ``backward`` and the optimizer step.
    """
    if not _initialized() or get_world_size() == 1:
        return
    world = get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (``value`` itself, untouched, when not distributed).

    A loss normalised by a count of its own batch (e.g. confident pixels) must divide by the count's mean over the
    ranks, so that the ranks' averaged gradients are those of the global batch; not a differentiable all-reduce, for
    normalisers only.
    """
    if not _initialized() or get_world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / get_world_size()


def gather_objects(value: object) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` when not distributed.

    For the small per-rank state a checkpoint must hold to resume each rank exactly (its data position, its RNG).
    """
    if not _initialized() or get_world_size() == 1:
        return [value]
    out: list = [None] * get_world_size()
    dist.all_gather_object(out, value)
    return out


def rank_seed(seed: int) -> int:
    """A per-rank seed for data order: ``seed`` itself on rank 0 (single-process runs are unchanged)."""
    return seed + 1_000_003 * get_rank()


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: str = "auto") -> torch.device:
    """This process's device: under ``torchrun`` ``cuda:LOCAL_RANK`` when CUDA is available and ``device`` allows it
    ("auto" or "cuda"), the CPU otherwise; outside torchrun ``resolve_device(device)``.

    Raises:
        ValueError: for a device name that names one GPU (``cuda:1``) under torchrun: each rank takes its own.
    """
    if not launched_by_torchrun():
        return resolve_device(device)
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"expected --device auto, cuda or cpu under torchrun (each rank takes cuda:LOCAL_RANK), got "
                         f"{device!r}")
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group ``torchrun`` describes and return this rank's device; outside torchrun, the device.

    NCCL with ``cuda:LOCAL_RANK`` when CUDA is available and ``device`` allows it ("auto" or "cuda"), Gloo on the
    CPU otherwise (:func:`local_device`). Idempotent: a second call reuses the group.

    Raises:
        ValueError: for a device name that names one GPU (``cuda:1``) under torchrun: each rank takes its own.
    """
    local = local_device(device)
    if not launched_by_torchrun():
        return local
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if local.type == "cuda" else "gloo")
    if local.type == "cuda":
        torch.cuda.set_device(local)
    return local


def close_distributed() -> None:
    """Wait for every rank, then leave the process group (no-op when there is none)."""
    if _initialized():
        dist.barrier()
        dist.destroy_process_group()


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone and its (picklable) result handed to every rank; ``fn()`` outside a group.

    For what one process does for all: write a file, probe a folder, decide from a file that may exist (a cache, a
    finished result) so that every rank takes the same branch. An exception on rank 0 is raised on every rank (the
    others get a ``RuntimeError`` with its first line), so all ranks stop together instead of waiting for rank 0 at
    the next collective.
    """
    if not _initialized() or get_world_size() == 1:
        return fn()
    outcome: list[object] = [None]
    error: BaseException | None = None
    if is_main_process():
        try:
            outcome[0] = ("ok", fn())
        except Exception as err:  # noqa: BLE001 - handed to the other ranks, then raised here unchanged
            error = err
            text = str(err).strip()
            outcome[0] = ("error", text.splitlines()[0] if text else type(err).__name__)
    dist.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(value)
    return value


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` inside a process group of several ranks, else ``model`` itself.

    The model must already be on this rank's device (:func:`local_device`). DDP broadcasts rank 0's weights and
    buffers when it wraps, averages gradients during ``backward`` and broadcasts rank 0's buffers (BatchNorm
    statistics) before every training forward, so every rank starts and steps identically; :func:`sync_from_main`
    afterwards makes the buffers, last updated by each rank's own batch, rank 0's again.
    """
    if not _initialized() or get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_from_main(model: nn.Module, buffers_only: bool = False) -> nn.Module:
    """Copy rank 0's parameters and buffers (``buffers_only``: its buffers, e.g. BatchNorm statistics of a loop that
    averages gradients itself) into ``model`` on every rank; a no-op outside a group. Returns ``model``."""
    if _initialized() and get_world_size() > 1:
        net = unwrap(model)
        with torch.no_grad():
            for tensor in [*([] if buffers_only else net.parameters()), *net.buffers()]:
                dist.broadcast(tensor.data, src=0)
    return model


@contextlib.contextmanager
def frozen(parameters) -> Iterator[None]:  # noqa: ANN001 - any iterable of parameters
    """Temporarily set ``requires_grad=False`` on ``parameters`` (restored afterwards, even on error), e.g. the
    discriminators during a generator step."""
    params = list(parameters)
    previous = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, previous):
            p.requires_grad_(flag)
