"""Res-CR-Net (Abdallah, Gatti et al.): full-resolution residual blocks of parallel separable atrous convolutions.

There is no pooling and no upsampling: every layer works at the input resolution, so any input size is allowed.
The receptive field grows through dilation instead. Each residual convolutional block runs three branches in
parallel, separable convolutions with kernel/dilation 3/1, 5/3 and 7/5 (receptive fields 3, 13 and 31 pixels per
convolution, two convolutions per branch), sums them with the block's shortcut and applies spatial (channel)
dropout. An optional residual LSTM block then scans every row and every column of the feature maps with a
bidirectional LSTM, adding long-range context across the whole image.

References: Y. M. Y. Abdallah, T. Alqahtani (Gatti group), "Res-CR-Net, a residual network with a novel
architecture optimized for the semantic segmentation of microscopy images", Machine Learning: Science and
Technology 1(4), 2020; and its application to chest X-ray lung segmentation (Gatti et al., 2021).
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

BRANCHES: tuple[tuple[int, int], ...] = ((3, 1), (5, 3), (7, 5))


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel x kernel`` atrous convolution (``dilation``) then a pointwise 1x1 convolution.

    On CPU the input is made channels_last first: PyTorch's NCHW kernel for the weight gradient of a dilated
    depthwise convolution is about 10x slower than the channels_last one (values are identical).

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]`` (padding keeps the size).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int, bias: bool) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel,
            padding=dilation * (kernel - 1) // 2,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.pointwise(self.depthwise(x))


class ResConvBlock(nn.Module):
    """Residual block of three parallel separable atrous branches (k/d = 3/1, 5/3, 7/5), then spatial dropout.

    Each branch: separable conv, norm, activation, separable conv, norm. Output:
    ``dropout(act(shortcut(x) + sum of branches))``; the shortcut is the identity or a 1x1 convolution when the
    channel count changes.

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str, dropout: float) -> None:
        super().__init__()
        bias = norm == "none"
        self.branches = nn.ModuleList(
            nn.Sequential(
                SeparableConv2d(in_channels, out_channels, k, d, bias),
                make_norm(norm, out_channels),
                make_activation(activation),
                SeparableConv2d(out_channels, out_channels, k, d, bias),
                make_norm(norm, out_channels),
            )
            for k, d in BRANCHES
        )
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.act = make_activation(activation)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shortcut(x)
        for branch in self.branches:
            y = y + branch(x)
        return self.drop(self.act(y))


class RowColumnLSTMBlock(nn.Module):
    """Residual block that scans rows and columns with bidirectional LSTMs.

    Every row is a sequence of ``W`` feature vectors (``C`` channels), every column one of ``H``; a bidirectional
    LSTM with ``C // 2`` hidden units per direction reads each, giving back ``C`` channels per pixel. Output:
    ``act(x + norm(rows + columns))``.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]`` (C even).
    """

    def __init__(self, channels: int, norm: str, activation: str) -> None:
        super().__init__()
        self.rows = nn.LSTM(channels, channels // 2, batch_first=True, bidirectional=True)
        self.columns = nn.LSTM(channels, channels // 2, batch_first=True, bidirectional=True)
        self.norm = make_norm(norm, channels)
        self.act = make_activation(activation)

    @staticmethod
    def _scan(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(n * h, w, c)
        out, _ = lstm(seq)
        return out.reshape(n, h, w, c).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._scan(self.rows, x)
        columns = self._scan(self.columns, x.transpose(-1, -2)).transpose(-1, -2)
        return self.act(x + self.norm((rows + columns).to(x.dtype)))


class ResCRNet(Segmenter):
    """Res-CR-Net: a stem convolution, residual blocks of separable atrous branches, an optional row/column LSTM.

    Reference: Abdallah & Alqahtani (Gatti group), Machine Learning: Science and Technology 2020.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        channels: feature maps of every block (even when ``lstm`` is on).
        num_blocks: number of residual convolutional blocks.
        dropout: spatial (channel) dropout rate at the end of each block.
        lstm: add the residual LSTM block that scans rows and columns after the convolutional blocks.
        norm: ``"batch"``, ``"instance"``, ``"group"`` or ``"none"``.
        activation: ``"leaky_relu"`` (default), ``"relu"`` or ``"elu"``.

    Raises:
        ValueError: for an argument out of range ("expected num_blocks >= 1 (an int), got 0").

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H, W]`` for any H, W >= 1 (no pooling).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        num_blocks: int = 6,
        dropout: float = 0.1,
        lstm: bool = True,
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.channels = check_int("channels", channels, 1)
        self.num_blocks = check_int("num_blocks", num_blocks, 1)
        self.dropout = check_probability("dropout", dropout)
        if not isinstance(lstm, bool):
            raise ValueError(f"expected lstm to be a bool, got {lstm!r}")
        if lstm and channels % 2:
            raise ValueError(
                f"expected an even number of channels with lstm=True (two LSTM directions), got {channels}; "
                "use an even channels or lstm=False"
            )
        self.lstm = lstm
        self.norm = check_choice("norm", norm, NORMS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.required_divisor = 1

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
            make_activation(activation),
        )
        self.blocks = nn.Sequential(
            *(ResConvBlock(channels, channels, norm, activation, self.dropout) for _ in range(num_blocks))
        )
        self.lstm_block = RowColumnLSTMBlock(channels, norm, activation) if lstm else None
        self.head = nn.Conv2d(channels, out_channels, 1)

    def encoder_modules(self) -> list[nn.Module]:
        """The stem and the residual convolutional blocks (there is no separate decoder; the head stays free)."""
        return [self.stem, self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``[N, out_channels, H, W]`` for ``x`` ``[N, in_channels, H, W]``."""
        self.check_input(x)
        y = self.blocks(self.stem(x))
        if self.lstm_block is not None:
            y = self.lstm_block(y)
        return self.head(y)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, channels={self.channels}, "
            f"num_blocks={self.num_blocks}, dropout={self.dropout}, lstm={self.lstm}, norm={self.norm!r}, "
            f"activation={self.activation!r}"
        )
