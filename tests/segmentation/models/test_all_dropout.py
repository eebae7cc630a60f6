"""All-Dropout and its Gaussian dropout: noise statistics by hand, Table VIII count, bad arguments, contract."""

from __future__ import annotations

import math

import pytest
import torch

from segmentation.models import AllDropout, GaussianDropout


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=2, base_channels=4),
        dict(depth=3, base_channels=2, activation="relu", norm="batch", dropout=0.0, out_channels=4),
    ],
)
def test_all_dropout_contract(segmenter_contract, kwargs):
    d = 2 ** kwargs["depth"]
    segmenter_contract.all(lambda: AllDropout(**kwargs), sizes=[(16, 16), (16 + d, 24)])


def test_gaussian_dropout_sigma_and_statistics():
    # d = 0.5 -> sigma = sqrt(0.5 / 0.5) = 1; d = 0.2 -> sqrt(0.25) = 0.5. On 10^6 ones, mean 1 and std sigma
    # within 4 standard errors (se of the mean = sigma / 1000).
    assert GaussianDropout(0.5).sigma == 1.0
    layer = GaussianDropout(0.2)
    assert math.isclose(layer.sigma, 0.5)
    torch.manual_seed(0)
    y = layer(torch.ones(1000, 1000))
    assert abs(y.mean().item() - 1.0) < 4 * 0.5 / 1000 and abs(y.std().item() - 0.5) < 0.005
    layer.eval()
    x = torch.randn(3, 3)
    assert torch.equal(layer(x), x)


def test_all_dropout_counts_match_novikov_table_viii():
    # Table VIII of Novikov et al. 2018: All-Dropout 31.4M parameters (64 base channels, 4 poolings).
    with torch.device("meta"):  # count without allocating 31M weights
        n = AllDropout().num_parameters()
    assert round(n / 1e6, 1) == 31.4, n


def test_all_dropout_is_stochastic_in_training_only():
    model = AllDropout(depth=1, base_channels=2, dropout=0.3)
    x = torch.randn(1, 1, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=0), "expected depth >= 1"),
        (dict(base_channels=0), "expected base_channels >= 1"),
        (dict(dropout=1.0), r"expected dropout in \[0, 1\)"),
        (dict(norm="weird"), "expected norm to be one of"),
    ],
)
def test_all_dropout_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AllDropout(**kwargs)
