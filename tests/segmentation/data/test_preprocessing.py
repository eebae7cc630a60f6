"""Tests of segmentation.data.preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.exposure import match_histograms as skimage_match

from segmentation.data.preprocessing import clahe, dataset_stats, equalize_hist, match_histograms, normalize


def test_normalize_per_image_hand_computed_and_linear_invariant():
    images = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
    out = normalize(images)  # mean 0.5, std 0.5
    assert torch.allclose(out, torch.tensor([-1.0, -1.0, 1.0, 1.0]).view(1, 1, 2, 2), atol=1e-5)
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(normalize(x), normalize(0.3 * x + 0.2), atol=1e-4)
    assert normalize(torch.full((1, 1, 4, 4), 0.7)).abs().max() < 1e-3  # constant image -> zeros, not noise


def test_normalize_dataset_and_none_and_grad():
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    mean, std = dataset_stats(x)
    assert abs(mean - float(x.detach().mean())) < 1e-6
    out = normalize(x, "dataset", (mean, std))
    out = out.detach()
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std(unbiased=False)) - 1) < 1e-4
    assert normalize(x, "none") is x
    normalize(x).sum().backward()  # differentiable (a translator is trained through it)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert dataset_stats(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)) == (0.5, 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "minmax"}, "expected mode in"),
        ({"mode": "dataset"}, "expected stats=\\(mean, std\\)"),
        ({"mode": "dataset", "stats": (0.5, 0.0)}, "expected a positive std"),
    ],
)
def test_normalize_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        normalize(torch.rand(1, 1, 4, 4), **kwargs)
    with pytest.raises(ValueError, match=r"expected images of shape \[N, C, H, W\]"):
        normalize(torch.rand(4, 4))


def test_equalize_hist_hand_computed():
    two_levels = torch.tensor([0.2, 0.2, 0.8, 0.8]).view(1, 1, 2, 2)
    assert equalize_hist(two_levels).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    ramp = torch.tensor([0.0, 0.1, 0.1, 0.5]).view(1, 1, 2, 2)  # cdf 1/4, 3/4, 3/4, 1 -> (cdf - 1/4) / (3/4)
    assert torch.allclose(equalize_hist(ramp).flatten(), torch.tensor([0.0, 2 / 3, 2 / 3, 1.0]))
    x = torch.rand(2, 1, 16, 16) * 0.3 + 0.2
    out = equalize_hist(x)
    assert out.shape == x.shape and float(out.max()) == 1.0 and float(out.min()) == 0.0
    assert abs(float(out.mean()) - 0.5) < 0.05  # a flat histogram has mean 1/2
    with pytest.raises(ValueError, match="expected bins >= 2, got 1"):
        equalize_hist(x, bins=1)


def test_clahe_raises_local_contrast_and_keeps_order():
    x = torch.linspace(0.4, 0.5, 32 * 32).view(1, 1, 32, 32)  # a faint ramp
    out = clahe(x, clip_limit=4.0, grid=(2, 2))
    assert out.shape == x.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # the ramp spans 25 of 256 bins; clipping at 4x the uniform height caps the stretch (measured 2.3x)
    assert float(out.std()) > 2 * float(x.std())
    assert (out.flatten()[1:] >= out.flatten()[:-1] - 0.02).float().mean() > 0.95  # order kept (up to tile blending)
    with pytest.raises(ValueError, match="expected clip_limit > 0, got 0"):
        clahe(x, clip_limit=0)
    with pytest.raises(ValueError, match="expected grid"):
        clahe(x, grid=(0, 2))


def test_match_histograms_hand_computed_and_equals_skimage():
    image = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2) / 3
    reference = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 2, 2)
    assert torch.allclose(match_histograms(image, reference), reference)  # same quantiles, reference levels
    x = torch.rand(2, 1, 16, 16) ** 2
    ref = torch.rand(3, 1, 8, 8) * 0.5 + 0.3
    out = match_histograms(x, ref)
    expected = skimage_match(x[1, 0].numpy(), ref.flatten().reshape(8, 24).numpy())
    assert np.abs(out[1, 0].numpy() - expected).max() < 1e-5
    assert abs(float(out.mean()) - float(ref.mean())) < 0.02
    with pytest.raises(ValueError, match="expected reference_images of shape"):
        match_histograms(x, ref[0])
