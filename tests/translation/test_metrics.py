"""Tests for translation.metrics: histogram distance and KID in a fixed random feature space."""

from __future__ import annotations

import pytest
import torch

from translation.metrics import FeatureNet, histogram_distance, kid, kid_features, mmd2_unbiased


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small convolutions on 32-pixel images: a second OpenMP thread only adds contention on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_histogram_distance_hand_computed():
    # 4 bins over [-1, 1]: width 0.5, every pixel of x in bin 0 (centre -0.75), of y in bin 3 (centre 0.75):
    # the earth mover's distance moves all mass 1.5.
    x = -torch.ones(1, 1, 4, 4)
    y = torch.ones(2, 1, 3, 3)
    assert histogram_distance(x, y, bins=4) == pytest.approx(1.5)
    # half of x's mass one bin (0.5) to the right of y's: 0.5 * 0.5 = 0.25
    x2 = torch.tensor([-0.9, -0.9, -0.4, -0.4]).reshape(1, 1, 2, 2)
    y2 = torch.full((1, 1, 2, 2), -0.9)
    assert histogram_distance(x2, y2, bins=4) == pytest.approx(0.25)


def test_histogram_distance_symmetric_zero_on_itself_and_shift():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    y = (torch.rand(2, 1, 8, 8) * 2 - 1) * 0.5
    assert histogram_distance(x, x) == 0.0
    assert histogram_distance(x, y) == pytest.approx(histogram_distance(y, x))
    # shifting a set by 0.5 with no clamping moves every pixel by about 0.5
    z = torch.rand(2, 1, 16, 16) - 0.9
    assert histogram_distance(z, z + 0.5, bins=200) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("kwargs, message", [
    ({"bins": 1}, "expected bins >= 2, got 1"),
    ({"value_range": (1.0, -1.0)}, "high > low"),
])
def test_histogram_distance_bad_arguments(kwargs, message):
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=message):
        histogram_distance(x, x, **kwargs)
    with pytest.raises(ValueError, match=r"expected x as a \[N, C, H, W\] tensor, got \(4, 4\)"):
        histogram_distance(torch.zeros(4, 4), x)


def test_feature_net_fixed_and_shapes():
    a, b = FeatureNet(size=32), FeatureNet(size=32)
    x = torch.rand(2, 3, 40, 24) * 2 - 1
    out = a(x)
    assert out.shape == (2, a.dim) == (2, 480)
    assert torch.equal(out, b(x))  # same seed, same weights: nothing depends on the global RNG
    assert not any(p.requires_grad for p in a.parameters())
    assert kid_features(x, size=32).dtype == torch.float64
    with pytest.raises(ValueError, match="expected size >= 16, got 8"):
        FeatureNet(size=8)


def test_mmd2_unbiased_hand_computed():
    # d = 1: k(x, y) = (x y + 1)^3. x = {0, 0}: k_xx off-diagonal = 1; y = {1, 1}: k_yy = 8; k_xy = 1.
    # MMD^2 = 1 + 8 - 2 * 1 = 7.
    fx = torch.zeros(2, 1, dtype=torch.float64)
    fy = torch.ones(2, 1, dtype=torch.float64)
    assert float(mmd2_unbiased(fx, fy)) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="at least 2 feature rows"):
        mmd2_unbiased(fx[:1], fy)


def test_kid_itself_about_zero_and_different_sets_positive():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 1, 32, 32, generator=g) * 2 - 1
    x2 = torch.rand(24, 1, 32, 32, generator=g) * 2 - 1  # same distribution, other samples
    y = torch.rand(24, 1, 32, 32, generator=g) * 0.6 - 0.1  # lower contrast, brighter: another "scanner"
    same_mean, same_se = kid(x, x, subset_size=12, num_subsets=20, size=32)
    twin_mean, _ = kid(x, x2, subset_size=12, num_subsets=20, size=32)
    diff_mean, diff_se = kid(x, y, subset_size=12, num_subsets=20, size=32)
    assert diff_mean > 0 and diff_mean > 10 * diff_se
    # A set against itself shares images between the two subsets (12 of 24 drawn twice: ~6 in common), whose
    # self-similarity k(x, x) enters the cross term: a small negative bias (-0.003 here), a few % of a real gap.
    assert abs(same_mean) < 0.05 * diff_mean and abs(twin_mean) < 0.05 * diff_mean
    assert same_se >= 0
    assert kid(x, y, subset_size=12, num_subsets=20, size=32) == (diff_mean, diff_se)  # seeded


def test_kid_bad_arguments():
    x = torch.zeros(3, 1, 16, 16)
    with pytest.raises(ValueError, match="at least 2 images per set for KID, got 1 and 3"):
        kid(x[:1], x)
    with pytest.raises(ValueError, match="expected subset_size >= 2, got 1"):
        kid(x, x, subset_size=1)
    with pytest.raises(ValueError, match="expected num_subsets >= 2, got 1"):
        kid(x, x, num_subsets=1)
