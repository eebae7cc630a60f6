"""Tests of segmentation.data.augmentation: alignment of image and masks, binary masks, flips, seeds, mixup."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.augmentation import Augmenter, mixup
from segmentation.data.phantoms import make_phantoms

GEOMETRY_ONLY = {"p_affine": 1.0, "rotation": 15.0, "shear": 8.0, "shift": 0.08, "scale": (0.85, 1.15),
                 "p_elastic": 1.0, "elastic_sigma": 4.0, "elastic_alpha": 2.0, "p_intensity": 0.0}


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_geometry_keeps_image_and_mask_aligned():
    # A phantom whose image is exactly its lung mask: after the warp the bright region must still be the mask.
    data = make_phantoms(4, 48, "a", seed=0)
    lungs = data.masks[:, :2].amax(1, keepdim=True)
    augment = Augmenter(seed=1, hflip=0.5, vflip=0.5, **GEOMETRY_ONLY)
    image, mask = augment(lungs.clone(), lungs)
    assert image.shape == (4, 1, 48, 48) and mask.shape == (4, 1, 48, 48)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (mask != lungs).float().mean() > 0.03  # it did move the anatomy
    assert _iou(image > 0.5, mask > 0.5) > 0.99
    # control: the mask of another draw does not match (the bar above is not trivially met)
    _, other = Augmenter(seed=2, **GEOMETRY_ONLY)(lungs.clone(), lungs)
    assert _iou(image > 0.5, other > 0.5) < 0.9


def test_real_phantom_anatomy_stays_under_mask():
    # On a rendered phantom (lungs dark), the transformed lung mask still covers dark pixels only.
    data = make_phantoms(4, 48, "a", seed=3)
    augment = Augmenter(seed=0, **{**GEOMETRY_ONLY, "p_intensity": 0.0})
    image, mask = augment(data.images, data.masks)
    lung = mask[:, :2].amax(1, keepdim=True).bool()
    assert image[lung].mean() < image[~lung].mean() - 0.1
    assert mask.shape == (4, 5, 48, 48) and set(mask.unique().tolist()) == {0.0, 1.0}


def test_horizontal_flip_swaps_sides():
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0, :, 6:] = 1.0  # left lung on the image's right
    masks[0, 1, :, :2] = 1.0
    image = masks[:, :1].clone()
    augment = Augmenter(hflip=1.0, swap_pairs=[(0, 1)], p_affine=0.0, p_elastic=0.0, p_intensity=0.0)
    out_image, out_masks = augment(image, masks)
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out_masks[:, 0], masks[:, 0])  # flipped and swapped: left lung stays on the right
    assert torch.equal(out_masks[:, 1], masks[:, 1])
    with pytest.raises(ValueError, match="swap_pairs within the 1 mask channels"):
        Augmenter(hflip=1.0, swap_pairs=[(0, 1)])(image, masks[:, :1])


def test_intensity_images_only_and_seeded():
    data = make_phantoms(4, 32, "a", seed=0)
    augment = Augmenter(seed=5, p_affine=0.0, p_elastic=0.0, p_intensity=1.0)
    image, mask = augment(data.images, data.masks)
    assert torch.equal(mask, data.masks)
    assert (image - data.images).abs().mean() > 0.01 and 0.0 <= image.min() and image.max() <= 1.0
    again = Augmenter(seed=5, p_affine=0.0, p_elastic=0.0, p_intensity=1.0)(data.images, data.masks)[0]
    assert torch.equal(image, again)
    assert not torch.equal(image, augment(data.images)[0])  # a new draw each call
    state = torch.random.get_rng_state()
    augment(data.images)
    assert torch.equal(state, torch.random.get_rng_state())  # a seeded augmenter leaves the global RNG alone


def test_bool_masks_channels_last_and_no_masks():
    images = torch.rand(2, 1, 32, 32).to(memory_format=torch.channels_last)
    masks = torch.rand(2, 3, 32, 32) > 0.5
    out_images, out_masks = Augmenter(seed=0)(images, masks)
    assert out_masks.dtype == torch.bool and out_images.dtype == torch.float32
    assert Augmenter(seed=0)(images)[1] is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rotation": -1.0}, "expected rotation >= 0, got -1.0"),
        ({"p_affine": 1.5}, r"expected p_affine in \[0, 1\]"),
        ({"scale": (1.2, 0.8)}, "expected scale = \\(min, max\\)"),
        ({"swap_pairs": [(1, 1)]}, "two distinct channel indices"),
        ({"contrast": 1.0}, "expected contrast < 1"),
        ({"seed": -3}, "expected seed >= 0 or None"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmenter(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"expected masks of shape \[2, C, 16, 16\]"):
        Augmenter()(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 8, 8))
    tiny = Augmenter(p_elastic=1.0, elastic_sigma=8.0)(torch.rand(1, 1, 8, 8))[0]  # field coarser than the image
    assert tiny.shape == (1, 1, 8, 8)


def test_mixup_hand_computed():
    images = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous()
    masks = images.clone()
    generator = torch.Generator().manual_seed(0)
    mixed_images, mixed_masks = mixup(images, masks, alpha=0.4, generator=generator)
    assert torch.equal(mixed_images, mixed_masks)  # the same weights and partners for images and masks
    values = mixed_images[:, 0, 0, 0]
    # each pixel is lam * own + (1 - lam) * partner's, a convex combination of 0 and 1, constant per image
    assert ((values >= 0) & (values <= 1)).all() and (mixed_images == values.view(2, 1, 1, 1)).all()
    again = mixup(images, masks, alpha=0.4, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(mixed_images, again)
    single = torch.rand(1, 1, 4, 4)
    assert torch.allclose(mixup(single, single, 1.0)[0], single)  # one image: its only partner is itself
    with pytest.raises(ValueError, match="expected alpha > 0, got 0"):
        mixup(images, masks, 0)
    with pytest.raises(ValueError, match="of one batch"):
        mixup(images, masks[:1], 0.4)
