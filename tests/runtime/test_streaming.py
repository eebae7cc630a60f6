"""Disk arrays and batch streams: rank shares under torchrun (gloo) and memory that does not grow with N."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed_helpers import spawn

from runtime.loader import ReadAhead, stream_batches
from runtime.store import DiskArray, encode_bits, encode_grey

REPO = Path(__file__).resolve().parents[2]


class RecordingArray(DiskArray):
    """A disk array that remembers which rows it read."""

    read: list[int] = []

    def _read(self, rows):
        RecordingArray.read.extend(rows.tolist())
        return super()._read(rows)


def _write(path: Path, n: int, size: int = 4) -> Path:
    """Row i holds the grey level i / 65535 everywhere."""
    path.write_bytes(np.repeat(np.arange(n, dtype=np.uint16), size * size).tobytes())
    return path


def test_disk_array_indexing_matches_a_tensor(tmp_path):
    images = torch.rand(9, 1, 5, 4, generator=torch.Generator().manual_seed(1))
    masks = (torch.rand(9, 3, 5, 4) > 0.5).float()
    (tmp_path / "i").write_bytes(encode_grey(images).tobytes())
    (tmp_path / "m").write_bytes(encode_bits(masks).tobytes())
    disk = DiskArray(tmp_path / "i", 9, 1, 5, 4)
    bits = DiskArray(tmp_path / "m", 9, 3, 5, 4, kind="bits")
    quantised = torch.round(images * 65535) / 65535
    for key in (3, slice(2, 7, 2), [8, 0, 8], torch.tensor([4, 1]), torch.arange(9) % 2 == 0, -1):
        torch.testing.assert_close(disk[key], quantised[key], rtol=0, atol=1e-7)
        assert torch.equal(bits[key], masks[key])
    view = disk.take([5, 6, 7]).affine(2, -1)
    torch.testing.assert_close(view[1:], quantised[6:8] * 2 - 1, rtol=0, atol=1e-6)
    assert view.shape == (3, 1, 5, 4) and len(view) == 3
    with pytest.raises(IndexError, match="out of range"):
        disk[[9]]
    with pytest.raises(ValueError, match="damaged"):
        DiskArray(tmp_path / "i", 10, 1, 5, 4)


def test_read_ahead_hands_on_errors_and_stops():
    def failing():
        yield 1
        raise RuntimeError("boom")

    reader = ReadAhead(failing())
    assert next(reader) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(reader)
    endless = ReadAhead(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()


def _rank_worker(rank: int, world: int, port: int, path: str, out: str) -> None:
    import torch.distributed as dist

    from segmentation.training import _epoch_order
    from transfer.orchestrator import ForeverIterator

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        array = RecordingArray(path, 12, 1, 4, 4)
        it = ForeverIterator(array, batch_size=2, seed=3)  # reads ahead: the rows it hands out tell its share
        forever = sorted(round(float(v) * 65535) for _ in range(3) for v in next(it)[0][:, 0, 0, 0])
        it.close()
        RecordingArray.read = []
        order = _epoch_order(12, None, torch.Generator().manual_seed(5))  # segment train's epoch
        list(stream_batches([array], [order[k:k + 4] for k in range(0, len(order), 4)], workers=0))
        Path(out.format(rank)).write_text(json.dumps({"forever": forever, "segment": sorted(RecordingArray.read)}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_read_disjoint_shares_whose_union_is_the_dataset(tmp_path):
    path = _write(tmp_path / "rows.u16", 12)
    out = str(tmp_path / "rank{}.json")
    spawn(_rank_worker, str(path), out)
    shares = [json.loads(Path(out.format(r)).read_text()) for r in range(2)]
    for loop in ("forever", "segment"):
        first, second = shares[0][loop], shares[1][loop]
        assert len(first) == len(second) == 6 and not set(first) & set(second), loop
        assert sorted(first + second) == list(range(12)), loop


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, numpy as np, torch
    from runtime.store import DiskArray
    from transfer.orchestrator import ForeverIterator
    path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    it = ForeverIterator(DiskArray(path, n, 1, size, size), batch_size=16, seed=0)
    total = 0.0
    for _ in range(2 * n // 16):  # every image, twice
        total += float(next(it)[0].sum())
    it.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def _peak_rss(path: Path, n: int, size: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), str(n), str(size)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_loop_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """Reading every one of 6,000 images (64 px) twice peaks within 12 MB of reading 300.

    Justification of the bound: holding the 6,000 images as float32 tensors would take 94 MB more (6,000 x 64 x 64 x
    4 bytes) and the 24 MB file itself more than the bound, so a path that keeps what it reads, or maps the file into
    the process, fails; the batches and the reader's queue are the same for both sizes, and 12 MB leaves room for
    allocator noise between two runs (measured difference here: a few MB).
    """
    size = 64
    small, large = tmp_path / "small.u16", tmp_path / "large.u16"
    for path, n in ((small, 300), (large, 6000)):
        with open(path, "wb") as f:
            for begin in range(0, n, 500):
                rows = np.random.default_rng(begin).integers(0, 65535, (min(500, n - begin), size, size), np.uint16)
                f.write(rows.tobytes())
    base, grown = _peak_rss(small, 300, size), _peak_rss(large, 6000, size)
    assert grown - base < 12 * 2**20, (base, grown)
