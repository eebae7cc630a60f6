"""UNIT: shapes per preset, loss dicts and weights, shared layers, gradient routing, dtype/layout, bad arguments."""

import pytest
import torch

from translation import UNIT, create_translator
from translation.losses import kl_loss
from translation_helpers import assert_gradient_routing, assert_losses, images

G_KEYS = {"gan_ab", "gan_ba", "recon_a", "recon_b", "kl_a", "kl_b", "cycle_a", "cycle_b", "kl_cycle_a", "kl_cycle_b"}
D_KEYS = {"d_a_real", "d_a_fake", "d_b_real", "d_b_fake"}


@pytest.mark.parametrize(
    ("preset", "kwargs"),
    [("tiny", {}), ("tiny", {"channels": 3, "gan_mode": "hinge"})],
)
def test_shapes_and_losses(preset, kwargs):
    t = create_translator("unit", preset, **kwargs)
    c = t.channels
    a, b = images(2, c), images(1, c, seed=1)
    assert t.a_to_b(a).shape == (2, c, 32, 32) and t.b_to_a(b).shape == (1, c, 32, 32)
    assert t.b_to_a(b).abs().max() <= 1
    assert_losses(t.generator_losses(a, b), G_KEYS)
    assert_losses(t.discriminator_losses(a, b), D_KEYS)


def test_default_preset_is_the_paper_architecture():
    t = create_translator("unit")
    assert len(t.d_a.scales) == 3 and t.d_a.scales[0].n_layers == 4
    # 2 downsamplings of 64 channels -> a 256-channel latent; 3 private + 1 shared residual blocks per side
    with torch.no_grad():
        assert t.encode(images(1), "a").shape == (1, 256, 8, 8)
    assert len(t.enc_a.layers) == 1 + 2 + 3 and len(t.shared_enc) == 1
    with torch.no_grad():
        assert t.a_to_b(images(1)).shape == t.b_to_a(images(1)).shape == (1, 1, 32, 32)


def test_gradients_reach_only_their_own_parameters():
    assert_gradient_routing(create_translator("unit", "tiny"), images(2), images(2, seed=1))


def test_shared_layers_serve_both_domains_and_translation_is_deterministic():
    t = create_translator("unit", "tiny")
    a, b = images(2), images(2, seed=1)
    with torch.no_grad():
        ab, ba = t.a_to_b(a), t.b_to_a(b)
        assert torch.equal(t.a_to_b(a), ab)  # the mean code, no sampling
        t.shared_enc[0].body[0][1].weight.add_(0.5)
        assert not torch.equal(t.a_to_b(a), ab) and not torch.equal(t.b_to_a(b), ba)
    n_shared = sum(p.numel() for p in t.shared_enc.parameters()) + sum(p.numel() for p in t.shared_dec.parameters())
    n_private = sum(p.numel() for m in (t.enc_a, t.enc_b, t.dec_a, t.dec_b) for p in m.parameters())
    assert sum(p.numel() for p in t.generator_parameters()) == n_shared + n_private  # each shared weight once


def test_kl_term_uses_the_latent_mean():
    t = create_translator("unit", "tiny", lambda_kl=0.5)
    a, b = images(1), images(1, seed=1)
    mu_a = t.encode(a, "a")
    torch.testing.assert_close(t.generator_losses(a, b)["kl_a"], 0.5 * kl_loss(mu_a))
    torch.testing.assert_close(kl_loss(mu_a), 0.5 * (mu_a**2).mean())


def test_channels_last_and_bf16_autocast():
    t = create_translator("unit", "tiny")
    a, b = images(2), images(2, seed=1)
    ref = t.a_to_b(a)
    t.to(memory_format=torch.channels_last)
    torch.testing.assert_close(t.a_to_b(a.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_losses(t.generator_losses(a, b), G_KEYS)
        assert_losses(t.discriminator_losses(a, b), D_KEYS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="expected n_shared_blocks >= 1"):
        UNIT(n_shared_blocks=0)
    with pytest.raises(ValueError, match="expected lambda_kl >= 0.0, got -1"):
        UNIT(lambda_kl=-1)
    t = create_translator("unit", "tiny")
    with pytest.raises(ValueError, match=r"expected domain in \('a', 'b'\), got 'c'"):
        t.encode(images(1), "c")
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 1, H, W\], got \(1, 1, 32\)"):
        t.a_to_b(torch.zeros(1, 1, 32))
    with pytest.raises(ValueError, match="expected discriminator input of at least"):
        create_translator("unit", "tiny", disc_layers=5).discriminator_losses(images(1), images(1))
