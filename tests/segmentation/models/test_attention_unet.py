"""Attention U-Net and Attention BCDU-Net: shapes, gate coefficients, ConvLSTM by hand, bad arguments, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import AttentionBCDUNet, AttentionUNet, UNet
from segmentation.models.attention_unet import ConvLSTMCell


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (AttentionUNet, dict(depth=2, base_channels=4)),
        (AttentionUNet, dict(depth=2, base_channels=4, norm="group", activation="elu", dropout=0.1)),
        (AttentionBCDUNet, dict(depth=2, base_channels=4, out_channels=3)),
    ],
)
def test_attention_contract(segmenter_contract, cls, kwargs):
    d = 2 ** kwargs["depth"]
    segmenter_contract.all(lambda: cls(**kwargs), sizes=[(16, 16), (16 + d, 24)])


@pytest.mark.parametrize("cls", [AttentionUNet, AttentionBCDUNet])
def test_gate_coefficients_lie_in_unit_interval_at_skip_resolution(cls):
    model = cls(depth=2, base_channels=4).eval()
    with torch.no_grad():
        model(torch.randn(2, 1, 32, 48))
    maps = model.attention_maps()
    assert [tuple(a.shape) for a in maps] == [(2, 1, 16, 24), (2, 1, 32, 48)]
    assert all(((a > 0) & (a < 1)).all() for a in maps)


def test_gates_add_weights_to_the_unet():
    # Same encoder/decoder as UNet; the gates are the only extra weights.
    base = UNet(depth=2, base_channels=4).num_parameters()
    additive = AttentionUNet(depth=2, base_channels=4)
    assert additive.num_parameters() - base == sum(g.numel() for g in additive.gates.parameters())
    assert AttentionBCDUNet(depth=2, base_channels=4).num_parameters() > additive.num_parameters()


def test_convlstm_cell_by_hand():
    # Zero gate weights and bias b: i = f = o = sigmoid(b_i), g = tanh(b_g); from a zero state
    # c = sigmoid(b_i) * tanh(b_g), h = sigmoid(b_o) * tanh(c).
    cell = ConvLSTMCell(1, 1)
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    h, c = cell(torch.randn(1, 1, 3, 3))
    c_exp = 0.5 * torch.tanh(torch.tensor(1.0))
    assert torch.allclose(c, c_exp.expand(1, 1, 3, 3)) and torch.allclose(h, 0.5 * torch.tanh(c_exp).expand(1, 1, 3, 3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gate="multiplicative"), "expected gate to be one of"),
        (dict(depth=0), "expected depth >= 1"),
        (dict(base_channels=0), "expected base_channels >= 1"),
    ],
)
def test_attention_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionUNet(**kwargs)


def test_bcdu_net_has_no_gate_keyword():
    with pytest.raises(TypeError):
        AttentionBCDUNet(gate="additive")
