"""FCN-8s (Long, Shelhamer & Darrell 2015): a VGG16 backbone whose coarse class scores are refined by skips.

The stride-32 scores (from the convolutionalised fully connected layers) are upsampled 2x and summed with
1x1-convolution scores of the stride-16 features (pool4), upsampled 2x again and summed with the scores of the
stride-8 features (pool3), then upsampled 8x to the input size. Upsampling layers are transposed convolutions
initialised to bilinear interpolation and learned. Padded convolutions keep every map aligned, so no cropping
is needed.

Deviations, for training from scratch on small chest X-ray sets (the original fine-tunes ImageNet VGG16):
batch norm after every backbone convolution by default, and narrower, 3x3 "fully connected" layers
(``fc_channels=1024``, ``fc_kernel=3`` instead of 4096 and 7), which keeps the model at about 20M weights.

Reference: J. Long, E. Shelhamer, T. Darrell, "Fully convolutional networks for semantic segmentation",
CVPR 2015 (and TPAMI 39(4), 2017).
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
)
from segmentation.models.segnet import VGG16_CONVS, vgg_convs, vgg_widths


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights ``[channels, channels, 2 factor, 2 factor]`` making a transposed convolution bilinear upsampling.

    With stride ``factor`` and padding ``factor // 2`` the layer maps ``H`` to ``factor * H``.
    """
    size = 2 * factor
    center = (size - 1) / 2
    coords = torch.arange(size, dtype=torch.float32)
    line = 1 - (coords - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = line[:, None] * line[None, :]
    return weight


def _bilinear_up(channels: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, factor))
    return up


class FCN(Segmenter):
    """FCN-8s: VGG16 backbone, convolutionalised fc6/fc7, score fusion at strides 32, 16 and 8.

    Reference: Long, Shelhamer & Darrell, CVPR 2015.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        base_channels: first-level width of the VGG16 backbone (64, 128, 256, 512, 512 for 64).
        fc_channels: width of the convolutionalised fully connected layers fc6 and fc7.
        fc_kernel: kernel size of fc6 (odd; 7 in the original).
        dropout: channel dropout after fc6 and fc7 (0.5 in the original).
        norm: ``"batch"`` (default here), ``"instance"``, ``"group"`` or ``"none"`` (original) in the backbone.
        activation: ``"relu"``, ``"elu"`` or ``"leaky_relu"``.

    Raises:
        ValueError: for an argument out of range ("expected fc_kernel to be odd ...").

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]`` with H and W multiples of 32.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 64,
        fc_channels: int = 1024,
        fc_kernel: int = 3,
        dropout: float = 0.5,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.base_channels = check_int("base_channels", base_channels, 1)
        self.fc_channels = check_int("fc_channels", fc_channels, 1)
        self.fc_kernel = check_int("fc_kernel", fc_kernel, 1)
        if fc_kernel % 2 == 0:
            raise ValueError(f"expected fc_kernel to be odd (so that maps stay aligned), got {fc_kernel}")
        self.dropout = check_probability("dropout", dropout)
        self.norm = check_choice("norm", norm, NORMS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.required_divisor = 32

        widths = vgg_widths(base_channels, 5)
        self.backbone = nn.ModuleList()
        c_prev = in_channels
        for c, n in zip(widths, VGG16_CONVS):
            self.backbone.append(nn.Sequential(vgg_convs([c_prev] + [c] * n, norm, activation), nn.MaxPool2d(2)))
            c_prev = c
        self.fc = nn.Sequential(
            nn.Conv2d(widths[4], fc_channels, fc_kernel, padding=fc_kernel // 2),
            make_activation(activation),
            nn.Dropout2d(self.dropout),
            nn.Conv2d(fc_channels, fc_channels, 1),
            make_activation(activation),
            nn.Dropout2d(self.dropout),
        )
        self.score_fr = nn.Conv2d(fc_channels, out_channels, 1)
        self.score_pool4 = nn.Conv2d(widths[3], out_channels, 1)
        self.score_pool3 = nn.Conv2d(widths[2], out_channels, 1)
        self.up2_fr = _bilinear_up(out_channels, 2)
        self.up2_pool4 = _bilinear_up(out_channels, 2)
        self.up8 = _bilinear_up(out_channels, 8)

    def encoder_modules(self) -> list[nn.Module]:
        """The VGG16 backbone (without fc6/fc7)."""
        return [self.backbone]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[N, out_channels, H, W]`` for ``x`` ``[N, in_channels, H, W]``."""
        self.check_input(x)
        features = []
        y = x
        for block in self.backbone:
            y = block(y)
            features.append(y)
        score = self.up2_fr(self.score_fr(self.fc(y)))
        score = self.up2_pool4(score + self.score_pool4(features[3]))
        return self.up8(score + self.score_pool3(features[2]))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, base_channels={self.base_channels}, "
            f"fc_channels={self.fc_channels}, fc_kernel={self.fc_kernel}, dropout={self.dropout}, "
            f"norm={self.norm!r}, activation={self.activation!r}"
        )
