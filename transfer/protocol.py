"""The honest protocol of the label-fraction experiment.

* The target set (Montgomery) is split once 60/20/20 (train/val/test) with a fixed seed and saved as
  ``splits.json``, or, with ``folds = k >= 2``, into k seeded folds (saved as ``folds_k<k>.json``): fold ``i`` tests
  on the ``i``-th part, and the rest is split 75/25 into train and validation (the 60/20 proportions), so every
  target image is a test image exactly once. The test part is never seen in training or model selection.
* Label fractions 0, 1.25, 2.5, 5, 10, 20, 50 and 100% of the target training split are nested (each subset holds
  the smaller ones) and identical for every method, since they depend only on the split, the fraction and the seed
  (built on ``segmentation.data.splits.labelled_subset``).
* :class:`TargetView` is the only door to target labels during training: at fraction 0 it hands out images only,
  and it counts every label read (``label_reads``) so a test can prove that none happens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from segmentation.data.dataset import CXRData
from segmentation.data.splits import kfold_ids, labelled_subset, load_splits, save_splits, split_ids

TARGET_SPLIT = (0.6, 0.2, 0.2)
FOLD_TRAIN_VAL = (0.75, 0.25, 0.0)  # inside a fold: the non-test part, as the 60/20 of the single split


def fold_splits(ids: Sequence[str], folds: int, fold: int, seed: int = 0,
                path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Train / val / test of fold ``fold`` of ``folds`` seeded folds of the target ids.

    The fold assignment (the test part of every fold) is saved to (or re-read from, and checked against) ``path``;
    inside the fold the remaining ids are split 75/25 into train and validation with the same seed.

    Raises:
        ValueError: for ``fold`` outside ``[0, folds)``, fewer ids than folds, or a saved assignment that does not
            cover exactly ``ids`` (delete it to redraw).
    """
    if not 0 <= fold < folds:
        raise ValueError(f"expected 0 <= fold < {folds}, got {fold}")
    if path is not None and Path(path).is_file():
        tests = [list(t) for t in load_splits(path)["test_folds"]]
        if sorted(i for t in tests for i in t) != sorted(ids) or len(tests) != folds:
            raise ValueError(f"expected the folds in {path} to cover the {len(ids)} target ids in {folds} folds; "
                             "delete it to redraw them for this dataset")
    else:
        tests = [f["val"] for f in kfold_ids(list(ids), folds, seed)]
        if path is not None:
            save_splits(path, {"test_folds": tests})
    test = set(tests[fold])
    rest = split_ids([i for i in ids if i not in test], fractions=FOLD_TRAIN_VAL, seed=seed + fold)
    return {"train": rest["train"], "val": rest["val"] + rest["test"], "test": sorted(test)}


def target_splits(ids: Sequence[str], seed: int = 0, path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """The seeded 60/20/20 train/val/test split of the target ids, saved to (or re-read from) ``path``.

    Args:
        ids: every target image id.
        seed: split seed (keep it fixed across methods and seeds so every cell has the same test set).
        path: ``splits.json``; when it exists it is loaded and checked against ``ids``, else the split is written.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: if a saved split does not cover exactly ``ids`` (delete the file to redraw it).
    """
    if path is not None and Path(path).is_file():
        splits = {k: list(v) for k, v in load_splits(path).items()}
        saved = sorted(i for part in ("train", "val", "test") for i in splits.get(part, []))
        if saved != sorted(ids):
            raise ValueError(f"expected the split in {path} to cover the {len(ids)} target ids, got {len(saved)} "
                             "different ones; delete it to redraw the split for this dataset")
        return splits
    splits = {k: list(v) for k, v in split_ids(list(ids), fractions=TARGET_SPLIT, seed=seed).items()}
    if path is not None:
        save_splits(path, splits)
    return splits


def labelled_ids(train_ids: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """Ids of the labelled subset for ``fraction`` (nested across fractions for a fixed seed, method-independent).

    Raises:
        ValueError: if ``fraction`` is outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"expected 0 <= fraction <= 1, got {fraction}; pass e.g. 0.05 for 5% of the labels")
    labelled, _ = labelled_subset(list(train_ids), fraction, seed)
    return list(labelled)


def fraction_subsets(train_ids: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[float, list[str]]:
    """The labelled subsets of every fraction, e.g. for the paper's 0 ... 100% grid."""
    return {float(f): labelled_ids(train_ids, f, seed) for f in fractions}


class TargetView:
    """Target training images with labels only for a labelled subset, counting every label read.

    Args:
        images: target training images ``[N, 1, H, W]`` in ``[0, 1]``.
        masks: their masks ``[N, K, H, W]``, or any indexable object (a test passes one that raises on access);
            None when no label exists.
        ids: the ids of ``images``.
        labelled: ids whose labels may be used (the fraction's subset).
        classes: class names of ``masks``.

    Raises:
        ValueError: if ``labelled`` holds an id not in ``ids``, or labels are asked for without masks.
    """

    def __init__(self, images: Tensor, masks: object | None, ids: Sequence[str], labelled: Sequence[str],
                 classes: Sequence[str]) -> None:
        self.images = images
        self._masks = masks
        self.ids = list(ids)
        self.classes = tuple(classes)
        index = {i: k for k, i in enumerate(self.ids)}
        unknown = [i for i in labelled if i not in index]
        if unknown:
            raise ValueError(f"expected labelled ids among the target training ids, got unknown {unknown[:5]}")
        if labelled and masks is None:
            raise ValueError(f"expected target masks for {len(labelled)} labelled ids, got none; "
                             "load the target dataset with masks")
        self.labelled_ids = list(labelled)
        self._labelled_index = torch.tensor([index[i] for i in labelled], dtype=torch.long)
        self.label_reads = 0

    @classmethod
    def from_data(cls, data: CXRData, labelled: Sequence[str]) -> "TargetView":
        """Build the view of a ``CXRData`` (its masks are only touched when labels are read)."""
        return cls(data.images, data.masks, data.ids, labelled, data.classes)

    def labelled(self) -> CXRData | None:
        """The labelled subset as ``CXRData`` with masks (None at fraction 0, without reading any label)."""
        if not self.labelled_ids:
            return None
        masks = self._masks[self._labelled_index]
        self.label_reads += len(self.labelled_ids)
        return CXRData(images=self.images[self._labelled_index], masks=masks, ids=list(self.labelled_ids),
                       classes=self.classes, spacing_mm=None)

    def unlabelled_images(self) -> Tensor:
        """Every training image (labelled ones included: their pixels are free), no label read."""
        return self.images
