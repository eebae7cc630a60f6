"""All-Convolutional: no pooling layers, strided convolutions, Table VIII count, bad arguments, contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segmentation.models import AllConvolutional, AllDropout


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=2, base_channels=4),
        dict(depth=3, base_channels=2, activation="leaky_relu", norm="instance", in_channels=2),
    ],
)
def test_all_convolutional_contract(segmenter_contract, kwargs):
    d = 2 ** kwargs["depth"]
    segmenter_contract.all(lambda: AllConvolutional(**kwargs), sizes=[(16, 16), (16 + d, 24)])


def test_no_pooling_and_extra_weights_are_the_strided_convolutions():
    model = AllConvolutional(depth=2, base_channels=4)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # Each pooling becomes a 3x3 stride-2 conv keeping the width (+bias): 4*4*9+4 and 8*8*9+8 weights.
    extra = model.num_parameters() - AllDropout(depth=2, base_channels=4).num_parameters()
    assert extra == (4 * 4 * 9 + 4) + (8 * 8 * 9 + 8)


def test_all_convolutional_counts_match_novikov_table_viii():
    # Table VIII of Novikov et al. 2018: All-Convolutional 34.5M parameters.
    with torch.device("meta"):  # count without allocating 34M weights
        n = AllConvolutional().num_parameters()
    assert round(n / 1e6, 1) == 34.5, n


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(depth=-1), "expected depth >= 1"), (dict(activation="selu"), "expected activation to be one of")],
)
def test_all_convolutional_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AllConvolutional(**kwargs)
