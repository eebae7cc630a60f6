"""translate training from images kept on disk (runtime.store.DiskArray) equals training from tensors."""

from __future__ import annotations

import pytest
import torch

from runtime.store import affine
from segmentation.data.dataset import load_dataset
from segmentation.data.phantoms import write_phantom_dataset
from translation import create_translator
from translation.training import TranslationConfig, train_translator


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return (write_phantom_dataset(root / "a", n=10, size=32, domain="a", seed=0),
            write_phantom_dataset(root / "b", n=9, size=32, domain="b", seed=50))


def _train(a, b, run_dir, **kwargs):
    torch.manual_seed(0)
    translator = create_translator("cyclegan", preset="tiny", pool_size=4)
    config = TranslationConfig(iterations=6, batch_size=2, checkpoint_every=3, eval_every=3, eval_images=4, kid_size=32,
                               kid_subset_size=2, kid_subsets=2, progress=False, figures=False)
    return train_translator(translator, affine(a, 2, -1), affine(b, 2, -1), config, run_dir, **kwargs)


def _assert_same(want, got):
    torch.testing.assert_close(got.translator.state_dict(), want.translator.state_dict(), rtol=0, atol=0)


def test_streamed_training_equals_in_memory_training(folders, tmp_path, monkeypatch):
    memory = [load_dataset(f, size=32, masks=False, stream=False).images for f in folders]
    disk = [load_dataset(f, size=32, masks=False, stream=True).images for f in folders]
    want = _train(*memory, tmp_path / "memory")
    monkeypatch.setenv("CXR_WORKERS", "2")  # two reader processes
    got = _train(*disk, tmp_path / "disk")
    _assert_same(want, got)
    assert got.history == want.history
    # resumed from the checkpoint at step 3, still reading from disk: the same weights
    resumed_dir = tmp_path / "resumed"
    _train(*disk, resumed_dir)
    for path in sorted((resumed_dir / "checkpoints").glob("step_*.pt"))[1:]:
        path.unlink()  # keep only step 3
    resumed = _train(*disk, resumed_dir, resume=True)
    _assert_same(want, resumed)
