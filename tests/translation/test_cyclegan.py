"""CycleGAN: shapes per preset, loss dicts, gradient routing, fakes cache, pool, dtype/layout, bad arguments."""

import pytest
import torch

from translation import TRANSLATORS, CycleGAN, create_translator
from translation.losses import l1_loss
from translation_helpers import assert_gradient_routing, assert_losses, images

G_KEYS = {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "identity_a", "identity_b"}
D_KEYS = {"d_a_real", "d_a_fake", "d_b_real", "d_b_fake"}


@pytest.mark.parametrize(
    ("preset", "kwargs"),
    [("tiny", {}), ("tiny", {"generator": "unet"}), ("tiny", {"channels": 3, "gan_mode": "bce"})],
)
def test_shapes_and_losses(preset, kwargs):
    t = create_translator("cyclegan", preset, **kwargs)
    c = t.channels
    a, b = images(2, c), images(1, c, seed=1)
    assert t.a_to_b(a).shape == (2, c, 32, 32) and t.b_to_a(b).shape == (1, c, 32, 32)
    assert t.a_to_b(a).abs().max() <= 1
    assert_losses(t.generator_losses(a, b), G_KEYS)
    assert_losses(t.discriminator_losses(a, b), D_KEYS)


def test_default_preset_translates_at_paper_size_architecture():
    """The default preset is the paper's ResNet-9 / 70x70 PatchGAN CycleGAN (losses are exercised on tiny presets)."""
    t = create_translator("cyclegan")
    assert len(t.g_ab.encoder.layers) == 1 + 2 + 9 and t.d_a.n_layers == 3 and t.pool_a.size == 50
    assert t.lambda_cycle == 10.0 and t.lambda_identity == 0.5 and t.gan_mode == "lsgan"
    with torch.no_grad():
        assert t.a_to_b(images(1)).shape == (1, 1, 32, 32)
        assert t.d_b(images(1)).shape == (1, 1, 2, 2)


def test_gradients_reach_only_their_own_parameters():
    t = create_translator("cyclegan", "tiny")
    assert_gradient_routing(t, images(2), images(2, seed=1))


def test_loss_values_follow_the_paper_weights():
    t = create_translator("cyclegan", "tiny", lambda_cycle=4.0, lambda_identity=0.25, pool_size=0)
    a, b = images(1), images(1, seed=1)
    g = t.generator_losses(a, b)
    torch.testing.assert_close(g["cycle_a"], 4.0 * l1_loss(t.g_ba(t.g_ab(a)), a))
    torch.testing.assert_close(g["identity_b"], 1.0 * l1_loss(t.g_ab(b), b))  # 0.25 * 4
    assert "identity_a" not in create_translator("cyclegan", "tiny", lambda_identity=0.0).generator_losses(a, b)


def test_cached_fakes_equal_regenerated_ones_without_pool():
    t = create_translator("cyclegan", "tiny", pool_size=0)
    a, b = images(2), images(2, seed=1)
    fakes: dict[str, torch.Tensor] = {}
    t.generator_losses(a, b, fakes=fakes)
    cached = t.discriminator_losses(a, b, fakes=fakes)
    fresh = t.discriminator_losses(a, b)
    for k in cached:
        torch.testing.assert_close(cached[k], fresh[k])
    with pytest.raises(ValueError, match="expected fakes with keys"):
        t.discriminator_losses(a, b, fakes={"fake_a": a})


def test_discriminator_step_goes_through_the_pool():
    t = create_translator("cyclegan", "tiny", pool_size=3)
    for _ in range(2):
        t.discriminator_losses(images(2), images(2, seed=1))
    assert len(t.pool_a) == len(t.pool_b) == 3
    assert "pool_a._extra_state" in t.state_dict()


def test_channels_last_and_bf16_autocast():
    t = create_translator("cyclegan", "tiny")
    a, b = images(2), images(2, seed=1)
    ref = t.a_to_b(a)
    t_cl = t.to(memory_format=torch.channels_last)
    torch.testing.assert_close(t_cl.a_to_b(a.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = t.generator_losses(a, b)
        d = t.discriminator_losses(a, b)
        out = t.a_to_b(a)
    assert_losses(g, G_KEYS)
    assert_losses(d, D_KEYS)
    assert (out.float() - ref).abs().mean() < 0.05  # bf16 keeps ~3 significant digits


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"expected a translator name in \['cyclegan'.*got 'pix2pix'"):
        create_translator("pix2pix")
    with pytest.raises(ValueError, match=r"expected preset in \['default', 'tiny'\] for cyclegan, got 'huge'"):
        create_translator("cyclegan", "huge")
    with pytest.raises(ValueError, match=r"expected keywords of cyclegan among .*got \['depth'\]"):
        create_translator("cyclegan", depth=3)
    with pytest.raises(ValueError, match="expected generator in"):
        CycleGAN(generator="vgg")
    with pytest.raises(ValueError, match="expected gan_mode in"):
        CycleGAN(gan_mode="wgan")
    with pytest.raises(ValueError, match="expected lambda_cycle >= 0.0"):
        CycleGAN(lambda_cycle=-1)
    with pytest.raises(ValueError, match="expected channels >= 1"):
        CycleGAN(channels=0)
    t = create_translator("cyclegan", "tiny")
    with pytest.raises(ValueError, match=r"expected images a of shape \[B, 1, H, W\], got \(1, 3, 32, 32\)"):
        t.generator_losses(images(1, 3), images(1))
    with pytest.raises(ValueError, match="multiples of 2"):
        t.generator_losses(images(1, size=31), images(1))
    with pytest.raises(ValueError, match="expected direction"):
        t.translate(images(1), "a2c")


def test_config_rebuilds_the_same_architecture():
    t = create_translator("cyclegan", "tiny", gan_mode="hinge")
    rebuilt = TRANSLATORS[t.name](**t.config)
    assert rebuilt.config == t.config and t.config["gan_mode"] == "hinge"
    rebuilt.load_state_dict(t.state_dict())
