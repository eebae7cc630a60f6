"""MUNIT: shapes per preset, loss dicts, domain style, style choice, gradient routing, dtype/layout, bad arguments."""

import pytest
import torch

from translation import MUNIT, create_translator
from translation.munit import AdaINDecoder, StyleEncoder
from translation_helpers import assert_gradient_routing, assert_losses, images

G_KEYS = {"gan_ab", "gan_ba", "recon_a", "recon_b", "recon_content_a", "recon_content_b", "recon_style_a",
          "recon_style_b"}
D_KEYS = {"d_a_real", "d_a_fake", "d_b_real", "d_b_fake"}


@pytest.mark.parametrize(
    ("preset", "kwargs", "keys"),
    [
        ("tiny", {}, G_KEYS),
        ("tiny", {"channels": 3, "lambda_cycle": 10.0, "gan_mode": "bce"}, G_KEYS | {"cycle_a", "cycle_b"}),
    ],
)
def test_shapes_and_losses(preset, kwargs, keys):
    t = create_translator("munit", preset, **kwargs)
    c = t.channels
    a, b = images(2, c), images(1, c, seed=1)
    assert t.a_to_b(a).shape == (2, c, 32, 32) and t.b_to_a(b).shape == (1, c, 32, 32)
    content, style = t.encode(a, "a")
    assert style.shape == (2, 8) and content.shape[0] == 2
    assert_losses(t.generator_losses(a, b), keys)
    assert_losses(t.discriminator_losses(a, b), D_KEYS)


def test_default_preset_is_the_paper_architecture():
    t = create_translator("munit")
    assert t.style_dim == 8 and len(t.dec_a.blocks) == 4 and len(t.d_b.scales) == 3
    with torch.no_grad():
        assert t.encode(images(1), "b")[0].shape == (1, 256, 8, 8)
        assert t.a_to_b(images(1)).shape == t.b_to_a(images(1)).shape == (1, 1, 32, 32)
    assert StyleEncoder(1, 4, 4, 8)(images(2)).shape == (2, 8)


def test_gradients_reach_only_their_own_parameters():
    assert_gradient_routing(create_translator("munit", "tiny"), images(2), images(2, seed=1))


def test_domain_style_is_the_mean_style_code_and_drives_translation():
    t = create_translator("munit", "tiny")
    b = images(5, seed=3)
    assert torch.equal(t.domain_style_b, torch.zeros(8))  # the prior mean until updated
    style = t.update_domain_style(b, "b", batch_size=2)  # batches of 2, 2, 1
    with torch.no_grad():
        torch.testing.assert_close(style, t.style_b(b).mean(0))
        assert torch.equal(t.domain_style_b, style) and torch.equal(t.domain_style_a, torch.zeros(8))
        a = images(3)
        out = t.a_to_b(a)
        assert torch.equal(out, t.a_to_b(a, style=style))
        assert not torch.allclose(out, t.a_to_b(a, style=torch.randn(3, 8)))
        # the same image translates the same whatever else is in the batch: no picked or random style
        torch.testing.assert_close(t.a_to_b(a[:1]), out[:1])
    t.update_domain_style(images(5, seed=4), "b", momentum=0.25)
    with torch.no_grad():
        torch.testing.assert_close(t.domain_style_b, 0.75 * style + 0.25 * t.style_b(images(5, seed=4)).mean(0))
    assert "domain_style_b" in t.state_dict()


def test_adain_decoder_uses_the_style():
    dec = AdaINDecoder(content_channels=8, out_channels=1, n_upsampling=1, n_blocks=1, style_dim=8, mlp_dim=8)
    content = torch.randn(2, 8, 8, 8)
    s = torch.randn(1, 8).expand(2, 8)
    out = dec(content, s)
    assert out.shape == (2, 1, 16, 16) and out.abs().max() <= 1
    assert not torch.allclose(out, dec(content, -s))
    with pytest.raises(ValueError, match=r"expected style of shape \(2, 8\), got \(2, 4\)"):
        dec(content, torch.zeros(2, 4))


def test_channels_last_and_bf16_autocast():
    t = create_translator("munit", "tiny")
    a, b = images(2), images(2, seed=1)
    ref = t.a_to_b(a)
    t.to(memory_format=torch.channels_last)
    torch.testing.assert_close(t.a_to_b(a.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_losses(t.generator_losses(a, b), G_KEYS)
        assert_losses(t.discriminator_losses(a, b), D_KEYS)
        assert (t.a_to_b(a).float() - ref).abs().mean() < 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="expected style_dim >= 1"):
        MUNIT(style_dim=0)
    with pytest.raises(ValueError, match="expected n_blocks >= 1"):
        AdaINDecoder(n_blocks=0)
    with pytest.raises(ValueError, match="expected mlp_layers >= 1"):
        MUNIT(mlp_layers=0)
    t = create_translator("munit", "tiny")
    with pytest.raises(ValueError, match=r"expected domain in \('a', 'b'\), got 'x'"):
        t.update_domain_style(images(2), "x")
    with pytest.raises(ValueError, match="expected at least one image"):
        t.update_domain_style(images(2)[:0], "a")
    with pytest.raises(ValueError, match=r"expected momentum in \(0, 1\]"):
        t.update_domain_style(images(2), "a", momentum=0.0)
    with pytest.raises(ValueError, match="multiples of 2"):
        t.a_to_b(images(1, size=33))
