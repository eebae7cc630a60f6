"""UNIT (Liu et al. 2017): coupled VAE-GANs with a shared latent space.

Reference:
    Liu, Breuel, Kautz. Unsupervised Image-to-Image Translation Networks. NeurIPS 2017.
    https://arxiv.org/abs/1703.00848
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from translation.base import Translator
from translation.discriminators import MultiScaleDiscriminator
from translation.generators import (
    NORMS,
    ResidualBlock,
    ResnetDecoder,
    ResnetEncoder,
    check_choice,
    check_float,
    check_image,
    check_int,
)
from translation.losses import GANCriterion, gan_loss, kl_loss, l1_loss


class UNIT(Translator):
    """UNIT: two VAE-like encoder/generator pairs whose high-level layers are shared, and two discriminators.

    ``E_A = shared_enc o enc_a`` maps an image to the mean of a unit-variance Gaussian latent code ``z``;
    ``G_A = dec_a o shared_dec`` maps ``z`` back to domain A (likewise for B). The last ``n_shared_blocks`` residual
    blocks of the encoders and the first ones of the generators are shared, which ties the two latent spaces.
    Translation uses the mean: ``a_to_b(x) = G_B(E_A(x))``; training samples ``z = mu + N(0, 1)``.

    Generator step (weights of the paper's code): adversarial ``lambda_gan``; within-domain reconstruction
    ``lambda_recon * |G_A(z_a) - a|_1``; KL ``lambda_kl * KL(z_a)``; cycle reconstruction
    ``lambda_cycle * |G_A(E_B(G_B(z_a))) - a|_1`` with its KL term ``lambda_kl_cycle``; the same for B.
    Discriminator step: multi-scale discriminators on real images and translations, weighted ``lambda_gan``.

    Args:
        channels: image channels of both domains.
        base_channels: channels of the first encoder layer (64).
        n_downsampling: stride-2 downsamplings in the encoders, upsamplings in the generators (2).
        n_blocks: domain-specific residual blocks in each encoder and each generator (3).
        n_shared_blocks: shared residual blocks on each side of the latent code (1; >= 1).
        disc_channels: channels of the discriminators' first layer (64).
        disc_layers: stride-2 layers of each discriminator (4), followed by a 1x1 head.
        disc_scales: scales of the multi-scale discriminators (3).
        norm: normalisation in the generators: "instance" (paper), "layer" or "none".
        gan_mode: "lsgan" (paper), "bce" or "hinge".
        lambda_gan: weight of the adversarial losses (1).
        lambda_recon: weight of the image reconstruction losses (10).
        lambda_kl: weight of the KL terms (0.01).
        lambda_cycle: weight of the cycle reconstruction losses (10).
        lambda_kl_cycle: weight of the KL terms of the cycle codes (0.01).

    Raises:
        ValueError: on a bad argument, or images of the wrong channel count or a size not a multiple of
            ``required_divisor``.

    Shape:
        ``a_to_b`` / ``b_to_a``: ``[B, channels, H, W] -> [B, channels, H, W]`` in [-1, 1].
    """

    name: ClassVar[str] = "unit"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "tiny": {"base_channels": 8, "n_downsampling": 1, "n_blocks": 0, "n_shared_blocks": 1, "disc_channels": 8,
                 "disc_layers": 2, "disc_scales": 2},
    }

    def __init__(
        self,
        channels: int = 1,
        base_channels: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 3,
        n_shared_blocks: int = 1,
        disc_channels: int = 64,
        disc_layers: int = 4,
        disc_scales: int = 3,
        norm: str = "instance",
        gan_mode: str = "lsgan",
        lambda_gan: float = 1.0,
        lambda_recon: float = 10.0,
        lambda_kl: float = 0.01,
        lambda_cycle: float = 10.0,
        lambda_kl_cycle: float = 0.01,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        self.channels = check_int("channels", channels, 1)
        check_int("n_shared_blocks", n_shared_blocks, 1)
        check_choice("norm", norm, NORMS)
        self.gan_mode = GANCriterion.parse(gan_mode)
        self.lambda_gan = check_float("lambda_gan", lambda_gan)
        self.lambda_recon = check_float("lambda_recon", lambda_recon)
        self.lambda_kl = check_float("lambda_kl", lambda_kl)
        self.lambda_cycle = check_float("lambda_cycle", lambda_cycle)
        self.lambda_kl_cycle = check_float("lambda_kl_cycle", lambda_kl_cycle)
        self.required_divisor = 2 ** check_int("n_downsampling", n_downsampling, 0)

        def encoder() -> ResnetEncoder:
            return ResnetEncoder(channels, base_channels, n_downsampling, n_blocks, norm)

        self.enc_a, self.enc_b = encoder(), encoder()
        latent = self.enc_a.out_channels
        self.shared_enc = nn.Sequential(*(ResidualBlock(latent, norm) for _ in range(n_shared_blocks)))
        self.shared_dec = nn.Sequential(*(ResidualBlock(latent, norm) for _ in range(n_shared_blocks)))

        def decoder() -> ResnetDecoder:
            return ResnetDecoder(latent, channels, n_downsampling, n_blocks, norm, upsample="nearest")

        self.dec_a, self.dec_b = decoder(), decoder()
        self.d_a = MultiScaleDiscriminator(channels, disc_channels, disc_layers, disc_scales)
        self.d_b = MultiScaleDiscriminator(channels, disc_channels, disc_layers, disc_scales)

    # -- encode / decode ------------------------------------------------------------------------------------------
    def encode(self, x: Tensor, domain: str) -> Tensor:
        """Mean of the latent code of images ``x`` of ``domain`` ("a" or "b").

        Shape:
            ``[B, channels, H, W] -> [B, base * 2**n_downsampling, H / 2**n_downsampling, W / 2**n_downsampling]``.
        """
        enc = {"a": self.enc_a, "b": self.enc_b}.get(domain)
        if enc is None:
            raise ValueError(f"expected domain in ('a', 'b'), got {domain!r}")
        return self.shared_enc(enc(x))

    def decode(self, z: Tensor, domain: str) -> Tensor:
        """Images of ``domain`` ("a" or "b") generated from latent codes ``z``, in [-1, 1]."""
        dec = {"a": self.dec_a, "b": self.dec_b}.get(domain)
        if dec is None:
            raise ValueError(f"expected domain in ('a', 'b'), got {domain!r}")
        return dec(self.shared_dec(z))

    def a_to_b(self, x: Tensor) -> Tensor:
        self._check_images(x)
        return self.decode(self.encode(x, "a"), "b")

    def b_to_a(self, x: Tensor) -> Tensor:
        self._check_images(x)
        return self.decode(self.encode(x, "b"), "a")

    def _check_images(self, x: Tensor) -> None:
        check_image(x, self.channels, "images", self.required_divisor)

    # -- parameter groups -----------------------------------------------------------------------------------------
    def generator_modules(self) -> list[nn.Module]:
        return [self.enc_a, self.enc_b, self.shared_enc, self.shared_dec, self.dec_a, self.dec_b]

    def discriminator_modules(self) -> list[nn.Module]:
        return [self.d_a, self.d_b]

    # -- losses ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _sample(mu: Tensor) -> Tensor:
        return mu + torch.randn_like(mu)

    def generator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """VAE, GAN and cycle losses; see :meth:`Translator.generator_losses`.

        Returns:
            ``loss``, ``gan_ab``, ``gan_ba``, ``recon_a``, ``recon_b``, ``kl_a``, ``kl_b``, ``cycle_a``, ``cycle_b``,
            ``kl_cycle_a``, ``kl_cycle_b``.
        """
        self._check_pair(a, b, self.required_divisor)
        mu_a, mu_b = self.encode(a, "a"), self.encode(b, "b")
        z_a, z_b = self._sample(mu_a), self._sample(mu_b)
        x_aa, x_bb = self.decode(z_a, "a"), self.decode(z_b, "b")
        x_ab, x_ba = self.decode(z_a, "b"), self.decode(z_b, "a")
        mu_ab, mu_ba = self.encode(x_ab, "b"), self.encode(x_ba, "a")
        x_aba = self.decode(self._sample(mu_ab), "a")
        x_bab = self.decode(self._sample(mu_ba), "b")
        losses: dict[str, Tensor] = {}
        with self._frozen_discriminators():
            losses["gan_ab"] = self.lambda_gan * gan_loss(self.d_b(x_ab), True, self.gan_mode, False)
            losses["gan_ba"] = self.lambda_gan * gan_loss(self.d_a(x_ba), True, self.gan_mode, False)
        losses["recon_a"] = self.lambda_recon * l1_loss(x_aa, a)
        losses["recon_b"] = self.lambda_recon * l1_loss(x_bb, b)
        losses["kl_a"] = self.lambda_kl * kl_loss(mu_a)
        losses["kl_b"] = self.lambda_kl * kl_loss(mu_b)
        losses["cycle_a"] = self.lambda_cycle * l1_loss(x_aba, a)
        losses["cycle_b"] = self.lambda_cycle * l1_loss(x_bab, b)
        losses["kl_cycle_a"] = self.lambda_kl_cycle * kl_loss(mu_ab)
        losses["kl_cycle_b"] = self.lambda_kl_cycle * kl_loss(mu_ba)
        if fakes is not None:
            fakes["fake_a"] = x_ba.detach()
            fakes["fake_b"] = x_ab.detach()
        return self._total(losses)

    def _sample_fakes(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        fake_a = self.decode(self._sample(self.encode(b, "b")), "a")
        fake_b = self.decode(self._sample(self.encode(a, "a")), "b")
        return fake_a, fake_b

    def discriminator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Multi-scale real/fake losses of ``D_A`` and ``D_B``, each weighted ``lambda_gan`` (as the UNIT code).

        Returns:
            ``loss``, ``d_a_real``, ``d_a_fake``, ``d_b_real``, ``d_b_fake``.
        """
        self._check_pair(a, b, self.required_divisor)
        fake_a, fake_b = self._fakes(a, b, fakes)
        w = self.lambda_gan
        losses = {
            "d_a_real": w * gan_loss(self.d_a(a), True, self.gan_mode),
            "d_a_fake": w * gan_loss(self.d_a(fake_a), False, self.gan_mode),
            "d_b_real": w * gan_loss(self.d_b(b), True, self.gan_mode),
            "d_b_fake": w * gan_loss(self.d_b(fake_b), False, self.gan_mode),
        }
        return self._total(losses)
