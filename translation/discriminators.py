"""PatchGAN and multi-scale discriminators. They return raw scores; GAN criteria live in ``translation.losses``.

References:
    Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial Networks. CVPR 2017 (PatchGAN).
    Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks. ICCV 2017.
    Wang et al. High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs. CVPR 2018
    (multi-scale discriminators, used by UNIT and MUNIT).
"""

from __future__ import annotations

from torch import Tensor, nn

from translation.generators import PADDINGS, check_choice, check_image, check_int, downsample2x, make_norm

HEADS = ("patchgan", "conv1x1")


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator: a fully convolutional net scoring overlapping patches as real or fake.

    4x4 convolutions with LeakyReLU 0.2: ``C(k)`` stride 2 without normalisation, then ``n_layers - 1`` stride-2
    layers with normalisation (channels doubling, capped at ``8k``), then the head:

    - ``head="patchgan"`` (pix2pix/CycleGAN): one more normalised stride-1 4x4 layer and a 1-channel stride-1 4x4
      convolution. ``n_layers=3``, ``k=64`` is the 70x70 PatchGAN (receptive field 70 pixels).
    - ``head="conv1x1"`` (UNIT/MUNIT): a 1-channel 1x1 convolution right after the stride-2 layers.

    Args:
        in_channels: image channels.
        base_channels: channels k of the first layer.
        n_layers: number of stride-2 convolutions (>= 1).
        norm: "instance" (CycleGAN), "layer" or "none" (MUNIT/UNIT).
        padding_mode: "zeros" (pix2pix), "reflect" (MUNIT) or "replicate".
        head: "patchgan" or "conv1x1".

    Raises:
        ValueError: on a bad argument, or (forward) an input with the wrong channel count or smaller than
            ``min_size`` pixels (``3 * 2**n_layers`` for the PatchGAN head, ``2**n_layers`` for the 1x1 head).

    Shape:
        ``[B, in_channels, H, W] -> [B, 1, H', W']``, ``H' = floor(H / 2**n_layers) - 2`` (PatchGAN head) or
        ``floor(H / 2**n_layers)`` (1x1 head); raw scores (logits).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        padding_mode: str = "zeros",
        head: str = "patchgan",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        check_int("base_channels", base_channels, 1)
        check_int("n_layers", n_layers, 1)
        check_choice("padding_mode", padding_mode, PADDINGS)
        check_choice("head", head, HEADS)
        make_norm(norm, 1)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, 2, 1, padding_mode=padding_mode),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for i in range(1, n_layers + (head == "patchgan")):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride, 1, padding_mode=padding_mode),
                make_norm(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        if head == "patchgan":
            layers.append(nn.Conv2d(channels, 1, 4, 1, 1, padding_mode=padding_mode))
        else:
            layers.append(nn.Conv2d(channels, 1, 1))
        self.layers = nn.Sequential(*layers)
        self.n_layers = n_layers
        # smallest input giving a 1x1 score map: floor(s / 2**n) - 2 >= 1, or floor(s / 2**n) >= 1
        self.min_size = 3 * 2**n_layers if head == "patchgan" else 2**n_layers

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.in_channels, "discriminator input")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"expected discriminator input of at least {self.min_size} px with n_layers={self.n_layers}, got "
                f"{tuple(x.shape[-2:])}; use larger images, fewer disc_layers or fewer disc_scales"
            )
        return self.layers(x)


class MultiScaleDiscriminator(nn.Module):
    """Several PatchGANs, each applied to the input downsampled once more (pix2pixHD, UNIT, MUNIT).

    Scale ``s`` sees the input average-pooled ``s`` times by 2 (3x3, stride 2, padding ignored), so coarse scales
    judge global structure and fine scales texture.

    Args:
        in_channels: image channels.
        base_channels: channels of each PatchGAN's first layer.
        n_layers: stride-2 convolutions of each PatchGAN (>= 1).
        num_scales: number of PatchGANs (>= 1).
        norm: "none" (MUNIT/UNIT), "instance" or "layer".
        padding_mode: "reflect" (MUNIT), "zeros" or "replicate".
        head: "conv1x1" (MUNIT/UNIT) or "patchgan"; see :class:`PatchDiscriminator`.

    Raises:
        ValueError: on a bad argument, or (forward) an input smaller than ``min_size`` pixels.

    Shape:
        ``[B, in_channels, H, W] ->`` a list of ``num_scales`` score maps ``[B, 1, H_s, W_s]``, finest first.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 64,
        n_layers: int = 4,
        num_scales: int = 3,
        norm: str = "none",
        padding_mode: str = "reflect",
        head: str = "conv1x1",
    ) -> None:
        super().__init__()
        check_int("num_scales", num_scales, 1)
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, base_channels, n_layers, norm, padding_mode, head)
            for _ in range(num_scales)
        )
        # scale k sees ceil(s / 2**k) pixels, which must reach the PatchGAN's min_size
        self.min_size = (self.scales[0].min_size - 1) * 2 ** (num_scales - 1) + 1
        self.n_layers, self.num_scales = n_layers, num_scales

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() == 4 and min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"expected discriminator input of at least {self.min_size} px with n_layers={self.n_layers} and "
                f"num_scales={self.num_scales}, got {tuple(x.shape[-2:])}; use larger images, fewer disc_layers or "
                "fewer disc_scales"
            )
        outputs = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = downsample2x(x)
            outputs.append(scale(x))
        return outputs
