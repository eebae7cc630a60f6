"""All-Dropout (Novikov et al. 2018): a U-Net with Gaussian dropout after every convolution.

Also home of :class:`NovikovNet`, the encoder-decoder the three architectures of Novikov et al. share
(All-Dropout, All-Convolutional in ``all_convolutional.py``, InvertedNet in ``invertednet.py``): padded 3x3
convolutions, two per level, each followed by an activation and multiplicative Gaussian dropout; the expanding
path upsamples by plain 2x nearest-neighbour repetition (no up-convolution) and concatenates the encoder feature
map of the same resolution. With 64 feature maps at full resolution and four subsampling steps this gives
31.38M weights, the 31.4M of the paper's Table VIII for All-Dropout.

Reference: A. A. Novikov, D. Lenis, D. Major, J. Hladuvka, M. Wimmer, K. Buhler, "Fully convolutional
architectures for multi-class segmentation in chest radiographs", IEEE TMI 37(8):1865-1876, 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
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

DOWNSAMPLINGS: tuple[str, ...] = ("pool", "strided_conv", "delayed")


class GaussianDropout(nn.Module):
    """Multiplicative Gaussian noise ``x * (1 + sigma * eps)``, ``eps ~ N(0, 1)``, in training only.

    With ``sigma = sqrt(d / (1 - d))`` the noise has the variance of Bernoulli dropout with rate ``d``
    (Srivastava et al., JMLR 2014), as used by Novikov et al. 2018. The expectation is unchanged, so no
    rescaling is needed at evaluation.

    Args:
        rate: the equivalent Bernoulli dropout rate ``d`` in [0, 1).

    Raises:
        ValueError: if ``rate`` is outside [0, 1).
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = check_probability("dropout", rate)
        self.sigma = math.sqrt(self.rate / (1.0 - self.rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0.0:
            return x
        return x * (1.0 + self.sigma * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"rate={self.rate}, sigma={self.sigma:.4f}"


def _conv_unit(
    in_channels: int, out_channels: int, norm: str, activation: str, dropout: float, stride: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=norm == "none"),
        make_norm(norm, out_channels),
        make_activation(activation),
        GaussianDropout(dropout),
    )


class _DelayedPool(nn.Module):
    """2x2 max-pooling with stride 1 (replicate-padded, size kept); the next convolution subsamples."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)


class NovikovNet(Segmenter):
    """The encoder-decoder shared by All-Dropout, All-Convolutional and InvertedNet (Novikov et al. 2018).

    Level ``i`` (0 = full resolution) has two 3x3 convolutions with ``widths[i]`` feature maps, each followed by
    the optional norm, the activation and Gaussian dropout. Between levels the encoder subsamples by:

    - ``"pool"``: 2x2 max-pooling with stride 2 (All-Dropout);
    - ``"strided_conv"``: a learned 3x3 convolution with stride 2 that keeps the channel count, in place of the
      pooling (All-Convolutional, after Springenberg et al. 2015);
    - ``"delayed"``: 2x2 max-pooling with stride 1 and the subsampling delayed to the first convolution of the
      next level, which has stride 2 (InvertedNet).

    The decoder repeats pixels 2x (nearest) and concatenates the skip, then applies the level's two convolutions;
    a 1x1 convolution gives the logits.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        widths: feature maps per level, full resolution first; ``len(widths) - 1`` subsampling steps.
        downsampling: ``"pool"``, ``"strided_conv"`` or ``"delayed"``.
        activation: ``"relu"``, ``"elu"`` or ``"leaky_relu"``.
        dropout: Gaussian dropout rate ``d`` after every 3x3 convolution (0 disables it).
        norm: ``"none"`` (as in the paper), ``"batch"``, ``"instance"`` or ``"group"``.

    Raises:
        ValueError: for an argument out of range.

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]``, H and W multiples of ``2 ** (len(widths) - 1)``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512, 1024),
        downsampling: str = "pool",
        activation: str = "elu",
        dropout: float = 0.1,
        norm: str = "none",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        widths = tuple(widths)
        if len(widths) < 2:
            raise ValueError(f"expected at least 2 levels (depth >= 1), got widths={widths}")
        for w in widths:
            check_int("every width", w, 1)
        self.widths = widths
        self.downsampling = check_choice("downsampling", downsampling, DOWNSAMPLINGS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.dropout = check_probability("dropout", dropout)
        self.norm = check_choice("norm", norm, NORMS)
        self.required_divisor = 2 ** (len(widths) - 1)

        def unit(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
            return _conv_unit(c_in, c_out, norm, activation, self.dropout, stride)

        self.stem = nn.Sequential(unit(in_channels, widths[0]), unit(widths[0], widths[0]))
        self.down = nn.ModuleList()
        for i in range(1, len(widths)):
            c_prev, c = widths[i - 1], widths[i]
            if downsampling == "pool":
                layers = [nn.MaxPool2d(2), unit(c_prev, c)]
            elif downsampling == "strided_conv":
                layers = [unit(c_prev, c_prev, stride=2), unit(c_prev, c)]
            else:
                layers = [_DelayedPool(), unit(c_prev, c, stride=2)]
            self.down.append(nn.Sequential(*layers, unit(c, c)))
        self.decode = nn.ModuleList(
            nn.Sequential(unit(widths[i] + widths[i - 1], widths[i - 1]), unit(widths[i - 1], widths[i - 1]))
            for i in range(len(widths) - 1, 0, -1)
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The full-resolution convolutions and the subsampling levels."""
        return [self.stem, self.down]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[N, out_channels, H, W]`` for ``x`` ``[N, in_channels, H, W]``."""
        self.check_input(x)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for decode in self.decode:
            y = decode(torch.cat([skips.pop(), F.interpolate(y, scale_factor=2.0, mode="nearest")], dim=1))
        return self.head(y)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, widths={self.widths}, "
            f"downsampling={self.downsampling!r}, activation={self.activation!r}, dropout={self.dropout}, "
            f"norm={self.norm!r}"
        )


def doubling_widths(base_channels: int, depth: int) -> tuple[int, ...]:
    """``(base, 2 base, ..., 2**depth base)``, after checking both arguments.

    Raises:
        ValueError: "expected depth >= 1 ..." or "expected base_channels >= 1 ...".
    """
    check_int("depth", depth, 1)
    check_int("base_channels", base_channels, 1)
    return tuple(base_channels * 2**i for i in range(depth + 1))


class AllDropout(NovikovNet):
    """All-Dropout: U-Net-shaped, Gaussian dropout after every convolution (Novikov et al. 2018, Fig. 2).

    Defaults (64 base channels, depth 4, ELU, plain upsampling + concatenation, no norm) reproduce the
    paper's design; its Table VIII lists 31.4M parameters, this network has 31,377,793 with one output.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        depth: number of 2x2 max-pooling steps.
        base_channels: feature maps at full resolution, doubled after each pooling.
        dropout: Gaussian dropout rate ``d`` (noise std ``sqrt(d / (1 - d))``).
        activation: ``"elu"`` (paper), ``"relu"`` or ``"leaky_relu"``.
        norm: ``"none"`` (paper), ``"batch"``, ``"instance"`` or ``"group"``.

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
        base_channels: int = 64,
        dropout: float = 0.1,
        activation: str = "elu",
        norm: str = "none",
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            widths=doubling_widths(base_channels, depth),
            downsampling="pool",
            activation=activation,
            dropout=dropout,
            norm=norm,
        )
        self.depth = depth
        self.base_channels = base_channels
