"""U-Net (Ronneberger et al., MICCAI 2015), with padded convolutions so that logits match the input size.

The configuration used for chest X-rays by Oliveira & dos Santos (2018) is the default shape: a contracting path
of ``depth`` max-pool steps with two 3x3 convolutions per level, widths doubling from ``base_channels``, and an
expanding path of 2x2 transposed convolutions (or bilinear upsampling + 1x1 convolution) whose output is
concatenated with the encoder feature map of the same resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation.models.base import (
    ACTIVATIONS,
    NORMS,
    Segmenter,
    check_choice,
    check_int,
    check_probability,
    make_activation,
    make_norm,
)

UPSAMPLINGS: tuple[str, ...] = ("transpose", "bilinear")


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, norm, activation) layers, then optional spatial dropout.

    The convolutions have no bias when a norm follows (the norm's shift replaces it).

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str, dropout: float) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers += [
                nn.Conv2d(c_in, out_channels, 3, padding=1, bias=norm == "none"),
                make_norm(norm, out_channels),
                make_activation(activation),
            ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(Segmenter):
    """U-Net with configurable depth, width, normalisation, activation, dropout and upsampling.

    Reference: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional networks for biomedical image
    segmentation", MICCAI 2015; used for JSRT lungs/heart/clavicles by E. Oliveira & J. A. dos Santos,
    "Deep transfer learning for segmentation of anatomical structures in chest radiographs", SIBGRAPI 2018.

    Args:
        in_channels: image channels.
        out_channels: logit channels (one per class, or classes + background for softmax).
        depth: number of 2x downsampling steps (the original U-Net has 4).
        base_channels: feature maps at full resolution; level ``i`` has ``base_channels * 2**i``.
        norm: ``"batch"``, ``"instance"``, ``"group"`` or ``"none"`` after every 3x3 convolution.
        activation: ``"relu"``, ``"elu"`` or ``"leaky_relu"``.
        dropout: probability of channel dropout (:class:`torch.nn.Dropout2d`) at the end of every conv block
            below full resolution (the bottleneck and the deeper levels of both paths); 0 disables it.
        upsample: ``"transpose"`` (2x2 transposed convolution) or ``"bilinear"`` (bilinear + 1x1 convolution).

    Raises:
        ValueError: for an argument out of range ("expected depth >= 1 (an int), got 0").

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]`` with H and W multiples of ``2**depth``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.depth = check_int("depth", depth, 1)
        self.base_channels = check_int("base_channels", base_channels, 1)
        self.norm = check_choice("norm", norm, NORMS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.dropout = check_probability("dropout", dropout)
        self.upsample = check_choice("upsample", upsample, UPSAMPLINGS)
        self.required_divisor = 2**depth

        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0], norm, activation, 0.0)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i - 1], widths[i], norm, activation, self.dropout))
            for i in range(1, depth + 1)
        )
        self.up = nn.ModuleList()
        self.decode = nn.ModuleList()
        for i in range(depth, 0, -1):
            if upsample == "transpose":
                self.up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2))
            else:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                        nn.Conv2d(widths[i], widths[i - 1], 1),
                    )
                )
            drop = self.dropout if i > 1 else 0.0
            self.decode.append(ConvBlock(2 * widths[i - 1], widths[i - 1], norm, activation, drop))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The stem and the downsampling blocks."""
        return [self.stem, self.down]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[N, out_channels, H, W]`` for ``x`` ``[N, in_channels, H, W]``."""
        self.check_input(x)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for level, (up, decode) in enumerate(zip(self.up, self.decode)):
            y = decode(torch.cat([self.skip(level, skips.pop(), y), up(y)], dim=1))
        return self.head(y)

    def skip(self, level: int, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The skip features ``x`` as the decoder receives them at ``level`` (0 = coarsest); ``g`` is the coarser
        decoder input. The plain U-Net passes ``x`` through; :class:`AttentionUNet` gates it."""
        return x

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, depth={self.depth}, "
            f"base_channels={self.base_channels}, norm={self.norm!r}, activation={self.activation!r}, "
            f"dropout={self.dropout}, upsample={self.upsample!r}"
        )
