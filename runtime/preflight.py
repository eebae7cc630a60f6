"""Checks run before the first training step, so a refused run fails in a second and leaves nothing behind.

Each raises ``ValueError`` with one line that names the path or option and the fix; none of them creates anything.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path


def check_writable(path: str | os.PathLike, option: str) -> None:
    """Refuse an output folder that cannot be created or written, without creating it.

    The nearest existing ancestor of ``path`` must be a folder where a file can be created (probed with a temporary
    file, which also catches read-only mounts and immutable folders that permission bits do not show, e.g. for root).

    Raises:
        ValueError: naming ``option``, the path and the reason.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"cannot write {option} {path}: it is a file, not a folder; choose another {option}")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot write {option} {path}: {probe} is a file, not a folder; choose another {option}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cxr-write-check.", dir=probe)
    except OSError as err:
        raise ValueError(f"cannot write {option} {path}: {probe} is not writable ({err.strerror}); choose another "
                         f"{option} or fix its permissions") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None where unknown."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse a load that cannot fit in memory (``nbytes`` above what is available).

    Raises:
        ValueError: "``what`` needs X GB, Y GB available; ``fix``".
    """
    free = available_memory()
    if free is not None and nbytes > free:
        raise ValueError(f"{what} needs {nbytes / 1e9:.1f} GB of memory, {free / 1e9:.1f} GB are available; {fix}")


def check_disk(nbytes: float, folder: str | os.PathLike, what: str, fix: str) -> None:
    """Refuse to write ``nbytes`` into ``folder`` (or its nearest existing parent) when the disk has less free.

    Raises:
        ValueError: "``what`` needs X GB of disk in F, Y GB are free; ``fix``".
    """
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(path).free
        if nbytes > free:
            raise ValueError(f"{what} needs {nbytes / 1e9:.1f} GB of disk in {path}, {free / 1e9:.1f} GB are free; "
                             f"{fix}")


def check_divisible(size: int, divisor: int, option: str, model: str) -> None:
    """Refuse an image side that the model cannot take (its input must be a multiple of ``divisor``).

    Raises:
        ValueError: naming the option, the model and the two nearest valid sizes.
    """
    if divisor > 1 and size % divisor:
        low, high = max(divisor, size // divisor * divisor), math.ceil(size / divisor) * divisor
        raise ValueError(f"expected {option} to be a multiple of {divisor} for {model}, got {size}; use {low} or "
                         f"{high}" if low != high else f"expected {option} to be a multiple of {divisor} for {model}, "
                         f"got {size}; use {high}")


def dataset_bytes(n_images: int, size: int, channels: int) -> int:
    """Float32 bytes of ``n_images`` square images of side ``size`` with ``channels`` planes each (image + masks)."""
    return int(n_images) * int(size) * int(size) * 4 * int(channels)


def count_images(folder: str | os.PathLike) -> int:
    """Number of files in ``folder/images`` (a prepared dataset), 0 when absent."""
    images = Path(folder) / "images"
    return sum(1 for p in images.iterdir() if p.is_file()) if images.is_dir() else 0
