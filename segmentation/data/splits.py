"""Deterministic, seeded data splits: train/val/test, k-fold, and nested label fractions.

The transfer study splits each dataset 60/20/20 into train/val/test and labels only a fraction of
the target training split (0, 1.25, 2.5, 5, 10, 20, 50 or 100%) (Oliveira & dos Santos,
SIBGRAPI 2018). Every function sorts the ids before shuffling, so a split depends only on the
set of ids and the seed, never on file-system order. Splits are saved as JSON next to a run so
that every method of a comparison sees the same images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.io import atomic_write_json
from segmentation.data.io import DataError

LABEL_FRACTIONS: tuple[float, ...] = (0.0, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The label fractions of the transfer study."""

_SPLIT_SALT = 0x5EED_0001
_FOLD_SALT = 0x5EED_0002
_LABEL_SALT = 0x5EED_0003


def _sorted_unique(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise ValueError(f"expected a sequence of ids, got the string {ids!r}")
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"expected unique ids, got {dup!r} more than once")
    return sorted(ids)


def _check_seed(seed: int) -> None:
    if int(seed) < 0:
        raise ValueError(f"expected seed >= 0, got {seed}")


def _permute(ids: list[str], seed: int, salt: int) -> list[str]:
    order = np.random.default_rng([salt, int(seed)]).permutation(len(ids))
    return [ids[i] for i in order]


def split_ids(
    ids: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, list[str]]:
    """Split ids at random into train / val / test.

    Counts are ``round(n * f_train)`` and ``round(n * f_val)``, the rest goes to test. Each part is
    returned sorted.

    Args:
        ids: image ids, unique.
        fractions: ``(train, val, test)``, each in ``[0, 1]``, summing to 1.
        seed: the same ids and seed always give the same split.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, disjoint, covering ``ids``.

    Raises:
        ValueError: for duplicated ids, a negative seed, or fractions that are not three values in
            ``[0, 1]`` summing to 1.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3:
        raise ValueError(f"expected three fractions (train, val, test), got {len(fractions)}: {fractions}")
    if any(not 0.0 <= f <= 1.0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"expected fractions in [0, 1] summing to 1, got {fractions} (sum {sum(fractions):g})")
    _check_seed(seed)
    shuffled = _permute(_sorted_unique(ids), seed, _SPLIT_SALT)
    n = len(shuffled)
    n_train = min(n, int(round(n * fractions[0])))
    n_val = min(n - n_train, int(round(n * fractions[1])))
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train : n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val :]),
    }


def kfold_ids(ids: Sequence[str], k: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """K-fold cross-validation: fold ``i`` validates on the ``i``-th of ``k`` near-equal parts.

    Args:
        ids: image ids, unique.
        k: number of folds, ``2 <= k <= len(ids)``.
        seed: the same ids and seed always give the same folds.

    Returns:
        ``k`` dicts ``{"train": [...], "val": [...]}`` (sorted); the val parts are disjoint and cover ``ids``.

    Raises:
        ValueError: for ``k < 2``, ``k > len(ids)``, duplicated ids or a negative seed.
    """
    ids = _sorted_unique(ids)
    if k < 2:
        raise ValueError(f"expected k >= 2, got {k}")
    if k > len(ids):
        raise ValueError(f"expected k <= number of ids ({len(ids)}), got {k}")
    _check_seed(seed)
    shuffled = _permute(ids, seed, _FOLD_SALT)
    parts = np.array_split(np.arange(len(shuffled)), k)
    folds = []
    for part in parts:
        val = {shuffled[i] for i in part}
        folds.append({"train": sorted(set(shuffled) - val), "val": sorted(val)})
    return folds


def labelled_count(n: int, fraction: float) -> int:
    """Number of labelled images for ``fraction`` of ``n``: ``round(n * fraction)``, at least 1 when ``fraction > 0``.

    Raises:
        ValueError: if ``fraction`` is outside ``[0, 1]``.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"expected a label fraction in [0, 1], got {fraction:g}; e.g. 0.05 for 5%")
    if fraction == 0.0 or n == 0:
        return 0
    return min(n, max(1, int(round(n * fraction))))


def labelled_subset(train_ids: Sequence[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Pick the labelled part of a training split; the rest stays available as unlabelled images.

    Subsets are nested across fractions for one seed: the ids are shuffled once (seeded) and the
    labelled ones are a prefix of that order, so the 2.5% subset contains the 1.25% one.

    Args:
        train_ids: the training split, unique ids.
        fraction: in ``[0, 1]``; any ``fraction > 0`` labels at least one image.
        seed: the shuffle seed.

    Returns:
        ``(labelled, unlabelled)``, disjoint, covering ``train_ids``, each sorted.

    Raises:
        ValueError: for a fraction outside ``[0, 1]``, duplicated ids or a negative seed.
    """
    ids = _sorted_unique(train_ids)
    count = labelled_count(len(ids), fraction)
    _check_seed(seed)
    shuffled = _permute(ids, seed, _LABEL_SALT)
    return sorted(shuffled[:count]), sorted(shuffled[count:])


def _check_splits(obj: Any, where: str) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"expected string keys in splits, got {key!r} at {where}")
            _check_splits(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        if all(isinstance(item, str) for item in obj):
            return
        for i, item in enumerate(obj):
            if isinstance(item, str):
                raise ValueError(f"expected a list of ids or a list of splits at {where}, got a mix")
            _check_splits(item, f"{where}[{i}]")
    else:
        raise ValueError(f"expected lists of string ids (in dicts or lists), got {type(obj).__name__} at {where}")


def save_splits(path: str | os.PathLike, splits: dict[str, Any] | list[Any]) -> Path:
    """Write splits as JSON, atomically (a crash leaves the old file or none, never half a file).

    Args:
        path: destination, usually ``<run>/splits.json``.
        splits: lists of ids, nested in dicts and lists, e.g. the result of :func:`split_ids`,
            :func:`kfold_ids`, or ``{"train": ..., "labelled": ..., "unlabelled": ...}``.

    Returns:
        The path written.

    Raises:
        ValueError: if ``splits`` holds anything but lists of string ids in dicts or lists.
    """
    _check_splits(splits, "splits")
    return atomic_write_json(path, splits)


def load_splits(path: str | os.PathLike) -> Any:
    """Read splits written by :func:`save_splits`.

    Raises:
        DataError: if the file is missing or is not valid splits JSON (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such splits file; write one with save_splits or check the run folder")
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
        _check_splits(splits, "splits")
    except (OSError, json.JSONDecodeError, ValueError) as err:
        raise DataError(f"{path}: not a valid splits file ({err}); delete it to make new splits") from err
    return splits
