"""SegNet: shapes, max-pool-index unpooling, bad arguments, parameter count, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import SegNet


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=3, base_channels=4),
        dict(depth=2, base_channels=4, norm="group", activation="elu", in_channels=2, out_channels=3),
    ],
)
def test_segnet_contract(segmenter_contract, kwargs):
    d = 2 ** kwargs["depth"]
    segmenter_contract.all(lambda: SegNet(**kwargs), sizes=[(16, 16), (16 + d, 24)])


def test_segnet_default_is_vgg16_sized():
    # SegNet's paper reports 29.5M trainable weights for the VGG16-based encoder-decoder (BN, 5 levels).
    with torch.device("meta"):
        n = SegNet(out_channels=2).num_parameters()
    assert abs(n - 29.5e6) < 0.05e6, n


def test_segnet_unpooling_puts_values_back_at_the_max_positions():
    # Hooks catch the encoder's pre-pooling features and the decoder's input (the unpooled map): every 2x2 window
    # of the unpooled map holds exactly one non-zero value, equal to that window's maximum. ELU, not ReLU, so that
    # no maximum is exactly 0.
    model = SegNet(depth=1, base_channels=2, norm="none", activation="elu").eval()
    seen = {}
    model.decoder[0].register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    enc = {}
    model.encoder[0].register_forward_hook(lambda m, a, out: enc.setdefault("y", out))
    with torch.no_grad():
        model(torch.randn(1, 1, 8, 8))
    unpooled, features = seen["x"], enc["y"]
    windows = features.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 2, 4, 4, 4)
    assert torch.equal((unpooled != 0).reshape(1, 2, 4, 2, 4, 2).permute(0, 1, 2, 4, 3, 5).sum((-1, -2)),
                       torch.ones(1, 2, 4, 4, dtype=torch.long))
    assert torch.allclose(unpooled.sum((-1, -2)), windows.amax(-1).sum((-1, -2)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=0), "expected depth >= 1"),
        (dict(base_channels=-1), "expected base_channels >= 1"),
        (dict(norm="batchnorm"), "expected norm to be one of"),
        (dict(out_channels=0), "expected out_channels >= 1"),
    ],
)
def test_segnet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegNet(**kwargs)
