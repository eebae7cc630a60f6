"""Tests of segmentation.data.preprocessing."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.preprocessing import dataset_stats, normalize


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
