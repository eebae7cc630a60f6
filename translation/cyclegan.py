"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, cycle and identity losses.

Reference:
    Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks.
    ICCV 2017. https://arxiv.org/abs/1703.10593
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from translation.base import Translator
from translation.discriminators import PatchDiscriminator
from translation.generators import (
    NORMS,
    ResnetGenerator,
    UnetGenerator,
    check_choice,
    check_float,
    check_int,
)
from translation.losses import GANCriterion, gan_loss, l1_loss
from translation.pool import ImagePool


class CycleGAN(Translator):
    """CycleGAN: ``G_AB``, ``G_BA`` and discriminators ``D_A`` (real A vs. ``G_BA(b)``), ``D_B``.

    Generator step: adversarial losses of ``G_AB(a)`` under ``D_B`` and ``G_BA(b)`` under ``D_A``; cycle losses
    ``lambda_cycle * |G_BA(G_AB(a)) - a|_1`` (and for b); identity losses
    ``lambda_identity * lambda_cycle * |G_BA(a) - a|_1`` (and ``G_AB(b)``). Discriminator step: each discriminator
    sees real images and fakes drawn through an image history pool; each half weighted 0.5, as in the paper's code.

    Args:
        channels: image channels of both domains (1 for radiographs).
        generator: "resnet" (paper) or "unet".
        base_channels: channels of the generators' first layer (64 in the paper).
        n_blocks: residual blocks of the ResNet generator (9 for 256 px, 6 for 128 px).
        n_downsampling: downsamplings of the ResNet generator (2 in the paper).
        unet_downs: downsamplings of the U-Net generator (8 for 256 px, 7 for 128 px).
        disc_channels: channels of the discriminators' first layer (64).
        disc_layers: stride-2 layers of the PatchGAN (3 gives the 70x70 PatchGAN).
        norm: normalisation of generators and discriminators: "instance" (paper), "layer" or "none".
        gan_mode: "lsgan" (paper), "bce" or "hinge".
        lambda_cycle: weight of the cycle losses (10).
        lambda_identity: weight of the identity losses relative to ``lambda_cycle`` (0.5); 0 disables them.
        pool_size: image history pool size (50); 0 disables the pool.
        dropout: dropout in the generators (0).

    Raises:
        ValueError: on a bad argument; on images of the wrong channel count or a size the generator cannot take.

    Shape:
        ``a_to_b`` / ``b_to_a``: ``[B, channels, H, W] -> [B, channels, H, W]`` in [-1, 1], H and W multiples of
        ``required_divisor``.
    """

    name: ClassVar[str] = "cyclegan"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "tiny": {"base_channels": 8, "n_blocks": 1, "n_downsampling": 1, "unet_downs": 2, "disc_channels": 8,
                 "disc_layers": 1},
    }

    def __init__(
        self,
        channels: int = 1,
        generator: str = "resnet",
        base_channels: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        unet_downs: int = 8,
        disc_channels: int = 64,
        disc_layers: int = 3,
        norm: str = "instance",
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        self.channels = check_int("channels", channels, 1)
        check_choice("generator", generator, ("resnet", "unet"))
        check_choice("norm", norm, NORMS)
        self.gan_mode = GANCriterion.parse(gan_mode)
        self.lambda_cycle = check_float("lambda_cycle", lambda_cycle)
        self.lambda_identity = check_float("lambda_identity", lambda_identity)

        def make_generator() -> nn.Module:
            if generator == "resnet":
                return ResnetGenerator(channels, channels, base_channels, n_downsampling, n_blocks, norm,
                                       dropout=dropout)
            return UnetGenerator(channels, channels, base_channels, unet_downs, norm, dropout=dropout)

        self.g_ab = make_generator()
        self.g_ba = make_generator()
        self.d_a = PatchDiscriminator(channels, disc_channels, disc_layers, norm)
        self.d_b = PatchDiscriminator(channels, disc_channels, disc_layers, norm)
        self.pool_a = ImagePool(pool_size)
        self.pool_b = ImagePool(pool_size)
        self.required_divisor = self.g_ab.required_divisor

    def a_to_b(self, x: Tensor) -> Tensor:
        return self.g_ab(x)

    def b_to_a(self, x: Tensor) -> Tensor:
        return self.g_ba(x)

    def generator_modules(self) -> list[nn.Module]:
        return [self.g_ab, self.g_ba]

    def discriminator_modules(self) -> list[nn.Module]:
        return [self.d_a, self.d_b]

    def generator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Adversarial, cycle and identity losses; see :meth:`Translator.generator_losses`.

        Returns:
            ``loss``, ``gan_ab``, ``gan_ba``, ``cycle_a``, ``cycle_b`` and, when ``lambda_identity > 0``,
            ``identity_a``, ``identity_b``.
        """
        self._check_pair(a, b, self.required_divisor)
        fake_b = self.g_ab(a)
        fake_a = self.g_ba(b)
        losses: dict[str, Tensor] = {}
        with self._frozen_discriminators():
            losses["gan_ab"] = gan_loss(self.d_b(fake_b), True, self.gan_mode, for_discriminator=False)
            losses["gan_ba"] = gan_loss(self.d_a(fake_a), True, self.gan_mode, for_discriminator=False)
        losses["cycle_a"] = self.lambda_cycle * l1_loss(self.g_ba(fake_b), a)
        losses["cycle_b"] = self.lambda_cycle * l1_loss(self.g_ab(fake_a), b)
        if self.lambda_identity > 0:
            weight = self.lambda_identity * self.lambda_cycle
            losses["identity_a"] = weight * l1_loss(self.g_ba(a), a)
            losses["identity_b"] = weight * l1_loss(self.g_ab(b), b)
        if fakes is not None:
            fakes["fake_a"] = fake_a.detach()
            fakes["fake_b"] = fake_b.detach()
        return self._total(losses)

    def discriminator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Real/fake losses of ``D_A`` and ``D_B``, fakes drawn through the image pools.

        Returns:
            ``loss``, ``d_a_real``, ``d_a_fake``, ``d_b_real``, ``d_b_fake`` (each weighted 0.5).
        """
        self._check_pair(a, b, self.required_divisor)
        fake_a, fake_b = self._fakes(a, b, fakes)
        fake_a = self.pool_a.query(fake_a)
        fake_b = self.pool_b.query(fake_b)
        losses = {
            "d_a_real": 0.5 * gan_loss(self.d_a(a), True, self.gan_mode),
            "d_a_fake": 0.5 * gan_loss(self.d_a(fake_a), False, self.gan_mode),
            "d_b_real": 0.5 * gan_loss(self.d_b(b), True, self.gan_mode),
            "d_b_fake": 0.5 * gan_loss(self.d_b(fake_b), False, self.gan_mode),
        }
        return self._total(losses)
