"""Tests of the decoded dataset cache and of streamed datasets (segmentation.data.cache, runtime.store)."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import torch

from runtime.loader import stream_batches
from runtime.store import DiskArray
from segmentation.data import cache as cache_module
from segmentation.data.cache import cache_root
from segmentation.data.dataset import load_dataset
from segmentation.data.preprocessing import resize_images
from segmentation.data.io import read_image, write_png
from segmentation.data.phantoms import write_phantom_dataset


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CXR_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("ph") / "a", n=20, size=48, domain="a", seed=3)


def _slots(folder):
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def test_streamed_and_in_memory_give_identical_batches(phantoms, own_cache):
    memory = load_dataset(phantoms, classes=("lungs", "heart"), size=32, stream=False)
    disk = load_dataset(phantoms, classes=("lungs", "heart"), size=32, stream=True)
    assert not memory.streamed and disk.streamed and isinstance(disk.images, DiskArray)
    assert disk.images.shape == memory.images.shape and disk.masks.shape == memory.masks.shape
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    batches = [order[i:i + 6] for i in range(0, 20, 6)]
    for workers in (0, 2):
        got = list(stream_batches([disk.images, disk.masks], batches, workers=workers))
        want = list(stream_batches([memory.images, memory.masks], batches))
        assert len(got) == len(want) == 4
        for (gx, gy), (wx, wy) in zip(got, want):
            assert torch.equal(gx, wx) and torch.equal(gy, wy)
    # a subset of a streamed dataset is a view that reads the same rows
    sub = disk.subset([5, 2, 7])
    assert sub.streamed and torch.equal(sub.images[:], memory.images[[5, 2, 7]])
    assert torch.equal(sub.masks[torch.tensor([True, False, True])], memory.masks[[5, 7]])


def test_cache_values_match_direct_decoding_to_16_bits(phantoms, own_cache):
    """The cache quantises grey levels to 1/65535: at most half a step from the float decoding."""
    data = load_dataset(phantoms, classes=("lungs",), size=32, stream=False)
    folder = own_cache / _slots(own_cache)[0]
    assert (folder / "manifest.json").is_file() and (folder / "images.u16").stat().st_size == 20 * 32 * 32 * 2
    raw = read_image(phantoms / "images" / f"{data.ids[4]}.png").astype(np.float32) / 255.0
    direct = resize_images(torch.from_numpy(raw)[None, None], (32, 32))[0]
    assert float((direct.clamp(0, 1) - data.images[4]).abs().max()) <= 0.5 / 65535 + 1e-7


def test_cache_reused_then_rebuilt_when_source_or_size_changes(tmp_path, own_cache, monkeypatch):
    root = write_phantom_dataset(tmp_path / "ds", n=6, size=32, seed=1)
    calls = []
    real_build = cache_module._build

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(cache_module, "_build", counting_build)
    first = load_dataset(root, classes=("lungs",), size=16, stream=False)
    load_dataset(root, classes=("lungs",), size=16, stream=True)
    assert len(calls) == 1  # reused
    load_dataset(root, classes=("lungs",), size=24)
    assert len(calls) == 2  # another size: its own cache
    # change one image: the 16 px cache is rebuilt, with the new values
    path = root / "images" / f"{first.ids[0]}.png"
    time.sleep(0.01)
    write_png(path, np.full((32, 32), 255, np.uint8))
    changed = load_dataset(root, classes=("lungs",), size=16, stream=False)
    assert len(calls) == 3
    assert float(changed.images[0].min()) == 1.0 and torch.equal(changed.images[1:], first.images[1:])
    load_dataset(root, classes=("lungs",), size=16)
    assert len(calls) == 3
    # one folder per (dataset, size, classes, masks): the rebuilt cache replaced the old one
    assert len(_slots(own_cache)) == 2


def test_killed_build_resumes_and_nothing_half_built_is_used(tmp_path, own_cache, monkeypatch):
    root = write_phantom_dataset(tmp_path / "ds", n=10, size=32, seed=2)
    want = load_dataset(root, classes=("lungs",), size=16, stream=False)
    for p in list(own_cache.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
    monkeypatch.setattr(cache_module, "CHUNK", 4)
    decoded = []
    real_encode = cache_module.encode_grey

    def dying_encode(images):
        decoded.append(len(images))
        if len(decoded) == 2:  # killed while writing the second chunk
            raise KeyboardInterrupt
        return real_encode(images)

    monkeypatch.setattr(cache_module, "encode_grey", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(root, classes=("lungs",), size=16)
    slots = [p for p in own_cache.iterdir() if p.is_dir()]
    assert len(slots) == 1 and slots[0].name.endswith(".partial")  # no finished folder for readers
    # append garbage, as a kill between writing a chunk and recording it would leave
    with open(slots[0] / "images.u16", "ab") as f:
        f.write(b"\x01" * 100)
    monkeypatch.setattr(cache_module, "encode_grey", lambda images: decoded.append(len(images)) or real_encode(images))
    again = load_dataset(root, classes=("lungs",), size=16, stream=False)
    assert torch.equal(again.images, want.images) and torch.equal(again.masks, want.masks)
    assert decoded == [4, 4, 4, 2]  # the resumed build wrote chunks 2 and 3 only: chunk 1 was kept
    assert _slots(own_cache) == [slots[0].name[: -len(".partial")]]


def test_damaged_cache_file_is_a_one_line_error(tmp_path, own_cache):
    root = write_phantom_dataset(tmp_path / "ds", n=4, size=32, seed=2)
    load_dataset(root, classes=("lungs",), size=16)
    folder = own_cache / _slots(own_cache)[0]
    with open(folder / "images.u16", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="damaged: delete it"):
        load_dataset(root, classes=("lungs",), size=16)


def test_unlabelled_cache_and_stream_env(tmp_path, own_cache, monkeypatch):
    root = write_phantom_dataset(tmp_path / "ds", n=5, size=32, seed=4)
    monkeypatch.setenv("CXR_STREAM", "1")
    data = load_dataset(root, masks=False, size=16)
    assert data.streamed and data.masks is None and len(data) == 5
    monkeypatch.setenv("CXR_IN_MEMORY_MB", "0")
    monkeypatch.setenv("CXR_STREAM", "auto")
    assert load_dataset(root, masks=False, size=16).streamed
    monkeypatch.setenv("CXR_STREAM", "maybe")
    with pytest.raises(ValueError, match="CXR_STREAM"):
        load_dataset(root, masks=False, size=16)
    assert os.path.commonpath([cache_root(), own_cache]) == str(own_cache)
