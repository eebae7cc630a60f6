"""MUNIT (Huang et al. 2018): content and style codes, an AdaIN decoder, and a per-domain mean style.

Reference:
    Huang, Liu, Belongie, Kautz. Multimodal Unsupervised Image-to-Image Translation. ECCV 2018.
    https://arxiv.org/abs/1804.04732
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from translation.base import Translator
from translation.discriminators import MultiScaleDiscriminator
from translation.generators import (
    NORMS,
    ResnetEncoder,
    adaptive_instance_norm,
    check_choice,
    check_float,
    check_image,
    check_int,
    conv_block,
)
from translation.losses import GANCriterion, gan_loss, l1_loss

DOMAINS = ("a", "b")


class StyleEncoder(nn.Module):
    """MUNIT's style encoder: ``c7s1-k``, stride-2 4x4 convolutions, global average pooling, a 1x1 convolution.

    No normalisation (it would remove the style). Channels double for the first two downsamplings, then stay.

    Args:
        in_channels: image channels.
        base_channels: channels of the first layer (64).
        n_downsampling: stride-2 convolutions (4).
        style_dim: length of the style code (8).

    Shape:
        ``[B, in_channels, H, W] -> [B, style_dim]``.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 64, n_downsampling: int = 4, style_dim: int = 8):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("base_channels", base_channels, 1)
        check_int("n_downsampling", n_downsampling, 0)
        check_int("style_dim", style_dim, 1)
        layers: list[nn.Module] = [conv_block(in_channels, base_channels, 7, norm="none")]
        channels = base_channels
        for i in range(n_downsampling):
            out = channels * 2 if i < 2 else channels
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, out, 4, 2), nn.ReLU(inplace=True)]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, style_dim, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x).flatten(1)


class AdaINResidualBlock(nn.Module):
    """Residual block whose two 3x3 convolutions are followed by AdaIN with externally supplied parameters.

    Args:
        channels: channels in and out.

    Shape:
        x ``[B, C, H, W]`` and params ``[B, 4 * C]`` (scale and shift of both AdaINs) -> ``[B, C, H, W]``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, 1)
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.num_params = 4 * channels

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        s1, b1, s2, b2 = params.chunk(4, dim=1)
        y = torch.relu(adaptive_instance_norm(self.conv1(x), s1, b1))
        y = adaptive_instance_norm(self.conv2(y), s2, b2)
        return x + y


class AdaINDecoder(nn.Module):
    """MUNIT's decoder: AdaIN residual blocks driven by an MLP of the style code, then upsamplings and ``c7s1``.

    Each upsampling is nearest x2, a 5x5 convolution, layer norm and ReLU (as MUNIT); the output ends in ``tanh``.

    Args:
        content_channels: channels of the content code.
        out_channels: image channels.
        n_upsampling: upsamplings (each halves the channels).
        n_blocks: AdaIN residual blocks (>= 1: they carry the style).
        style_dim: length of the style code.
        mlp_dim: hidden width of the MLP.
        mlp_layers: linear layers of the MLP (>= 1).

    Shape:
        content ``[B, content_channels, h, w]`` and style ``[B, style_dim]`` ->
        ``[B, out_channels, h * 2**n_upsampling, w * 2**n_upsampling]`` in [-1, 1].
    """

    def __init__(
        self,
        content_channels: int = 256,
        out_channels: int = 1,
        n_upsampling: int = 2,
        n_blocks: int = 4,
        style_dim: int = 8,
        mlp_dim: int = 256,
        mlp_layers: int = 3,
    ) -> None:
        super().__init__()
        check_int("content_channels", content_channels, 1)
        check_int("n_upsampling", n_upsampling, 0)
        check_int("n_blocks", n_blocks, 1)
        check_int("style_dim", style_dim, 1)
        check_int("mlp_dim", mlp_dim, 1)
        check_int("mlp_layers", mlp_layers, 1)
        if content_channels % (2**n_upsampling):
            raise ValueError(f"expected content_channels divisible by {2**n_upsampling}, got {content_channels}")
        self.style_dim = style_dim
        self.blocks = nn.ModuleList(AdaINResidualBlock(content_channels) for _ in range(n_blocks))
        num_params = sum(block.num_params for block in self.blocks)
        widths = [style_dim] + [mlp_dim] * (mlp_layers - 1) + [num_params]
        mlp: list[nn.Module] = []
        for i in range(mlp_layers):
            mlp.append(nn.Linear(widths[i], widths[i + 1]))
            if i < mlp_layers - 1:
                mlp.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*mlp)
        layers: list[nn.Module] = []
        channels = content_channels
        for _ in range(n_upsampling):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                conv_block(channels, channels // 2, 5, norm="layer"),
            ]
            channels //= 2
        layers.append(conv_block(channels, out_channels, 7, norm="none", activation="tanh"))
        self.upsample = nn.Sequential(*layers)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        if style.dim() != 2 or style.shape != (content.shape[0], self.style_dim):
            raise ValueError(f"expected style of shape {(content.shape[0], self.style_dim)}, got {tuple(style.shape)}")
        params = self.mlp(style.to(self.mlp[0].weight.dtype))
        x = content
        offset = 0
        for block in self.blocks:
            x = block(x, params[:, offset : offset + block.num_params])
            offset += block.num_params
        return self.upsample(x)


class MUNIT(Translator):
    """MUNIT: per-domain content encoder, style encoder and AdaIN decoder, and multi-scale discriminators.

    An image ``x`` of domain A splits into a content code ``c = E^c_A(x)`` (spatial, shared across domains) and a
    style code ``s = E^s_A(x)`` (``style_dim`` numbers, domain-specific); ``G_B(c, s_b)`` renders the content in
    domain B with style ``s_b``. Training draws target styles from ``N(0, I)`` (as the paper).

    For translation, ``a_to_b(x)`` uses by default the **domain style** of B: the mean style code of B's training
    images, a buffer set by :meth:`update_domain_style` (zero, the prior mean, until then). The original translates
    with the style of one picked or random image, which makes the result depend on that pick.

    Generator step (weights of the paper): adversarial ``lambda_gan``; image reconstruction
    ``lambda_image * |G_A(E^c_A(a), E^s_A(a)) - a|_1``; content reconstruction
    ``lambda_content * |E^c_B(x_ab) - c_a|_1``; style reconstruction ``lambda_style * |E^s_B(x_ab) - s_b|_1``;
    optional cycle ``lambda_cycle`` (0 in the paper's main configuration). Discriminator step: multi-scale
    discriminators, weighted ``lambda_gan``.

    One deliberate deviation: AdaIN scales features by ``1 + gamma`` (MLP output ``gamma``) instead of ``gamma``, so
    that a freshly initialised decoder starts from plain instance normalisation rather than near-zero features.

    Args:
        channels: image channels of both domains.
        base_channels: channels of the encoders' first layer (64).
        n_downsampling: content-encoder downsamplings, decoder upsamplings (2).
        n_blocks: residual blocks of the content encoder and AdaIN blocks of the decoder (4).
        style_dim: style code length (8).
        style_downsampling: style-encoder downsamplings (4).
        mlp_dim: width of the MLP producing AdaIN parameters (256).
        mlp_layers: layers of that MLP (3).
        disc_channels: channels of the discriminators' first layer (64).
        disc_layers: stride-2 layers of each discriminator (4), followed by a 1x1 head.
        disc_scales: scales of the multi-scale discriminators (3).
        norm: content-encoder normalisation: "instance" (paper), "layer" or "none".
        gan_mode: "lsgan" (paper), "bce" or "hinge".
        lambda_gan: weight of the adversarial losses (1).
        lambda_image: weight of the image reconstruction losses (10).
        lambda_content: weight of the content reconstruction losses (1).
        lambda_style: weight of the style reconstruction losses (1).
        lambda_cycle: weight of the optional cycle losses (0).

    Raises:
        ValueError: on a bad argument, or images of the wrong channel count or a size not a multiple of
            ``required_divisor``.

    Shape:
        ``a_to_b`` / ``b_to_a``: ``[B, channels, H, W] -> [B, channels, H, W]`` in [-1, 1].
    """

    name: ClassVar[str] = "munit"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "tiny": {"base_channels": 8, "n_downsampling": 1, "n_blocks": 1, "style_downsampling": 2, "mlp_dim": 16,
                 "mlp_layers": 2, "disc_channels": 8, "disc_layers": 2, "disc_scales": 2},
    }

    def __init__(
        self,
        channels: int = 1,
        base_channels: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 4,
        style_dim: int = 8,
        style_downsampling: int = 4,
        mlp_dim: int = 256,
        mlp_layers: int = 3,
        disc_channels: int = 64,
        disc_layers: int = 4,
        disc_scales: int = 3,
        norm: str = "instance",
        gan_mode: str = "lsgan",
        lambda_gan: float = 1.0,
        lambda_image: float = 10.0,
        lambda_content: float = 1.0,
        lambda_style: float = 1.0,
        lambda_cycle: float = 0.0,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        self.channels = check_int("channels", channels, 1)
        check_choice("norm", norm, NORMS)
        self.style_dim = check_int("style_dim", style_dim, 1)
        self.gan_mode = GANCriterion.parse(gan_mode)
        self.lambda_gan = check_float("lambda_gan", lambda_gan)
        self.lambda_image = check_float("lambda_image", lambda_image)
        self.lambda_content = check_float("lambda_content", lambda_content)
        self.lambda_style = check_float("lambda_style", lambda_style)
        self.lambda_cycle = check_float("lambda_cycle", lambda_cycle)
        self.required_divisor = 2 ** check_int("n_downsampling", n_downsampling, 0)

        def content() -> ResnetEncoder:
            return ResnetEncoder(channels, base_channels, n_downsampling, n_blocks, norm)

        def style() -> StyleEncoder:
            return StyleEncoder(channels, base_channels, style_downsampling, style_dim)

        self.content_a, self.content_b = content(), content()
        self.style_a, self.style_b = style(), style()
        width = self.content_a.out_channels

        def decoder() -> AdaINDecoder:
            return AdaINDecoder(width, channels, n_downsampling, n_blocks, style_dim, mlp_dim, mlp_layers)

        self.dec_a, self.dec_b = decoder(), decoder()
        self.d_a = MultiScaleDiscriminator(channels, disc_channels, disc_layers, disc_scales)
        self.d_b = MultiScaleDiscriminator(channels, disc_channels, disc_layers, disc_scales)
        self.register_buffer("domain_style_a", torch.zeros(style_dim))
        self.register_buffer("domain_style_b", torch.zeros(style_dim))

    # -- encode / decode ------------------------------------------------------------------------------------------
    def _domain(self, domain: str) -> str:
        if domain not in DOMAINS:
            raise ValueError(f"expected domain in {DOMAINS}, got {domain!r}")
        return domain

    def encode(self, x: Tensor, domain: str) -> tuple[Tensor, Tensor]:
        """Content and style codes of images ``x`` of ``domain`` ("a" or "b").

        Shape:
            ``[B, channels, H, W] -> ([B, C_content, H / 2**n, W / 2**n], [B, style_dim])``.
        """
        check_image(x, self.channels, "images", self.required_divisor)
        if self._domain(domain) == "a":
            return self.content_a(x), self.style_a(x)
        return self.content_b(x), self.style_b(x)

    def encode_style(self, x: Tensor, domain: str) -> Tensor:
        """Style codes ``[B, style_dim]`` of images ``x`` of ``domain``."""
        check_image(x, self.channels, "images")
        return (self.style_a if self._domain(domain) == "a" else self.style_b)(x)

    def decode(self, content: Tensor, style: Tensor, domain: str) -> Tensor:
        """Render ``content`` codes with ``style`` codes ``[B, style_dim]`` in ``domain``; images in [-1, 1]."""
        return (self.dec_a if self._domain(domain) == "a" else self.dec_b)(content, style)

    def domain_style(self, domain: str) -> Tensor:
        """The mean style code ``[style_dim]`` of ``domain`` (see :meth:`update_domain_style`)."""
        return self.domain_style_a if self._domain(domain) == "a" else self.domain_style_b

    @torch.no_grad()
    def update_domain_style(
        self, images: Tensor, domain: str, batch_size: int = 16, momentum: float | None = None
    ) -> Tensor:
        """Set the domain style of ``domain`` to the mean style code of ``images`` (its training images).

        Args:
            images: ``[N, channels, H, W]`` images of the domain in [-1, 1], on the translator's device or not.
            domain: "a" or "b".
            batch_size: images encoded at a time.
            momentum: None to replace the stored style; otherwise ``style = (1 - m) * style + m * mean`` (to
                accumulate over a stream of batches).

        Returns:
            The new domain style ``[style_dim]``.

        Raises:
            ValueError: on a bad domain, empty images, ``batch_size < 1`` or ``momentum`` outside (0, 1].
        """
        check_image(images, self.channels, "images")
        check_int("batch_size", batch_size, 1)
        if images.shape[0] == 0:
            raise ValueError("expected at least one image to compute a domain style, got 0")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"expected momentum in (0, 1] or None, got {momentum}")
        buffer = self.domain_style(domain)
        total = torch.zeros(self.style_dim, dtype=torch.float64, device=buffer.device)
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(buffer.device)
            total += self.encode_style(chunk, domain).double().sum(0)
        mean = (total / images.shape[0]).to(buffer.dtype)
        buffer.copy_(mean if momentum is None else (1.0 - momentum) * buffer + momentum * mean)
        return buffer.clone()

    def a_to_b(self, x: Tensor, style: Tensor | None = None) -> Tensor:
        """Translate A to B with ``style`` ``[B, style_dim]`` or ``[style_dim]``, by default B's domain style."""
        return self._translate(x, "a", "b", style)

    def b_to_a(self, x: Tensor, style: Tensor | None = None) -> Tensor:
        """Translate B to A with ``style`` ``[B, style_dim]`` or ``[style_dim]``, by default A's domain style."""
        return self._translate(x, "b", "a", style)

    def _translate(self, x: Tensor, source: str, target: str, style: Tensor | None) -> Tensor:
        check_image(x, self.channels, "images", self.required_divisor)
        content = (self.content_a if source == "a" else self.content_b)(x)
        style = self.domain_style(target) if style is None else style
        if style.dim() == 1:
            style = style.unsqueeze(0).expand(x.shape[0], -1)
        return self.decode(content, style.to(x.device), target)

    def random_style(self, n: int, like: Tensor) -> Tensor:
        """``n`` style codes drawn from ``N(0, I)`` (torch's RNG) on ``like``'s device, float32."""
        return torch.randn(n, self.style_dim, device=like.device)

    # -- parameter groups -----------------------------------------------------------------------------------------
    def generator_modules(self) -> list[nn.Module]:
        return [self.content_a, self.content_b, self.style_a, self.style_b, self.dec_a, self.dec_b]

    def discriminator_modules(self) -> list[nn.Module]:
        return [self.d_a, self.d_b]

    # -- losses ---------------------------------------------------------------------------------------------------
    def generator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Image, content and style reconstruction and GAN losses; see :meth:`Translator.generator_losses`.

        Returns:
            ``loss``, ``gan_ab``, ``gan_ba``, ``recon_a``, ``recon_b``, ``recon_content_a``, ``recon_content_b``,
            ``recon_style_a``, ``recon_style_b`` and, when ``lambda_cycle > 0``, ``cycle_a``, ``cycle_b``.
        """
        self._check_pair(a, b, self.required_divisor)
        c_a, s_a = self.encode(a, "a")
        c_b, s_b = self.encode(b, "b")
        s_a_rand, s_b_rand = self.random_style(b.shape[0], b), self.random_style(a.shape[0], a)
        x_ba = self.decode(c_b, s_a_rand, "a")
        x_ab = self.decode(c_a, s_b_rand, "b")
        c_b_rec, s_a_rec = self.encode(x_ba, "a")
        c_a_rec, s_b_rec = self.encode(x_ab, "b")
        losses: dict[str, Tensor] = {}
        with self._frozen_discriminators():
            losses["gan_ab"] = self.lambda_gan * gan_loss(self.d_b(x_ab), True, self.gan_mode, False)
            losses["gan_ba"] = self.lambda_gan * gan_loss(self.d_a(x_ba), True, self.gan_mode, False)
        losses["recon_a"] = self.lambda_image * l1_loss(self.decode(c_a, s_a, "a"), a)
        losses["recon_b"] = self.lambda_image * l1_loss(self.decode(c_b, s_b, "b"), b)
        losses["recon_content_a"] = self.lambda_content * l1_loss(c_a_rec, c_a)
        losses["recon_content_b"] = self.lambda_content * l1_loss(c_b_rec, c_b)
        losses["recon_style_a"] = self.lambda_style * l1_loss(s_a_rec, s_a_rand)
        losses["recon_style_b"] = self.lambda_style * l1_loss(s_b_rec, s_b_rand)
        if self.lambda_cycle > 0:
            losses["cycle_a"] = self.lambda_cycle * l1_loss(self.decode(c_a_rec, s_a, "a"), a)
            losses["cycle_b"] = self.lambda_cycle * l1_loss(self.decode(c_b_rec, s_b, "b"), b)
        if fakes is not None:
            fakes["fake_a"] = x_ba.detach()
            fakes["fake_b"] = x_ab.detach()
        return self._total(losses)

    def _sample_fakes(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        fake_a = self.decode(self.content_b(b), self.random_style(b.shape[0], b), "a")
        fake_b = self.decode(self.content_a(a), self.random_style(a.shape[0], a), "b")
        return fake_a, fake_b

    def discriminator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Multi-scale real/fake losses of ``D_A`` and ``D_B`` on translations with random styles.

        Returns:
            ``loss``, ``d_a_real``, ``d_a_fake``, ``d_b_real``, ``d_b_fake`` (each weighted ``lambda_gan``).
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
