"""Arrays of images kept on disk and read a few rows at a time, so memory does not grow with their number.

A :class:`DiskArray` is a raw file of ``N`` fixed-size integer rows (``uint16`` grey levels, or ``uint8`` /
``uint16`` bit fields holding one binary channel per bit) and reads the rows a batch needs with ``os.pread``:
no memory map, so nothing of the file counts towards the process's resident memory (the page cache is the
kernel's). Indexing returns ``float32`` tensors, as indexing an in-memory tensor would, which lets every loop
draw its batches with ``images[index]`` whatever holds the images. It pickles as its path and index, so
``torch.utils.data`` worker processes reopen the file themselves.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

KINDS = ("grey", "bits")


class DiskArray:
    """``N`` rows of ``[channels, H, W]`` float values stored compactly in one raw file.

    Args:
        path: the raw file (row-major, ``rows * row_bytes`` bytes; written by the caller).
        rows: number of rows stored in the file.
        channels, height, width: shape of one row as returned (``[channels, H, W]``).
        kind: ``"grey"``: one ``uint16`` per pixel scaled to ``[0, 1]`` by ``/65535`` (``channels`` must be 1);
            ``"bits"``: one unsigned integer per pixel whose bit ``c`` is channel ``c`` (values 0 / 1).
        index: the rows this array shows, in order (a view); None shows all.
        scale, shift: values are returned as ``value * scale + shift`` (e.g. ``2, -1`` for ``[-1, 1]`` images).

    Raises:
        ValueError: for an unknown kind, a non-positive shape, or a file of the wrong size.
    """

    def __init__(self, path: str | os.PathLike, rows: int, channels: int, height: int, width: int,
                 kind: str = "grey", index: Sequence[int] | np.ndarray | None = None, scale: float = 1.0,
                 shift: float = 0.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"expected kind in {KINDS}, got {kind!r}")
        if min(channels, height, width) < 1 or rows < 0:
            raise ValueError(f"expected positive row shape and rows >= 0, got {rows} x {(channels, height, width)}")
        if kind == "grey" and channels != 1:
            raise ValueError(f"expected channels == 1 for grey rows, got {channels}")
        if kind == "bits" and channels > 16:
            raise ValueError(f"expected at most 16 channels in a bit field, got {channels}")
        self.path = Path(path)
        self.rows, self.channels, self.height, self.width, self.kind = rows, channels, height, width, kind
        self.dtype_stored = np.uint16 if kind == "grey" or channels > 8 else np.uint8
        self.row_bytes = height * width * np.dtype(self.dtype_stored).itemsize
        actual = self.path.stat().st_size if self.path.is_file() else -1
        if actual != rows * self.row_bytes:
            raise ValueError(f"{self.path}: expected {rows * self.row_bytes} bytes ({rows} rows), got {actual}; "
                             "the cache is damaged: delete it and it is rebuilt")
        self.index = np.arange(rows, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        self.scale, self.shift = float(scale), float(shift)
        self._fd: int | None = None
        self._pid = -1

    # ------------------------------------------------------------------------------------ tensor-like surface
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), self.channels, self.height, self.width))

    @property
    def ndim(self) -> int:
        return 4

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: int | slice | Sequence[int] | Tensor | np.ndarray) -> Tensor:
        """Rows as a ``float32`` tensor: ``[C, H, W]`` for an int, ``[k, C, H, W]`` otherwise (bool masks too)."""
        if isinstance(key, (int, np.integer)):
            return self._read(self.index[[int(key)]])[0]
        return self._read(self.index[_positions(key, len(self.index))])

    def take(self, key: slice | Sequence[int] | Tensor | np.ndarray) -> DiskArray:
        """A view of some rows, reading nothing."""
        return DiskArray(self.path, self.rows, self.channels, self.height, self.width, self.kind,
                         self.index[_positions(key, len(self.index))], self.scale, self.shift)

    def affine(self, scale: float, shift: float) -> DiskArray:
        """A view returning ``self[i] * scale + shift``, reading nothing."""
        return DiskArray(self.path, self.rows, self.channels, self.height, self.width, self.kind, self.index,
                         self.scale * scale, self.shift * scale + shift)

    def identity(self) -> str:
        """A short hash of what this array shows (file, its size and time, rows, value map), reading no row."""
        stat = self.path.stat()
        digest = hashlib.sha256(f"{self.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.scale}\0"
                                f"{self.shift}\0".encode())
        digest.update(self.index.tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------------------------ reading
    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _read(self, rows: np.ndarray) -> Tensor:
        fd = self._file()
        out = np.empty((len(rows), self.height * self.width), dtype=self.dtype_stored)
        for k, row in enumerate(rows.tolist()):
            data = os.pread(fd, self.row_bytes, row * self.row_bytes)
            if len(data) != self.row_bytes:
                raise OSError(f"{self.path}: short read at row {row}; the cache is damaged: delete it")
            out[k] = np.frombuffer(data, dtype=self.dtype_stored)
        out = out.reshape(len(rows), self.height, self.width)
        if self.kind == "grey":
            values = torch.from_numpy(out.astype(np.float32) / np.float32(65535.0))[:, None]
        else:
            bits = torch.from_numpy(out.astype(np.int32))[:, None]
            shifts = torch.arange(self.channels, dtype=torch.int32)[None, :, None, None]
            values = ((bits >> shifts) & 1).to(torch.float32)
        if self.scale != 1.0 or self.shift != 0.0:
            values = values * self.scale + self.shift
        return values

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"], state["_pid"] = None, -1
        return state

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"DiskArray({self.path.name}, {tuple(self.shape)}, {self.kind})"


def _positions(key: slice | Sequence[int] | Tensor | np.ndarray, n: int) -> np.ndarray:
    """Integer positions in ``range(n)`` selected by a slice, integer sequence, or integer / bool tensor."""
    if isinstance(key, slice):
        return np.arange(n, dtype=np.int64)[key]
    if isinstance(key, Tensor):
        key = key.detach().cpu().numpy()
    array = np.asarray(key)
    if array.dtype == bool:
        if array.shape != (n,):
            raise IndexError(f"expected a bool mask of length {n}, got shape {array.shape}")
        return np.flatnonzero(array)
    array = array.astype(np.int64).reshape(-1)
    if array.size and (array.min() < -n or array.max() >= n):
        raise IndexError(f"index out of range for {n} rows: {int(array.min())}..{int(array.max())}")
    return np.where(array < 0, array + n, array)


def encode_grey(images: Tensor | np.ndarray) -> np.ndarray:
    """``float`` grey levels in ``[0, 1]`` (``[k, 1, H, W]`` or ``[k, H, W]``) as ``uint16`` rows for a grey file."""
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    array = array.reshape(array.shape[0], array.shape[-2], array.shape[-1]).astype(np.float64)
    return np.round(np.clip(array, 0.0, 1.0) * 65535.0).astype(np.uint16)


def encode_bits(masks: Tensor | np.ndarray) -> np.ndarray:
    """Binary masks ``[k, C, H, W]`` as one integer per pixel (bit ``c`` = channel ``c``) for a bits file."""
    array = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    channels = array.shape[1]
    dtype = np.uint8 if channels <= 8 else np.uint16
    out = np.zeros((array.shape[0], array.shape[2], array.shape[3]), dtype=dtype)
    for c in range(channels):
        out |= ((array[:, c] > 0.5).astype(dtype) << c).astype(dtype)
    return out


def is_stored(array: object) -> bool:
    """True for a :class:`DiskArray` (read per batch), False for an in-memory tensor."""
    return isinstance(array, DiskArray)


def take_rows(array: Tensor | DiskArray, key: slice | Sequence[int] | Tensor) -> Tensor | DiskArray:
    """``array[key]`` for a tensor, a view (nothing read) for a :class:`DiskArray`."""
    if isinstance(array, DiskArray):
        return array.take(key)
    if isinstance(key, (list, tuple)):
        key = torch.as_tensor(key, dtype=torch.long)
    return array[key.to(array.device) if isinstance(key, Tensor) else key]


def affine(array: Tensor | DiskArray, scale: float, shift: float) -> Tensor | DiskArray:
    """``array * scale + shift``: computed for a tensor, a view (nothing read) for a :class:`DiskArray`."""
    if isinstance(array, DiskArray):
        return array.affine(scale, shift)
    return array * scale + shift


def on_device(array: Tensor | DiskArray, device: torch.device | str) -> Tensor | DiskArray:
    """A tensor moved to ``device``; a :class:`DiskArray` as it is (its batches are moved when read)."""
    return array if isinstance(array, DiskArray) else array.to(device)


def head_rows(arrays: Sequence[Tensor | DiskArray], n: int) -> Tensor:
    """The first ``n`` rows of the arrays laid end to end, as one tensor (``torch.cat(arrays)[:n]``, reading only
    those rows from disk arrays)."""
    parts, left = [], n
    for array in arrays:
        if left <= 0:
            break
        rows = array[slice(0, min(left, len(array)))]
        parts.append(rows)
        left -= len(rows)
    return torch.cat(parts) if parts else arrays[0][slice(0, 0)]
