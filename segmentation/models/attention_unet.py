"""Attention U-Net and Attention BCDU-Net: U-Nets whose skips pass through attention gates.

An attention gate (Oktay et al. 2018) weighs each skip feature map ``x`` by coefficients ``alpha`` in (0, 1)
computed from ``x`` and the coarser decoder features ``g`` (the gating signal): ``x`` is projected with a 2x2
stride-2 convolution to ``g``'s resolution, ``g`` with a 1x1 convolution, the two are combined, a 1x1
convolution and a sigmoid give one coefficient per coarse pixel, and bilinear upsampling brings ``alpha`` back
to ``x``'s resolution. The additive gate combines with ``relu(theta_x + phi_g)``; the bidirectional ConvLSTM
gate (as in BCDU-Net, Azad et al. 2019) reads the two projections as a sequence of length two in both orders and
combines them with the final hidden states, in place of the addition.

References: O. Oktay et al., "Attention U-Net: learning where to look for the pancreas", MIDL 2018;
R. Azad, M. Asadi-Aghbolaghi, M. Fathy, S. Escalera, "Bi-directional ConvLSTM U-Net with densely connected
convolutions", ICCV Workshops 2019; B. Maga, "Attention BCDU-Net: segmentation of chest radiographs", 2021
(the attention U-Net and its BConvLSTM-gated variant for lungs, heart and clavicles).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmentation.models.base import check_choice, make_norm
from segmentation.models.unet import UNet

GATES: tuple[str, ...] = ("additive", "bconvlstm")


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al., NeurIPS 2015): the LSTM's matrix products become 3x3 convolutions.

    Args:
        in_channels: channels of each input step.
        hidden_channels: channels of the hidden and cell states.

    Shape:
        ``x: [N, in_channels, H, W]``, ``state: ([N, hidden, H, W], [N, hidden, H, W])`` -> the new state.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h.to(x.dtype)], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class BidirectionalConvLSTM(nn.Module):
    """Reads a short sequence of maps forwards and backwards; returns both final hidden states concatenated.

    Shape:
        a list of ``T`` maps ``[N, in_channels, H, W]`` -> ``[N, 2 hidden_channels, H, W]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.forward_cell = ConvLSTMCell(in_channels, hidden_channels)
        self.backward_cell = ConvLSTMCell(in_channels, hidden_channels)

    def forward(self, steps: list[torch.Tensor]) -> torch.Tensor:
        state_f = state_b = None
        for x_f, x_b in zip(steps, reversed(steps)):
            state_f = self.forward_cell(x_f, state_f)
            state_b = self.backward_cell(x_b, state_b)
        return torch.cat([state_f[0], state_b[0]], dim=1)


class AttentionGate(nn.Module):
    """Grid attention gate on a skip connection (Oktay et al. 2018), additive or BConvLSTM-combined.

    Args:
        skip_channels: channels of the skip features ``x``.
        gating_channels: channels of the gating signal ``g`` (half ``x``'s resolution).
        inter_channels: channels of the projections ``theta_x`` and ``phi_g``.
        gate: ``"additive"`` (``relu(theta_x + phi_g)``) or ``"bconvlstm"`` (bidirectional ConvLSTM over
            ``[theta_x, phi_g]``).
        norm: normalisation after the output projection.

    Shape:
        ``x: [N, skip_channels, H, W]``, ``g: [N, gating_channels, H/2, W/2]`` -> gated ``x`` (same shape);
        the coefficients of the last call are kept in ``last_alpha`` ``[N, 1, H, W]`` for inspection.
    """

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int, gate: str, norm: str) -> None:
        super().__init__()
        self.gate = check_choice("gate", gate, GATES)
        self.theta_x = nn.Conv2d(skip_channels, inter_channels, 2, stride=2, bias=False)
        self.phi_g = nn.Conv2d(gating_channels, inter_channels, 1)
        if gate == "bconvlstm":
            self.combine = BidirectionalConvLSTM(inter_channels, inter_channels)
            psi_in = 2 * inter_channels
        else:
            psi_in = inter_channels
        self.psi = nn.Conv2d(psi_in, 1, 1)
        self.out = nn.Sequential(nn.Conv2d(skip_channels, skip_channels, 1), make_norm(norm, skip_channels))
        self.last_alpha: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        theta, phi = self.theta_x(x), self.phi_g(g)
        if self.gate == "bconvlstm":
            q = F.relu(self.combine([theta, phi]))
        else:
            q = F.relu(theta + phi)
        alpha = torch.sigmoid(self.psi(q))
        alpha = F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
        self.last_alpha = alpha.detach()
        return self.out(x * alpha)


class AttentionUNet(UNet):
    """U-Net with an attention gate on every skip connection (Oktay et al. 2018; Maga 2021 for chest X-rays).

    The encoder and decoder are those of :class:`segmentation.models.unet.UNet`; before concatenation each skip
    ``x`` is multiplied by coefficients computed from ``x`` and the coarser decoder features.

    Args:
        in_channels: image channels.
        out_channels: logit channels.
        depth: number of 2x2 max-pooling steps.
        base_channels: feature maps at full resolution, doubled at each level.
        norm: ``"batch"``, ``"instance"``, ``"group"`` or ``"none"``.
        activation: ``"relu"``, ``"elu"`` or ``"leaky_relu"``.
        dropout: channel dropout at the end of each conv block below full resolution.
        gate: ``"additive"`` (Attention U-Net) or ``"bconvlstm"`` (Attention BCDU-Net).

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
        gate: str = "additive",
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, depth=depth,
                         base_channels=base_channels, norm=norm, activation=activation, dropout=dropout,
                         upsample="transpose")
        self.gate = check_choice("gate", gate, GATES)
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.gates = nn.ModuleList(
            AttentionGate(widths[i - 1], widths[i], max(1, widths[i - 1] // 2), gate, norm) for i in range(depth, 0, -1)
        )

    def attention_maps(self) -> list[torch.Tensor]:
        """Coefficients ``[N, 1, H_i, W_i]`` of each gate from the last forward pass, coarsest first."""
        return [g.last_alpha for g in self.gates if g.last_alpha is not None]

    def skip(self, level: int, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Weigh the skip features by the gate of ``level`` computed from ``x`` and the gating signal ``g``."""
        return self.gates[level](x, g)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, depth={self.depth}, "
            f"base_channels={self.base_channels}, norm={self.norm!r}, activation={self.activation!r}, "
            f"dropout={self.dropout}, gate={self.gate!r}"
        )


class AttentionBCDUNet(AttentionUNet):
    """Attention BCDU-Net: Attention U-Net whose gates combine skip and gating signal with a bidirectional ConvLSTM.

    Same keywords as :class:`AttentionUNet` without ``gate`` (fixed to ``"bconvlstm"``).

    Raises:
        ValueError: for an argument out of range.

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
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            depth=depth,
            base_channels=base_channels,
            norm=norm,
            activation=activation,
            dropout=dropout,
            gate="bconvlstm",
        )
