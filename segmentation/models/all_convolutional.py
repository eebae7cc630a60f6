"""All-Convolutional (Novikov et al. 2018): All-Dropout with every max-pooling replaced by a strided convolution.

Following Springenberg et al. ("Striving for simplicity: the all convolutional net", ICLR 2015 workshop), each
2x2 max-pooling of All-Dropout becomes a learned 3x3 convolution with stride 2 that keeps the number of feature
maps (followed, like every convolution, by the activation and Gaussian dropout).

Reference: A. A. Novikov et al., "Fully convolutional architectures for multi-class segmentation in chest
radiographs", IEEE TMI 37(8):1865-1876, 2018.
"""

from __future__ import annotations

from segmentation.models.all_dropout import NovikovNet, doubling_widths


class AllConvolutional(NovikovNet):
    """All-Convolutional network: no pooling, subsampling by stride-2 3x3 convolutions (Novikov et al. 2018).

    With the defaults (64 base channels, depth 4) the strided convolutions add 3.1M weights to All-Dropout's
    31.4M, matching the 34.5M of the paper's Table VIII.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        depth: number of stride-2 subsampling convolutions.
        base_channels: feature maps at full resolution, doubled after each subsampling.
        dropout: Gaussian dropout rate ``d`` after every convolution (noise std ``sqrt(d / (1 - d))``).
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
            downsampling="strided_conv",
            activation=activation,
            dropout=dropout,
            norm=norm,
        )
        self.depth = depth
        self.base_channels = base_channels
