"""GAN criteria, L1 and KL: hand-computed values, multi-scale sums, bad arguments."""

import math

import pytest
import torch

from translation.losses import GANCriterion, GANLoss, gan_loss, kl_loss, l1_loss

S = torch.tensor([[[[2.0, -1.0]]]])  # scores 2 and -1


@pytest.mark.parametrize(
    ("criterion", "real", "for_d", "expected"),
    [
        ("lsgan", True, True, ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2),  # 2.5
        ("lsgan", False, True, (2**2 + 1**2) / 2),  # 2.5
        ("bce", True, True, (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2),
        ("bce", False, True, (math.log1p(math.exp(2)) + math.log1p(math.exp(-1))) / 2),
        ("hinge", True, True, (0 + 2) / 2),  # relu(1 - s)
        ("hinge", False, True, (3 + 0) / 2),  # relu(1 + s)
        ("hinge", True, False, -(2 - 1) / 2),  # -mean(s)
        ("lsgan", True, False, 2.5),  # generator form of LSGAN = discriminator's real form
    ],
)
def test_gan_loss_hand_computed(criterion, real, for_d, expected):
    assert gan_loss(S, real, criterion, for_discriminator=for_d).item() == pytest.approx(expected, rel=1e-6)


def test_gan_loss_sums_scales_and_module_matches_function():
    scales = [S, torch.zeros(1, 1, 3, 3)]
    # LSGAN real: 2.5 for S, (0 - 1)**2 = 1 for zeros.
    assert gan_loss(scales, True, "lsgan").item() == pytest.approx(3.5)
    assert GANLoss("hinge")(scales, False).item() == gan_loss(scales, False, GANCriterion.HINGE).item()


def test_gan_loss_float32_from_bf16_and_gradient():
    s = S.clone().to(torch.bfloat16).requires_grad_(True)
    loss = gan_loss(s, True, "lsgan")
    assert loss.dtype == torch.float32
    loss.backward()
    # d/ds mean((s-1)^2) = (s - 1) for 2 elements: [1, -2]
    assert s.grad.float().flatten().tolist() == pytest.approx([1.0, -2.0])


def test_gan_loss_bad_arguments():
    with pytest.raises(ValueError, match=r"expected gan_mode in \['lsgan', 'bce', 'hinge'\], got 'wgan'"):
        gan_loss(S, True, "wgan")
    with pytest.raises(ValueError, match="empty list"):
        gan_loss([], True)
    with pytest.raises(ValueError, match="target_is_real=True"):
        gan_loss(S, False, "hinge", for_discriminator=False)


def test_l1_and_kl_hand_computed():
    x = torch.tensor([1.0, -1.0, 0.5])
    assert l1_loss(x, torch.zeros(3)).item() == pytest.approx(2.5 / 3)
    assert kl_loss(torch.tensor([2.0, 0.0])).item() == pytest.approx(0.5 * 4 / 2)
    # KL(N(0, e) || N(0, 1)) = 0.5 * (e - 1 - 1) per element
    assert kl_loss(torch.zeros(2), torch.ones(2)).item() == pytest.approx(0.5 * (math.e - 2))
    assert kl_loss(torch.zeros(4), torch.zeros(4)).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(x, torch.zeros(2))
    with pytest.raises(ValueError, match="expected logvar of shape"):
        kl_loss(x, torch.zeros(2))
