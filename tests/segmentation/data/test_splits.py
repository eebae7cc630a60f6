"""Tests of segmentation.data.splits: seeded train/val/test, k-fold, nested label fractions, JSON."""

from __future__ import annotations

import json

import pytest

from segmentation.data.io import DataError
from segmentation.data.splits import (
    LABEL_FRACTIONS,
    kfold_ids,
    labelled_count,
    labelled_subset,
    load_splits,
    save_splits,
    split_ids,
)

IDS = [f"id{i:03d}" for i in range(247)]


def test_split_sizes_disjoint_and_deterministic():
    splits = split_ids(IDS, seed=3)
    # 247 * 0.6 = 148.2 -> 148, 247 * 0.2 = 49.4 -> 49, the rest (50) is test
    assert [len(splits[k]) for k in ("train", "val", "test")] == [148, 49, 50]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == IDS
    assert split_ids(list(reversed(IDS)), seed=3) == splits  # input order does not matter
    assert split_ids(IDS, seed=4) != splits
    assert split_ids(["a", "b", "c", "d", "e"], (0.6, 0.2, 0.2)) == split_ids(["e", "d", "c", "b", "a"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fractions": (0.5, 0.2, 0.2)}, "summing to 1"),
        ({"fractions": (0.8, 0.2)}, "expected three fractions"),
        ({"fractions": (1.2, -0.1, -0.1)}, r"in \[0, 1\]"),
        ({"seed": -1}, "expected seed >= 0"),
    ],
)
def test_split_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_ids(IDS, **kwargs)
    with pytest.raises(ValueError, match="more than once"):
        split_ids(["a", "a", "b"])


def test_kfold():
    folds = kfold_ids(IDS[:10], k=3, seed=0)
    assert [len(f["val"]) for f in folds] == [4, 3, 3]
    assert sorted(sum((f["val"] for f in folds), [])) == IDS[:10]
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"]) and len(fold["train"]) + len(fold["val"]) == 10
    assert kfold_ids(IDS[:10], 3, 0) == folds
    with pytest.raises(ValueError, match="expected k >= 2, got 1"):
        kfold_ids(IDS, 1)
    with pytest.raises(ValueError, match="expected k <= number of ids"):
        kfold_ids(IDS[:3], 4)


def test_labelled_subsets_nested_and_counts():
    train = split_ids(IDS, seed=0)["train"]  # 148 images
    previous: set[str] = set()
    counts = []
    for fraction in LABEL_FRACTIONS:
        labelled, unlabelled = labelled_subset(train, fraction, seed=5)
        assert sorted(labelled + unlabelled) == sorted(train) and not set(labelled) & set(unlabelled)
        assert previous <= set(labelled)  # nested: the 2.5% subset contains the 1.25% one
        previous = set(labelled)
        counts.append(len(labelled))
    # round(148 * f), at least 1 for f > 0: 1.85 -> 2, 3.7 -> 4, 7.4 -> 7, 14.8 -> 15, 29.6 -> 30, 74
    assert counts == [0, 2, 4, 7, 15, 30, 74, 148]
    assert labelled_subset(train, 0.0125, seed=6)[0] != labelled_subset(train, 0.0125, seed=5)[0]
    assert len(labelled_subset(train[:10], 0.0125, seed=0)[0]) == 1  # 0.125 rounds to 0, at least one
    assert labelled_count(0, 0.5) == 0


@pytest.mark.parametrize("fraction", [1.5, -0.1])
def test_labelled_subset_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"expected a label fraction in \[0, 1\]"):
        labelled_subset(IDS, fraction, seed=0)


def test_save_load_round_trip(tmp_path):
    splits = {"split": split_ids(IDS[:20], seed=1), "folds": kfold_ids(IDS[:20], 2, 0), "labelled": ["id001"]}
    path = save_splits(tmp_path / "run" / "splits.json", splits)
    assert load_splits(path) == splits
    assert not [p for p in path.parent.iterdir() if p.name != "splits.json"]  # no temporary file left
    with pytest.raises(ValueError, match="expected lists of string ids"):
        save_splits(tmp_path / "bad.json", {"train": [1, 2]})
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "broken.json").write_text(json.dumps({"train": 3}))
    with pytest.raises(DataError, match="broken.json: not a valid splits file"):
        load_splits(tmp_path / "broken.json")
    with pytest.raises(DataError, match="no such splits file"):
        load_splits(tmp_path / "absent.json")
