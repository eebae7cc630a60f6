"""InvertedNet (Novikov et al. 2018): many high-resolution feature maps, fewer at coarse scales.

The feature-map counts of U-Net are inverted: the full-resolution level has the most (256 by default) and the
count halves after each subsampling and doubles after each upsampling, so most of the capacity describes
low-level, high-resolution structure (thin clavicles). Subsampling is delayed: each 2x2 max-pooling has
stride 1 and the following 3x3 convolution subsamples with stride 2. ELU activations and Gaussian dropout after
every convolution regularise the small JSRT training set.

Reference: A. A. Novikov et al., "Fully convolutional architectures for multi-class segmentation in chest
radiographs", IEEE TMI 37(8):1865-1876, 2018 (Fig. 4; 3.1M parameters in Table VIII).
"""

from __future__ import annotations

from segmentation.models.all_dropout import NovikovNet
from segmentation.models.base import check_int


class InvertedNet(NovikovNet):
    """InvertedNet: halving widths down the encoder, delayed subsampling, ELU and Gaussian dropout.

    With the defaults (256 feature maps at full resolution, depth 4: 256, 128, 64, 32, 16) the network has
    3.1M weights, the count of the paper's Table VIII.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        depth: number of subsampling steps.
        base_channels: feature maps at full resolution, halved after each subsampling; must be divisible by
            ``2**depth``.
        dropout: Gaussian dropout rate ``d`` after every convolution (noise std ``sqrt(d / (1 - d))``).
        activation: ``"elu"`` (paper), ``"relu"`` or ``"leaky_relu"``.
        norm: ``"none"`` (paper), ``"batch"``, ``"instance"`` or ``"group"``.

    Raises:
        ValueError: for an argument out of range, or ``base_channels`` not divisible by ``2**depth``.

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]`` with H and W multiples of ``2**depth``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 256,
        dropout: float = 0.1,
        activation: str = "elu",
        norm: str = "none",
    ) -> None:
        check_int("depth", depth, 1)
        check_int("base_channels", base_channels, 1)
        if base_channels % 2**depth:
            raise ValueError(
                f"expected base_channels divisible by 2**depth = {2**depth} (it is halved {depth} times), "
                f"got {base_channels}; use e.g. {max(1, base_channels // 2**depth) * 2**depth}"
            )
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            widths=tuple(base_channels // 2**i for i in range(depth + 1)),
            downsampling="delayed",
            activation=activation,
            dropout=dropout,
            norm=norm,
        )
        self.depth = depth
        self.base_channels = base_channels
