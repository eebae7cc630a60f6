"""segment training and evaluation from images kept on disk (runtime.store.DiskArray) equal the in-memory path."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.dataset import load_dataset
from segmentation.data.phantoms import write_phantom_dataset
from segmentation.data.preprocessing import dataset_stats
from segmentation.training import SegmentationConfig, build_segmenter, evaluate_segmenter, train_segmenter


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("seg") / "a", n=14, size=32, domain="a", seed=7)


def _config(**kwargs):
    base = dict(model="unet", model_kwargs={"depth": 2, "base_channels": 4}, classes=("lungs",), size=32,
                epochs=3, batch_size=4, lr=1e-2, progress=False, normalization="dataset", device="cpu",
                augment=True)
    return SegmentationConfig(**{**base, **kwargs})


def _train(data, run_dir):
    train, val = data.subset(list(range(10))), data.subset(list(range(10, 14)))
    config = _config()
    torch.manual_seed(0)
    model = build_segmenter(config)
    return model, train_segmenter(model, train, val, config, run_dir=run_dir)


def test_streamed_training_and_evaluation_equal_in_memory(folder, tmp_path, monkeypatch):
    memory = load_dataset(folder, classes=("lungs",), size=32, stream=False)
    disk = load_dataset(folder, classes=("lungs",), size=32, stream=True)
    assert disk.streamed
    assert dataset_stats(disk.images, chunk=3) == pytest.approx(dataset_stats(memory.images), rel=1e-9, abs=1e-12)
    model_memory, want = _train(memory, tmp_path / "memory")
    monkeypatch.setenv("CXR_WORKERS", "1")
    model_disk, got = _train(disk, tmp_path / "disk")
    torch.testing.assert_close(got.best_state, want.best_state, rtol=0, atol=0)
    assert [r.get("val_dice") for r in got.history] == [r.get("val_dice") for r in want.history]
    rows_disk = evaluate_segmenter(model_disk, disk, got.config)
    assert rows_disk == evaluate_segmenter(model_memory, memory, want.config)
    assert len(rows_disk) == 14 and all(0 <= r["jaccard/lungs"] <= 1 for r in rows_disk)
