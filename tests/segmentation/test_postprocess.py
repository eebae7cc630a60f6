"""Tests of segmentation.postprocess: largest components, hole filling, failure counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segmentation import postprocess as P


def _blobs() -> np.ndarray:
    """12x12 mask with three blobs: 3x3 (9 px), 2x2 (4 px) and a single pixel."""
    m = np.zeros((12, 12), dtype=bool)
    m[1:4, 1:4] = True
    m[7:9, 7:9] = True
    m[10, 1] = True
    return m


def test_keep_largest_components_hand_counts():
    m = _blobs()
    two = P.keep_largest_components(m, k=2)
    assert two.sum() == 13 and not two[10, 1]
    one = P.keep_largest_components(torch.from_numpy(m), k=1)
    assert one.sum() == 9 and one[2, 2]
    assert P.keep_largest_components(m, k=5).sum() == 14


def test_connectivity():
    diagonal = np.eye(4, dtype=bool)
    assert P.keep_largest_components(diagonal, k=1, connectivity=8).sum() == 4
    assert P.keep_largest_components(diagonal, k=1, connectivity=4).sum() == 1


def test_fill_holes():
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    ring[2, 2] = False
    filled = P.fill_holes(ring)
    assert filled.sum() == 25 and filled[3, 3] and filled[2, 2]
    notch = np.zeros((5, 5), dtype=bool)
    notch[1:4, 0:3] = True
    notch[2, 0] = False  # open to the border: not a hole
    assert not P.fill_holes(notch)[2, 0]


def test_postprocess_masks_defaults_per_class():
    masks = torch.zeros(1, 2, 12, 12, dtype=torch.bool)
    masks[0, 0] = torch.from_numpy(_blobs())  # lungs: keep 2
    masks[0, 1] = torch.from_numpy(_blobs())  # heart: keep 1
    masks[0, 1, 2, 2] = False  # a hole in the heart
    out = P.postprocess_masks(masks, ("lungs", "heart"))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == masks.shape
    assert out[0, 0].sum() == 13
    assert out[0, 1].sum() == 9 and out[0, 1, 2, 2]
    kept = P.postprocess_masks(masks.numpy(), ["lungs", "heart"], components={"lungs": 3}, fill=False)
    assert isinstance(kept, np.ndarray) and kept[0, 0].sum() == 14 and not kept[0, 1, 2, 2]


def test_failure_counts():
    masks = np.zeros((3, 2, 12, 12), dtype=bool)
    masks[:, 0] = _blobs() & ~np.isin(np.arange(12), [10])[:, None]  # lungs: two blobs in every image
    masks[0, 1, 1:4, 1:4] = True  # heart fine
    masks[1, 1] = _blobs()  # heart in three pieces -> disconnected
    # image 2: heart missing
    counts = P.failure_counts(masks, ("lungs", "heart"))
    assert counts == {
        "missing/lungs": 0,
        "disconnected/lungs": 0,
        "missing/heart": 1,
        "disconnected/heart": 1,
        "images_with_failure": 2,
        "images": 3,
    }
    assert P.component_counts(masks, ("lungs", "heart")).tolist() == [[2, 1], [2, 3], [2, 0]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: P.keep_largest_components(np.zeros((2, 2)), k=0), "expected k >= 1 components to keep, got 0"),
        (lambda: P.keep_largest_components(np.zeros((1, 2, 2))), "expected a 2-D mask"),
        (lambda: P.keep_largest_components(np.zeros((2, 2)), connectivity=6), "expected connectivity 4 or 8, got 6"),
        (lambda: P.postprocess_masks(np.zeros((1, 1, 4, 4)), ["liver"]), "got none for \\['liver'\\]"),
        (lambda: P.postprocess_masks(np.zeros((1, 2, 4, 4)), ["heart"]), "expected 2 class names"),
        (lambda: P.postprocess_masks(np.zeros((4, 4)), ["heart"]), "expected masks of shape \\[N, C, H, W\\]"),
        (lambda: P.failure_counts(np.zeros((1, 1, 4, 4)), ["heart"], {"heart": 0}), "expected component counts >= 1"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.realdata
def test_reference_masks_have_the_default_anatomy(real_data):
    # The defaults (two lungs, one heart, two clavicles) must describe the manual masks: no failure is counted on
    # them and post-processing leaves them unchanged. Six images of each dataset at the stored 512x512.
    from segmentation.data.io import read_mask

    groups = {
        "lungs": ("left_lung", "right_lung"),
        "heart": ("heart",),
        "clavicles": ("left_clavicle", "right_clavicle"),
    }
    for dataset, classes in (("jsrt", ("lungs", "heart", "clavicles")), ("montgomery", ("lungs",))):
        folder = real_data / dataset / "masks"
        ids = sorted(p.name for p in (folder / "left_lung").glob("*.png"))[::25][:6]
        masks = np.stack(
            [[np.logical_or.reduce([read_mask(folder / o / i) for o in groups[c]]) for c in classes] for i in ids]
        )
        counts = P.failure_counts(masks, classes)
        assert counts["images_with_failure"] == 0, (dataset, counts)
        assert np.array_equal(P.postprocess_masks(masks, classes), masks)


def _padded(n: int = 2, size: int = 16) -> torch.Tensor:
    """Radiograph-like images: a bright field in [0.3, 0.9] and a black padding of the last 4 columns."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.6 * torch.rand(n, 1, size, size, generator=g)
    x[..., -4:] = 0.0
    return x


def test_dark_pixels_are_the_padding_and_nothing_of_the_field():
    x = _padded()
    dark = P.dark_pixels(x, 0.02)
    assert dark.shape == x.shape and dark.dtype == torch.bool
    assert dark[..., -4:].all() and not dark[..., :-4].any()
    assert not P.dark_pixels(torch.full((1, 1, 4, 4), 0.5), 0.1).any()  # a constant image has no dark pixels
    lifted = x * 0.5 + 0.2  # the padding at 0.2 is still the bottom of the range
    assert torch.equal(P.dark_pixels(lifted, 0.02), dark)
    with pytest.raises(ValueError, match=r"expected a dark level in \[0, 1\), got 1.0"):
        P.dark_pixels(x, 1.0)
    with pytest.raises(ValueError, match=r"expected images \[N, 1, H, W\], got shape \(16, 16\)"):
        P.dark_pixels(x[0, 0], 0.02)


def test_gate_dark_makes_dark_pixels_certain_background():
    x = _padded()
    probs = torch.full((2, 1, 16, 16), 0.8)
    gated = P.gate_dark(probs, x, 0.02)
    assert torch.equal(gated[..., -4:], torch.zeros(2, 1, 16, 4)) and torch.equal(gated[..., :-4], probs[..., :-4])
    assert P.gate_dark(probs, x, 0.0) is probs  # 0 is off
    multi = torch.softmax(torch.randn(2, 3, 16, 16), 1)  # background first
    m = P.gate_dark(multi, x, 0.02, "multiclass")
    assert torch.equal(m[:, 0, :, -4:], torch.ones(2, 16, 4)) and not m[:, 1:, :, -4:].any()
    assert torch.equal(m[..., :-4], multi[..., :-4])
    with pytest.raises(ValueError, match=r"expected probabilities for the images' \(16, 16\) pixels"):
        P.gate_dark(probs[..., :8], x, 0.02)
