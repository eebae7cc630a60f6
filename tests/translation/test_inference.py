"""translate_image: native sizes, padding to the divisor, blended tiles (exact where the receptive field fits)."""

import re

import pytest
import torch
from torch import nn

from translation import create_translator, translate_image
from translation.inference import pad_to_multiple, tile_starts
from translation_helpers import images


def _translator(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_translator("cyclegan", "tiny", **kwargs).eval()


def _rect(height: int, width: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, height, width, generator=g) * 2 - 1


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("cyclegan", {}, (128, 128)),  # tiny CycleGAN (trainable at 64 px) at twice that size
        ("cyclegan", {"n_downsampling": 2}, (100, 130)),  # divisor 4: padded to 100 x 132, cropped back
        ("cyclegan", {"generator": "unet", "unet_downs": 3}, (37, 61)),  # divisor 8
        ("unit", {}, (33, 47)),
        ("munit", {}, (45, 31)),
    ],
)
def test_native_size_is_kept(name, kwargs, shape):
    torch.manual_seed(0)
    t = create_translator(name, "tiny", **kwargs).eval()
    x = _rect(*shape, n=2)
    out = translate_image(t.a_to_b, x, t.required_divisor)
    assert out.shape == (2, 1, *shape) and out.dtype == x.dtype and not out.requires_grad
    assert out.abs().max() <= 1 and torch.isfinite(out).all()


def test_padding_is_reflection_and_cropped_back():
    seen = []

    def fn(x):
        seen.append(tuple(x.shape[-2:]))
        return x

    x = _rect(10, 13)
    assert torch.equal(translate_image(fn, x, 4), x) and seen == [(12, 16)]
    padded = pad_to_multiple(x, 4)
    assert torch.equal(padded[..., 10:, :13], x[..., [8, 7], :])  # reflection: no edge row repeated
    tiny = torch.arange(3.0).view(1, 1, 1, 3)  # shorter than its padding: replication
    assert pad_to_multiple(tiny, 4).tolist() == [[[[0, 1, 2, 2]] * 4]]
    assert pad_to_multiple(x, 1) is x


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "divisor", "starts"),
    [(64, 64, 16, 1, [0]), (100, 64, 16, 1, [0, 36]), (160, 64, 16, 4, [0, 48, 96]), (136, 64, 20, 8, [0, 40, 72])],
)
def test_tile_starts(length, tile, overlap, divisor, starts):
    assert tile_starts(length, tile, overlap, divisor) == starts


def test_tiles_of_a_pointwise_translator_are_exact():
    """A 1x1 convolution has no neighbourhood: tiles agree with the whole image up to float rounding of the blend."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Tanh())
    x = _rect(100, 130, n=2)
    whole = translate_image(conv, x, 1)
    for tile, overlap in [(32, 8), (48, 0), (64, 31)]:
        tiled = translate_image(conv, x, 1, tile=tile, overlap=overlap)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_tiles_match_when_the_receptive_field_fits_in_the_overlap():
    """No image-wide statistics (norm="none") and a receptive-field radius <= overlap // 4: equal to 1e-5.

    The tiny ResNet generator's radius is 3 (c7) + 1 (d, stride 1 -> 2) + 2 * 2 (R at stride 2) + 2 (u) + 3 (c7) =
    at most 13 pixels (12 measured by the input gradient of one output pixel) <= 56 // 4.
    """
    t = _translator(norm="none")
    x = _rect(200, 136, n=2)
    whole = translate_image(t.a_to_b, x, t.required_divisor)
    tiled = translate_image(t.a_to_b, x, t.required_divisor, tile=96, overlap=56)  # 4 x 2 tiles
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    seams = translate_image(t.a_to_b, x, t.required_divisor, tile=96, overlap=0)
    assert (seams - whole).abs().max() > 1e-3  # without overlap the tiles' borders show


def test_tiles_of_an_instance_norm_translator():
    """Per-tile statistics: not equal to the whole image, but the same shape and range."""
    t = _translator()
    x = images(1, size=96)
    whole = translate_image(t.a_to_b, x, t.required_divisor)
    tiled = translate_image(t.a_to_b, x, t.required_divisor, tile=64, overlap=32)
    assert tiled.shape == whole.shape and tiled.abs().max() <= 1


def test_applying_twice_is_bit_identical():
    t = _translator()
    x = _rect(70, 90, n=2)
    for tile in (None, 32):
        first = translate_image(t.b_to_a, x, t.required_divisor, tile=tile, overlap=8)
        assert torch.equal(first, translate_image(t.b_to_a, x, t.required_divisor, tile=tile, overlap=8))


def test_at_a_multiple_of_the_divisor_it_is_the_translator():
    t = _translator()
    x = images(2, size=32)
    with torch.no_grad():
        assert torch.equal(translate_image(t.a_to_b, x, t.required_divisor), t.a_to_b(x))


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (torch.zeros(1, 8, 8), {}, "expected image as a floating-point tensor of shape [B, C, H, W], got (1, 8, 8)"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.long), {}, "expected image as a floating-point tensor"),
        (torch.zeros(1, 1, 8, 8), {"divisor": 0}, "expected divisor >= 1"),
        (torch.zeros(1, 1, 8, 8), {"divisor": 4, "tile": 30},
         "expected tile to be a multiple of the translator's divisor 4, got 30"),
        (torch.zeros(1, 1, 8, 8), {"divisor": 4, "tile": 2}, "expected tile >= 4"),
        (torch.zeros(1, 1, 8, 8), {"divisor": 2, "tile": 64, "overlap": 63},
         "expected overlap <= tile - divisor = 62, got 63"),
        (torch.zeros(1, 1, 8, 8), {"tile": 64, "overlap": -1}, "expected overlap >= 0"),
    ],
)
def test_bad_arguments(image, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        translate_image(lambda x: x, image, **kwargs)
