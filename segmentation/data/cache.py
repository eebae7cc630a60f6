"""A prepared dataset decoded once into compact files at the working size, reused by later runs.

Decoding thousands of PNGs and holding them as ``float32`` costs memory in proportion to their number; the cache
stores each image once as ``uint16`` grey levels at the working size (2 bytes a pixel, 128 KB at 256 px) and each
mask as one bit per class (1 byte a pixel), in raw files read row by row by :class:`runtime.store.DiskArray`.

Where it lives: ``$CXR_CACHE`` or ``~/.cache/cxr-transfer``, one folder per (dataset folder, size, classes,
masks), so the dataset folder itself is never written. The folder's ``manifest.json`` records a fingerprint of the
source (every file's name, size and modification time, and ``dataset.json``); a changed source or size rebuilds
the cache, an unchanged one is reused. A build writes into ``<folder>.partial`` with a progress record after each
chunk: a killed build resumes from its last whole chunk, and readers only ever see a finished folder (renamed into
place at the end). A lock file serialises builders of the same folder (e.g. the ranks of a torchrun job).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from runtime.io import atomic_write_json
from runtime.logging import progress
from runtime.store import DiskArray, encode_bits, encode_grey

FORMAT_VERSION = 1
CHUNK = 256
"""Images decoded between two progress records of a build."""
PROGRESS_FROM = 500
"""A build of fewer images (a second or so) shows no progress bar."""


def cache_root() -> Path:
    """The folder holding every dataset cache: ``$CXR_CACHE``, else ``~/.cache/cxr-transfer``."""
    env = os.environ.get("CXR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cxr-transfer"


@dataclass(frozen=True)
class Source:
    """What a cache is built from: the files of a prepared folder, in id order, and how to decode them."""

    root: Path
    ids: list[str]
    image_files: list[Path]
    mask_files: dict[str, list[Path]]  # organ -> one file per id
    groups: tuple[tuple[str, ...], ...]  # organs united into each class channel
    classes: tuple[str, ...]
    size: tuple[int, int] | None  # None: the stored size (all images must share it)

    def fingerprint(self) -> str:
        """A hash of every input file's name, size and modification time, the metadata, size and classes."""
        digest = hashlib.sha256()
        digest.update(json.dumps({"version": FORMAT_VERSION, "root": str(self.root.resolve()),
                                  "size": self.size, "classes": self.classes, "groups": self.groups,
                                  "masks": sorted(self.mask_files)}).encode())
        meta = self.root / "dataset.json"
        if meta.is_file():
            digest.update(meta.read_bytes())
        for paths in [self.image_files, *[self.mask_files[o] for o in sorted(self.mask_files)]]:
            for path in paths:
                stat = path.stat()
                digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def slot(self) -> str:
        """The cache folder's name: one per (folder, size, classes, masks), whatever the files hold."""
        key = json.dumps({"root": str(self.root.resolve()), "size": self.size, "classes": self.classes,
                          "masks": bool(self.mask_files)})
        return f"{self.root.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Cached:
    """A finished cache: its arrays and what the manifest records."""

    folder: Path
    images: DiskArray
    masks: DiskArray | None
    ids: list[str]
    stored_sizes: list[tuple[int, int]]
    built: bool  # True when this call decoded the images (False: reused)


Decode = Callable[[int], tuple[np.ndarray, np.ndarray | None, tuple[int, int]]]
"""``decode(i)`` -> (image ``float32 [H, W]`` at the working size, masks ``[C, H, W]`` or None, stored size)."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _open_finished(folder: Path, fingerprint: str) -> Cached | None:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("fingerprint") != fingerprint or manifest.get("version") != FORMAT_VERSION:
        return None
    return _arrays(folder, manifest, built=False)


def _arrays(folder: Path, manifest: dict[str, Any], built: bool) -> Cached:
    n, (h, w) = manifest["rows"], manifest["size"]
    images = DiskArray(folder / "images.u16", n, 1, h, w, "grey")
    masks = DiskArray(folder / "masks.bits", n, manifest["channels"], h, w, "bits") if manifest["channels"] else None
    return Cached(folder, images, masks, list(manifest["ids"]), [tuple(s) for s in manifest["stored_sizes"]], built)


def open_cache(source: Source, decode: Decode, size_of_first: Callable[[], tuple[int, int]],
               show_progress: bool = True) -> Cached:
    """Return the finished cache of ``source``, building (or finishing) it first when needed.

    Args:
        source: the files and settings (:class:`Source`).
        decode: reads image ``i`` and its masks at the working size (the dataset loader's decoder).
        size_of_first: the working size when ``source.size`` is None (the first image's stored size).
        show_progress: a progress bar while decoding.
    """
    root = cache_root()
    folder = root / source.slot()
    fingerprint = source.fingerprint()
    found = _open_finished(folder, fingerprint)
    if found is not None:
        return found
    with _locked(root / f"{source.slot()}.lock"):
        found = _open_finished(folder, fingerprint)  # another process may have built it meanwhile
        if found is not None:
            return found
        return _build(source, folder, fingerprint, decode, size_of_first, show_progress)


def _build(source: Source, folder: Path, fingerprint: str, decode: Decode,
           size_of_first: Callable[[], tuple[int, int]], show_progress: bool) -> Cached:
    partial = folder.with_name(folder.name + ".partial")
    record_path = partial / "progress.json"
    size = source.size or size_of_first()
    channels = len(source.classes) if source.mask_files else 0
    n = len(source.ids)
    done, stored_sizes = 0, []
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("fingerprint") == fingerprint and list(record.get("size", [])) == list(size):
            done, stored_sizes = int(record["done"]), [tuple(s) for s in record["stored_sizes"]]
    if done == 0 and partial.exists():
        shutil.rmtree(partial)  # a build of other files, or one that recorded nothing: start clean
    partial.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = partial / "images.u16", partial / "masks.bits"
    mask_bytes = (1 if channels <= 8 else 2) * size[0] * size[1]
    # PNG decoding releases the GIL: a few threads read several files at once.
    with open(image_path, "ab+") as images_file, open(mask_path, "ab+") as masks_file, \
            ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        # keep exactly the recorded rows: a kill between writing a chunk and recording it leaves a tail
        images_file.truncate(done * 2 * size[0] * size[1])
        masks_file.truncate(done * mask_bytes if channels else 0)
        images_file.seek(0, os.SEEK_END)
        masks_file.seek(0, os.SEEK_END)
        bar = progress(total=n, initial=done, desc=f"cache {source.root.name} {size[0]}x{size[1]}",
                       enabled=show_progress and n - done >= PROGRESS_FROM)
        for begin in range(done, n, CHUNK):
            end = min(n, begin + CHUNK)
            decoded = list(pool.map(decode, range(begin, end)))
            for i, (image, _, stored) in zip(range(begin, end), decoded):
                if tuple(image.shape) != tuple(size):
                    raise ValueError(f"{source.image_files[i]}: decoded to {tuple(image.shape)}, expected {size}; "
                                     "pass a size to resize all images to one size")
                stored_sizes.append(tuple(stored))
            images_file.write(encode_grey(np.stack([d[0] for d in decoded])).tobytes())
            if channels:
                masks_file.write(encode_bits(np.stack([d[1] for d in decoded])).tobytes())
            for handle in (images_file, masks_file):
                handle.flush()
                os.fsync(handle.fileno())
            atomic_write_json(record_path, {"fingerprint": fingerprint, "size": list(size), "done": end,
                                            "stored_sizes": [list(s) for s in stored_sizes]})
            bar.update(end - begin)
        bar.close()
    manifest = {"version": FORMAT_VERSION, "fingerprint": fingerprint, "root": str(source.root.resolve()),
                "rows": n, "size": list(size), "channels": channels, "classes": list(source.classes),
                "ids": source.ids, "stored_sizes": [list(s) for s in stored_sizes]}
    atomic_write_json(partial / "manifest.json", manifest)
    record_path.unlink()
    if not channels:
        mask_path.unlink()
    if folder.exists():
        shutil.rmtree(folder)  # the cache of an older version of the files
    os.replace(partial, folder)
    return _arrays(folder, manifest, built=True)


def read_all(array: DiskArray, batch: int = 256) -> "np.ndarray":
    """Every row of ``array`` as one ``float32`` numpy array (the in-memory fast case)."""
    out = np.empty(tuple(array.shape), dtype=np.float32)
    for begin in range(0, len(array), batch):
        out[begin:begin + batch] = array[slice(begin, begin + batch)].numpy()
    return out


def cache_bytes(n: int, size: Sequence[int], channels: int) -> int:
    """Bytes on disk of a cache of ``n`` images at ``size`` with ``channels`` mask classes."""
    pixels = int(size[0]) * int(size[1])
    return n * pixels * (2 + (0 if not channels else 1 if channels <= 8 else 2))
