"""SegNet (Badrinarayanan et al. 2017): a VGG16 encoder whose decoder upsamples with the encoder's max-pool indices.

Each encoder level ends with a 2x2 max-pooling that remembers where every maximum came from; the decoder level
of the same resolution places its input back at those positions (:func:`torch.nn.functional.max_unpool2d`,
zeros elsewhere) and densifies the sparse map with 3x3 convolutions. No encoder features are copied to the
decoder, only the indices, which keeps boundaries sharp at a low memory cost.

Reference: V. Badrinarayanan, A. Kendall, R. Cipolla, "SegNet: a deep convolutional encoder-decoder architecture
for image segmentation", IEEE TPAMI 39(12):2481-2495, 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmentation.models.base import (
    ACTIVATIONS,
    NORMS,
    Segmenter,
    check_choice,
    check_int,
    make_activation,
    make_norm,
)

VGG16_CONVS: tuple[int, ...] = (2, 2, 3, 3, 3)


def vgg_convs(channels: list[int], norm: str, activation: str) -> nn.Sequential:
    """3x3 (conv, norm, activation) layers through ``channels[0] -> channels[1] -> ... -> channels[-1]``."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
            make_norm(norm, c_out),
            make_activation(activation),
        ]
    return nn.Sequential(*layers)


def vgg_widths(base_channels: int, depth: int) -> list[int]:
    """VGG widths: ``base * 2**i`` capped at ``8 * base`` (64, 128, 256, 512, 512 for base 64)."""
    return [base_channels * min(2**i, 8) for i in range(depth)]


class SegNet(Segmenter):
    """SegNet with max-pool-index upsampling; VGG16-shaped by default (depth 5, 64 base channels, BN, ReLU).

    Level ``i`` has ``(2, 2, 3, 3, 3)[i]`` convolutions (3 beyond the fifth level) with ``base * min(2**i, 8)``
    feature maps, then a 2x2 max-pooling with indices. The decoder mirrors it: unpooling with the indices,
    the same number of 3x3 convolutions, the last one narrowing to the next level's width; a 1x1 convolution
    gives the logits.

    Reference: Badrinarayanan, Kendall & Cipolla, IEEE TPAMI 2017.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        depth: number of pooling steps (5 in SegNet).
        base_channels: feature maps of the first level.
        norm: ``"batch"`` (SegNet), ``"instance"``, ``"group"`` or ``"none"``.
        activation: ``"relu"``, ``"elu"`` or ``"leaky_relu"``.

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
        depth: int = 5,
        base_channels: int = 64,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.depth = check_int("depth", depth, 1)
        self.base_channels = check_int("base_channels", base_channels, 1)
        self.norm = check_choice("norm", norm, NORMS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.required_divisor = 2**depth

        widths = vgg_widths(base_channels, depth)
        n_convs = [VGG16_CONVS[i] if i < len(VGG16_CONVS) else 3 for i in range(depth)]
        self.encoder = nn.ModuleList()
        c_prev = in_channels
        for c, n in zip(widths, n_convs):
            self.encoder.append(vgg_convs([c_prev] + [c] * n, norm, activation))
            c_prev = c
        self.decoder = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            c_next = widths[i - 1] if i > 0 else widths[0]
            self.decoder.append(vgg_convs([widths[i]] * n_convs[i] + [c_next], norm, activation))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The VGG encoder levels."""
        return [self.encoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[N, out_channels, H, W]`` for ``x`` ``[N, in_channels, H, W]``."""
        self.check_input(x)
        switches: list[tuple[torch.Tensor, torch.Size]] = []
        y = x
        for level in self.encoder:
            y = level(y)
            size = y.shape[-2:]
            y, indices = F.max_pool2d(y, 2, return_indices=True)
            switches.append((indices, size))
        for level in self.decoder:
            indices, size = switches.pop()
            y = F.max_unpool2d(y, indices, 2, output_size=size)
            y = level(y)
        return self.head(y)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, depth={self.depth}, "
            f"base_channels={self.base_channels}, norm={self.norm!r}, activation={self.activation!r}"
        )
