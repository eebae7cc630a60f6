"""Honest protocol: the saved 60/20/20 split, nested label fractions identical across methods, no label at 0%."""

from __future__ import annotations

import pytest
import torch

from transfer.config import PAPER_FRACTIONS, ExperimentConfig
from transfer.orchestrator import TransferOrchestrator
from transfer.config import TransferConfig
from transfer.protocol import TargetView, fraction_subsets, labelled_ids, target_splits

IDS = [f"MCUCXR_{i:04d}" for i in range(138)]


def test_split_is_60_20_20_saved_and_reloaded(tmp_path):
    path = tmp_path / "splits.json"
    splits = target_splits(IDS, seed=0, path=path)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [83, 28, 27]  # round(138*.6), round(138*.2), rest
    assert set(splits["train"]).isdisjoint(splits["test"]) and set(splits["val"]).isdisjoint(splits["test"])
    assert path.is_file()
    assert target_splits(IDS, seed=123, path=path) == splits  # a saved split wins over a new seed


def test_saved_split_of_other_ids_is_refused(tmp_path):
    path = tmp_path / "splits.json"
    target_splits(IDS[:50], seed=0, path=path)
    with pytest.raises(ValueError, match="delete it to redraw"):
        target_splits(IDS, seed=0, path=path)


def test_paper_fractions_are_nested_with_expected_counts():
    train = target_splits(IDS, seed=0)["train"]
    subsets = fraction_subsets(train, PAPER_FRACTIONS, seed=0)
    counts = [len(subsets[f]) for f in PAPER_FRACTIONS]
    # 83 training images: 0, max(1, round(1.04)), round(2.08), round(4.15), round(8.3), round(16.6), round(41.5), 83
    assert counts == [0, 1, 2, 4, 8, 17, 42, 83]
    for small, large in zip(PAPER_FRACTIONS, PAPER_FRACTIONS[1:]):
        assert set(subsets[small]) <= set(subsets[large])


def test_subsets_identical_across_methods():
    train = target_splits(IDS, seed=0)["train"]
    chosen = {}
    for method in ("transfer", "finetune", "scratch"):
        exp = ExperimentConfig(method=method, fraction=0.05, seed=2)
        chosen[method] = labelled_ids(train, exp.fraction, exp.seed)
    assert chosen["transfer"] == chosen["finetune"] == chosen["scratch"]
    assert labelled_ids(train, 0.05, 3) != chosen["transfer"]  # but they depend on the seed


def test_bad_fraction_message():
    with pytest.raises(ValueError, match="expected 0 <= fraction <= 1, got 1.5"):
        labelled_ids(IDS, 1.5)
    with pytest.raises(ValueError, match="expected 0 <= fraction <= 1"):
        ExperimentConfig(fraction=-0.1)
    # a method that needs labels at fraction 0 is refused where the cell runs (tests/transfer/test_methods.py)


class PoisonedMasks:
    """Masks that fail the test on any read: proves that fraction 0 never touches a target label."""

    reads = 0

    def __getitem__(self, index):
        PoisonedMasks.reads += 1
        raise AssertionError("a target label was read at fraction 0")


def test_no_target_label_is_read_at_fraction_zero(toys):
    Translator, Segmenter, loss, norm = toys
    images = torch.rand(6, 1, 8, 8)
    view = TargetView(images, PoisonedMasks(), [f"t{i}" for i in range(6)], labelled=[], classes=("lungs",))
    assert view.labelled() is None and view.label_reads == 0
    a = torch.rand(4, 1, 8, 8)
    orch = TransferOrchestrator(Translator(), Segmenter(), TransferConfig(iterations=2, warmup_iterations=1,
                                batch_size=2, steps_per_epoch=1, weight_pseudo=1.0, pseudo_start=0.0),
                                loss_fn=loss, normalize=norm)
    labelled = view.labelled()
    orch.fit(a, (a > 0.5).float(), view.unlabelled_images(), labelled)
    assert PoisonedMasks.reads == 0 and view.label_reads == 0


def test_labels_are_counted_when_a_fraction_grants_them():
    images, masks = torch.rand(5, 1, 8, 8), torch.ones(5, 1, 8, 8)
    ids = [f"t{i}" for i in range(5)]
    view = TargetView(images, masks, ids, labelled=["t1", "t3"], classes=("lungs",))
    data = view.labelled()
    assert data.ids == ["t1", "t3"] and torch.equal(data.images, images[[1, 3]])
    assert view.label_reads == 2
    with pytest.raises(ValueError, match="unknown"):
        TargetView(images, masks, ids, labelled=["nope"], classes=("lungs",))
