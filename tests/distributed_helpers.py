"""Helpers of the multi-process (gloo) tests: a free local port, and running a worker on two processes."""

from __future__ import annotations

import socket
from typing import Any, Callable

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker: Callable[..., None], *args: Any, world: int = 2) -> None:
    """Run ``worker(rank, world, port, *args)`` on ``world`` processes and wait for all of them."""
    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)
