"""PatchGAN and multi-scale discriminators, generators' shapes, receptive field, norms, pool."""

import pytest
import torch

from translation.discriminators import MultiScaleDiscriminator, PatchDiscriminator
from translation.generators import (
    InstanceNorm2d,
    LayerNorm2d,
    ResnetGenerator,
    UnetGenerator,
    adaptive_instance_norm,
)
from translation.pool import ImagePool


@pytest.mark.parametrize(("n_layers", "size", "out"), [(1, 32, 14), (2, 32, 6), (3, 64, 6)])
def test_patch_discriminator_shapes(n_layers, size, out):
    d = PatchDiscriminator(in_channels=2, base_channels=4, n_layers=n_layers)
    assert d(torch.randn(2, 2, size, size)).shape == (2, 1, out, out)
    # conv layers: first + n_layers + head
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d.modules()) == n_layers + 2


def test_patch_discriminator_receptive_field_is_70():
    """The default PatchGAN (n_layers=3) scores 70x70 patches: one output depends on exactly 70x70 input pixels."""
    d = PatchDiscriminator(base_channels=2, n_layers=3, norm="none")
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    d(x)[0, 0, 6, 6].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    assert rows.max() - rows.min() + 1 == 70


def test_multiscale_discriminator_returns_one_map_per_scale():
    d = MultiScaleDiscriminator(in_channels=1, base_channels=4, n_layers=2, num_scales=3)
    outs = d(torch.randn(2, 1, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]  # 1x1 head: s / 2**n
    patch = MultiScaleDiscriminator(in_channels=1, base_channels=4, n_layers=1, num_scales=3, head="patchgan")
    assert [tuple(o.shape[-2:]) for o in patch(torch.randn(1, 1, 32, 32))] == [(14, 14), (6, 6), (2, 2)]


def test_munit_discriminator_is_the_paper_architecture():
    """MUNIT's per-scale discriminator: 4x4 stride-2 convs 64-128-256-512 and a 1x1 head (2,755,009 weights, 1 ch)."""
    d = MultiScaleDiscriminator(in_channels=1, base_channels=64, n_layers=4, num_scales=3)
    assert sum(p.numel() for p in d.scales[0].parameters()) == 2_755_009
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d.scales[0].modules()) == 5


def test_discriminator_bad_arguments():
    with pytest.raises(ValueError, match="expected n_layers >= 1"):
        PatchDiscriminator(n_layers=0)
    with pytest.raises(ValueError, match="expected num_scales >= 1"):
        MultiScaleDiscriminator(num_scales=0)
    with pytest.raises(ValueError, match="expected norm in"):
        PatchDiscriminator(norm="batch")
    with pytest.raises(ValueError, match=r"expected discriminator input of shape \[B, 1, H, W\]"):
        PatchDiscriminator(base_channels=4)(torch.randn(1, 3, 32, 32))
    # 3 * 2**n_layers is the smallest input giving a 1x1 score map (floor(s / 2**n) - 2 >= 1)
    assert PatchDiscriminator(base_channels=2, n_layers=3)(torch.randn(1, 1, 24, 24)).shape[-1] == 1
    with pytest.raises(ValueError, match=r"expected discriminator input of at least 24 px with n_layers=3"):
        PatchDiscriminator(base_channels=2, n_layers=3)(torch.randn(1, 1, 23, 64))
    ms = MultiScaleDiscriminator(base_channels=2, n_layers=1, num_scales=3, head="patchgan")
    assert ms.min_size == 21 and ms(torch.randn(1, 1, 21, 21))[-1].shape[-1] == 1  # ceil(21 / 4) = 6 = 3 * 2
    with pytest.raises(ValueError, match="at least 21 px with n_layers=1 and num_scales=3"):
        ms(torch.randn(1, 1, 20, 20))
    ms = MultiScaleDiscriminator(base_channels=2, n_layers=3, num_scales=2)  # 1x1 head: ceil(s / 2) >= 2**3
    assert ms.min_size == 15 and ms(torch.randn(1, 1, 15, 15))[-1].shape[-1] == 1
    with pytest.raises(ValueError, match="expected head in"):
        PatchDiscriminator(head="linear")


@pytest.mark.parametrize("cls_kwargs", [(ResnetGenerator, {"n_blocks": 2}), (UnetGenerator, {"num_downs": 3})])
def test_generators_shape_range_channels_last(cls_kwargs):
    cls, kwargs = cls_kwargs
    g = cls(in_channels=3, out_channels=2, base_channels=4, **kwargs)
    x = torch.randn(2, 3, 32, 32)
    y = g(x)
    assert y.shape == (2, 2, 32, 32) and y.abs().max() <= 1
    y_cl = g.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y, atol=1e-5, rtol=1e-4)


def test_generator_bad_arguments_and_sizes():
    with pytest.raises(ValueError, match="expected n_blocks >= 0"):
        ResnetGenerator(n_blocks=-1)
    with pytest.raises(ValueError, match="expected num_downs >= 1"):
        UnetGenerator(num_downs=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        UnetGenerator(base_channels=4, num_downs=3)(torch.randn(1, 1, 36, 36))


def test_resnet_generator_is_the_paper_architecture():
    """c7s1-64, d128, d256, 9 x R256, u128, u64, c7s1-3: 11.378M parameters for RGB (as in the CycleGAN code)."""
    g = ResnetGenerator(in_channels=3, out_channels=3)
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    assert sum(p.numel() for p in PatchDiscriminator(in_channels=3).parameters()) == 2_764_737  # 70x70 PatchGAN


def test_norms_hand_computed_and_float32_statistics():
    x = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    torch.testing.assert_close(InstanceNorm2d(1)(x), torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2), atol=1e-4, rtol=0)
    x2 = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).view(1, 2, 1, 2)  # layer norm over all 4: mean 4, std sqrt(5)
    torch.testing.assert_close(LayerNorm2d(2)(x2).flatten(), (torch.tensor([1.0, 3, 5, 7]) - 4) / 5**0.5)
    y = adaptive_instance_norm(x, torch.tensor([[1.0]]), torch.tensor([[0.5]]))
    torch.testing.assert_close(y.flatten(), torch.tensor([-2.0, 2.0]) + 0.5, atol=1e-4, rtol=0)
    xb = (torch.randn(2, 3, 8, 8) * 100 + 1000).to(torch.bfloat16)
    out = InstanceNorm2d(3)(xb)
    assert out.dtype == torch.bfloat16 and out.float().mean((2, 3)).abs().max() < 0.05
    with pytest.raises(ValueError, match="expected AdaIN scale and shift of shape"):
        adaptive_instance_norm(x, torch.zeros(1, 2), torch.zeros(1, 2))


def test_image_pool_fills_then_mixes_and_is_seeded():
    pool = ImagePool(size=2)
    first = torch.arange(2.0).view(2, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 2
    torch.manual_seed(0)
    out1 = pool.query(torch.full((8, 1, 1, 1), 9.0))
    # With probability 1/2 per image a stored one comes back; 8 images make "none" a 1/256 event, excluded by seed.
    assert set(out1.flatten().tolist()) <= {0.0, 1.0, 9.0} and (out1 != 9).any()
    clone = ImagePool(size=2)
    clone.set_extra_state(ImagePool(size=2).get_extra_state())
    assert len(clone) == 0
    assert torch.equal(ImagePool(0).query(first), first)
    with pytest.raises(ValueError, match="expected size >= 0"):
        ImagePool(-1)
