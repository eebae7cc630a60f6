"""InvertedNet: inverted widths, delayed subsampling, Table VIII count, bad arguments, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import InvertedNet
from segmentation.models.all_dropout import _DelayedPool


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=2, base_channels=8),
        dict(depth=3, base_channels=16, norm="batch", dropout=0.0, out_channels=4),
    ],
)
def test_invertednet_contract(segmenter_contract, kwargs):
    d = 2 ** kwargs["depth"]
    segmenter_contract.all(lambda: InvertedNet(**kwargs), sizes=[(16, 16), (16 + d, 24)])


def test_widths_halve_down_the_encoder():
    assert InvertedNet().widths == (256, 128, 64, 32, 16)


def test_delayed_pool_by_hand():
    # 2x2 max with stride 1, last row/column replicated: size kept.
    x = torch.tensor([[[[1.0, 5.0, 2.0], [3.0, 0.0, 4.0], [0.0, 6.0, 1.0]]]])
    expected = torch.tensor([[[[5.0, 5.0, 4.0], [6.0, 6.0, 4.0], [6.0, 6.0, 1.0]]]])
    assert torch.equal(_DelayedPool()(x), expected)


def test_invertednet_counts_match_novikov_table_viii():
    # Table VIII of Novikov et al. 2018: InvertedNet 3.1M parameters.
    with torch.device("meta"):
        n = InvertedNet().num_parameters()
    assert round(n / 1e6, 1) == 3.1, n


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(base_channels=100, depth=4), "expected base_channels divisible by 2\\*\\*depth = 16.*got 100"),
        (dict(depth=0), "expected depth >= 1"),
        (dict(dropout=-0.5), r"expected dropout in \[0, 1\)"),
    ],
)
def test_invertednet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InvertedNet(**kwargs)
