"""Tests of segmentation.metrics: hand-computed overlaps and surface distances, empty-mask rules, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segmentation import metrics as M


def _squares(shift_rows: int = 1, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 square at rows/cols 2..5 (pred) and the same square moved down by ``shift_rows`` (target)."""
    pred = torch.zeros(size, size, dtype=torch.bool)
    target = torch.zeros(size, size, dtype=torch.bool)
    pred[2:6, 2:6] = True
    target[2 + shift_rows : 6 + shift_rows, 2:6] = True
    return pred, target


def test_overlap_scores_of_two_known_squares():
    pred, target = _squares()
    tp, fp, fn, tn = M.confusion_counts(pred[None, None], target[None, None])
    # overlap rows 3..5 -> 12 pixels; 4 pixels each only in one mask; 256 - 20 = 236 in neither.
    assert (tp.item(), fp.item(), fn.item(), tn.item()) == (12, 4, 4, 236)
    assert M.dice(tp, fp, fn, tn).item() == pytest.approx(24 / 32)
    assert M.jaccard(tp, fp, fn, tn).item() == pytest.approx(12 / 20)
    assert M.precision(tp, fp, fn, tn).item() == pytest.approx(12 / 16)
    assert M.recall(tp, fp, fn, tn).item() == pytest.approx(12 / 16)
    assert M.accuracy(tp, fp, fn, tn).item() == pytest.approx(248 / 256)


def test_empty_mask_rule():
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    full = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    both = M.confusion_counts(empty, empty)
    for fn_ in (M.dice, M.jaccard, M.precision, M.recall, M.accuracy):
        assert fn_(*both).item() == 1.0
    missed = M.confusion_counts(empty, full)  # nothing predicted, organ present
    hallucinated = M.confusion_counts(full, empty)
    for counts in (missed, hallucinated):
        for fn_ in (M.dice, M.jaccard, M.precision, M.recall):
            assert fn_(*counts).item() == 0.0
        assert M.accuracy(*counts).item() == 0.0


def test_surface_distances_of_two_known_squares():
    pred, target = _squares()
    # Boundaries have 12 pixels each. From pred to target: the top row (4 px) is 1 away, the two inner pixels of
    # the bottom row are 1 away, the other 6 lie on the target's boundary -> 6 / 12; the same by symmetry.
    assert M.mean_surface_distance(pred, target) == pytest.approx(0.5)
    assert M.hd95(pred, target) == pytest.approx(1.0)
    assert M.mean_surface_distance(pred, target, spacing=0.5) == pytest.approx(0.25)
    # Rows 2 mm apart, columns 1 mm: the top row is 2 mm away, the two inner bottom pixels 1 mm (sideways to the
    # target's column edge) -> (4 * 2 + 2 * 1) / 12 each way; directed 95th percentiles of [0]*6 + [1]*2 + [2]*4 = 2.
    assert M.mean_surface_distance(pred, target, spacing=(2.0, 1.0)) == pytest.approx(10 / 12)
    assert M.hd95(pred, target, spacing=(2.0, 1.0)) == pytest.approx(2.0)
    assert M.mean_surface_distance(pred, pred) == 0.0 and M.hd95(pred, pred) == 0.0
    a, b = M.surface_distances(pred.numpy(), target.numpy())
    assert a.shape == (12,) and b.shape == (12,)


def test_hd95_of_far_squares():
    # Two 4x4 squares 10 columns apart: every boundary pixel of one is between 7 and 13 px from the other's.
    pred, _ = _squares(0)
    target = torch.roll(pred, 10, dims=1)
    d = M.hd95(pred, target)
    assert 7 <= d <= 13 and d > M.mean_surface_distance(pred, target) > 7


def test_surface_empty_rule():
    pred, _ = _squares()
    empty = torch.zeros_like(pred)
    assert math.isnan(M.mean_surface_distance(empty, empty)) and math.isnan(M.hd95(empty, empty))
    assert M.mean_surface_distance(pred, empty) == math.inf and M.hd95(empty, pred) == math.inf


def test_evaluate_masks_keys_values_and_spacing():
    pred, target = _squares()
    p = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    t = torch.zeros_like(p)
    p[0, 0], t[0, 0] = pred, target
    t[1, 1, :3, :3] = True  # image 1: lungs empty in both, heart missed
    records = M.evaluate_masks(p, t, ("lungs", "heart"), spacing_mm=[0.5, None], surface=True)
    assert len(records) == 2
    assert list(records[0])[:2] == ["dice/lungs", "dice/heart"]
    assert {"jaccard/lungs", "precision/heart", "recall/lungs", "accuracy/heart", "asd_mm/lungs"} <= set(records[0])
    assert records[0]["dice/lungs"] == pytest.approx(0.75)
    assert records[0]["jaccard/lungs"] == pytest.approx(0.6)
    assert records[0]["asd/lungs"] == pytest.approx(0.5)
    assert records[0]["hd95_mm/lungs"] == pytest.approx(0.5)
    assert records[1]["dice/lungs"] == 1.0 and records[1]["dice/heart"] == 0.0
    assert math.isnan(records[1]["asd/lungs"]) and records[1]["hd95/heart"] == math.inf
    assert math.isnan(records[1]["asd_mm/heart"])  # spacing unknown for image 1
    plain = M.evaluate_masks(p.numpy(), t.float(), ["lungs", "heart"])
    assert "asd/lungs" not in plain[0] and plain[0]["dice/lungs"] == pytest.approx(0.75)


def test_evaluate_masks_bad_arguments():
    p = torch.zeros(2, 2, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected 2 class names"):
        M.evaluate_masks(p, p, ["lungs"])
    with pytest.raises(ValueError, match="expected pred and target of the same shape"):
        M.evaluate_masks(p, p[:, :1], ["lungs", "heart"])
    with pytest.raises(ValueError, match="expected 2 spacings"):
        M.evaluate_masks(p, p, ["lungs", "heart"], spacing_mm=[0.5], surface=True)
    with pytest.raises(ValueError, match="expected spacing as a positive number"):
        M.hd95(p[0, 0], p[0, 0], spacing=-1.0)
    with pytest.raises(ValueError, match="expected two 2-D masks"):
        M.surface_distances(p, p)


def test_summarize_hand_values():
    s = M.summarize([1.0, 2.0, 3.0, 4.0, math.nan, math.inf])
    std = math.sqrt(5 / 3)
    half = 3.182446305284263 * std / 2  # t_{0.975, 3} * std / sqrt(4)
    assert s["mean"] == pytest.approx(2.5) and s["std"] == pytest.approx(std)
    assert s["ci_low"] == pytest.approx(2.5 - half) and s["ci_high"] == pytest.approx(2.5 + half)
    assert (s["n"], s["n_nan"], s["n_inf"]) == (4, 1, 1)
    one = M.summarize([0.9])
    assert one["mean"] == 0.9 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    with pytest.raises(ValueError, match="expected confidence in \\(0, 1\\), got 95"):
        M.summarize([1.0], confidence=95)
    table = M.summarize_records([{"dice/lungs": 0.5, "id": "a"}, {"dice/lungs": 1.0, "id": "b"}])
    assert list(table) == ["dice/lungs"] and table["dice/lungs"]["mean"] == 0.75


def test_wilcoxon_hand_values():
    # Five positive differences: W- = 0, exact two-sided p = 2 / 2^5.
    r = M.wilcoxon_test([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.6, 0.4, 0.2, 0.0])
    assert r["statistic"] == 0.0 and r["p_value"] == pytest.approx(2 / 32) and r["n"] == 5
    assert r["median_difference"] == pytest.approx(0.3)
    same = M.wilcoxon_test([0.5, 0.6], [0.5, 0.6])
    assert same["p_value"] == 1.0
    assert M.wilcoxon_test([0.9, math.nan, 0.7], [0.8, 0.5, 0.6])["n"] == 2
    with pytest.raises(ValueError, match="same length"):
        M.wilcoxon_test([0.1, 0.2], [0.1])


def test_accumulator_matches_one_batch():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 2, 8, 8, generator=g) > 0.5
    t = torch.rand(4, 2, 8, 8, generator=g) > 0.5
    acc = M.MetricAccumulator(("lungs", "heart"))
    acc.update(p[:1], t[:1])
    acc.reset()
    acc.update(p[:3], t[:3])
    acc.update(p[3:], t[3:])
    whole = M.evaluate_masks(p, t, ("lungs", "heart"))
    result = acc.compute()
    assert len(acc.records) == 4
    assert result["dice/heart"] == pytest.approx(np.mean([r["dice/heart"] for r in whole]))
    with pytest.raises(ValueError, match="expected at least one class name"):
        M.MetricAccumulator(())
