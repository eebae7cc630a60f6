"""Res-CR-Net: any input size, dilated separable branches, LSTM block, bad arguments, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import ResCRNet
from segmentation.models.res_cr_net import RowColumnLSTMBlock, SeparableConv2d


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(channels=4, num_blocks=1, lstm=False),
        dict(channels=4, num_blocks=2, lstm=True, norm="instance", activation="elu", out_channels=3),
    ],
)
def test_res_cr_net_contract(segmenter_contract, kwargs):
    # No pooling: odd sizes are fine.
    model = segmenter_contract.all(lambda: ResCRNet(**kwargs), sizes=[(16, 16), (9, 13)])
    assert model.required_divisor == 1


def test_separable_conv_parameters_and_receptive_field():
    # Depthwise 5x5 (no bias) + pointwise 1x1 with bias: 4*25 + 4*8 + 8. Dilation 3 -> one input impulse reaches
    # output offsets {-6, -3, 0, 3, 6} per axis: a 5x5 lattice of non-zero outputs.
    conv = SeparableConv2d(4, 8, kernel=5, dilation=3, bias=True)
    assert sum(p.numel() for p in conv.parameters()) == 4 * 25 + 4 * 8 + 8
    single = SeparableConv2d(1, 1, kernel=5, dilation=3, bias=False)
    with torch.no_grad():
        single.depthwise.weight.fill_(1.0)
        single.pointwise.weight.fill_(1.0)
        x = torch.zeros(1, 1, 15, 15)
        x[..., 7, 7] = 1.0
        y = single(x)[0, 0]
    rows, cols = torch.nonzero(y, as_tuple=True)
    assert set(rows.tolist()) == {1, 4, 7, 10, 13} and set(cols.tolist()) == {1, 4, 7, 10, 13} and len(rows) == 25


def test_lstm_block_mixes_information_along_whole_rows_and_columns():
    # A change at one pixel must reach every pixel of its row and column (bidirectional scans), but not pixels
    # elsewhere (a single row/column LSTM pass does not mix across both axes).
    torch.manual_seed(0)
    block = RowColumnLSTMBlock(4, norm="none", activation="elu").eval()
    x = torch.randn(1, 4, 6, 7)
    x2 = x.clone()
    x2[0, :, 2, 3] += 1.0
    with torch.no_grad():
        delta = (block(x2) - block(x)).abs().sum(1)[0]
    assert (delta[2] > 0).all() and (delta[:, 3] > 0).all()
    mask = torch.ones_like(delta, dtype=torch.bool)
    mask[2] = False
    mask[:, 3] = False
    assert (delta[mask] == 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_blocks=0), "expected num_blocks >= 1"),
        (dict(channels=5, lstm=True), "expected an even number of channels with lstm=True"),
        (dict(lstm="yes"), "expected lstm to be a bool"),
        (dict(dropout=1.0), r"expected dropout in \[0, 1\)"),
    ],
)
def test_res_cr_net_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResCRNet(**kwargs)
