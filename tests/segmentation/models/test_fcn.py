"""FCN-8s: shapes, bilinear initialisation of the upsampling layers, bad arguments, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import FCN
from segmentation.models.fcn import bilinear_kernel


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base_channels=2, fc_channels=8),
        dict(base_channels=2, fc_channels=4, fc_kernel=1, norm="none", out_channels=3, dropout=0.0),
    ],
)
def test_fcn_contract(segmenter_contract, kwargs):
    segmenter_contract.all(lambda: FCN(**kwargs), sizes=[(32, 32), (32, 64)])


def test_bilinear_kernel_by_hand():
    # factor 2 -> 4x4 kernel, 1-D profile (1 - |i - 1.5| / 2) = (0.25, 0.75, 0.75, 0.25), outer product.
    k = bilinear_kernel(2, 2)
    line = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k[0, 0], line[:, None] * line[None, :]) and torch.equal(k[0, 1], torch.zeros(4, 4))


def test_fcn_upsampling_starts_as_interpolation_of_a_constant():
    # A constant score map upsampled 8x by the bilinear-initialised layer stays constant away from the border.
    model = FCN(base_channels=2, fc_channels=4)
    with torch.no_grad():
        up = model.up8(torch.full((1, 1, 4, 4), 3.0))
    assert up.shape == (1, 1, 32, 32) and torch.allclose(up[..., 4:28, 4:28], torch.tensor(3.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fc_kernel=4), "expected fc_kernel to be odd"),
        (dict(fc_channels=0), "expected fc_channels >= 1"),
        (dict(dropout=2.0), r"expected dropout in \[0, 1\)"),
        (dict(activation="tanh"), "expected activation to be one of"),
    ],
)
def test_fcn_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FCN(**kwargs)


def test_fcn_needs_multiples_of_32():
    with pytest.raises(ValueError, match="multiples of 32 for FCN, got 48x64"):
        FCN(base_channels=2, fc_channels=4)(torch.zeros(1, 1, 48, 64))
