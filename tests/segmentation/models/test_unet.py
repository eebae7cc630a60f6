"""U-Net: shapes for several sizes and options, bad arguments, hand-computed parameter count, contract."""

from __future__ import annotations

import pytest
import torch

from segmentation.models import UNet, create_segmenter


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth=2, base_channels=4),
        dict(depth=3, base_channels=4, norm="instance", activation="elu", dropout=0.2),
        dict(depth=2, base_channels=8, norm="group", activation="leaky_relu", upsample="bilinear"),
        dict(depth=1, base_channels=4, norm="none", in_channels=3, out_channels=5),
    ],
)
def test_unet_contract(segmenter_contract, kwargs):
    d = 2 ** kwargs["depth"]
    model = segmenter_contract.all(lambda: UNet(**kwargs), sizes=[(16, 16), (16 + d, 24)])
    assert model.required_divisor == d


def test_unet_parameter_count_by_hand():
    # depth=1, base=2, no norm (convs keep their bias): stem 1->2 (9*2+2) and 2->2 (36+2); level 1: 2->4 (72+4)
    # and 4->4 (144+4); transposed 2x2 4->2 (32+2); decoder 4->2 (72+2) and 2->2 (36+2); head 1x1 2->1 (2+1).
    model = UNet(depth=1, base_channels=2, norm="none")
    assert model.num_parameters() == 20 + 38 + 76 + 148 + 34 + 74 + 38 + 3 == 431


def test_unet_default_matches_original_width():
    # Ronneberger's U-Net (64 base channels, depth 4, 2 classes) has about 31.0M weights; ours with BN and no conv
    # bias must land within 1% of that.
    with torch.device("meta"):
        n = UNet(base_channels=64, out_channels=2).num_parameters()
    assert abs(n - 31.03e6) / 31.03e6 < 0.01, n


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=0), "expected depth >= 1"),
        (dict(base_channels=0), "expected base_channels >= 1"),
        (dict(in_channels=0), "expected in_channels >= 1"),
        (dict(norm="layer"), "expected norm to be one of"),
        (dict(activation="gelu"), "expected activation to be one of"),
        (dict(dropout=1.0), r"expected dropout in \[0, 1\)"),
        (dict(dropout=-0.1), r"expected dropout in \[0, 1\)"),
        (dict(upsample="nearest"), "expected upsample to be one of"),
        (dict(depth=2.0), "expected depth >= 1"),
    ],
)
def test_unet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


def test_unet_wrong_channels_message():
    model = UNet(depth=1, base_channels=2)
    with pytest.raises(ValueError, match=r"expected input of shape \[N, 1, H, W\].*got \[1, 3, 8, 8\]"):
        model(torch.zeros(1, 3, 8, 8))


def test_unet_freeze_encoder_keeps_norms_in_eval_and_stats_fixed():
    model = create_segmenter("unet", depth=2, base_channels=4)
    model.freeze_encoder()
    model.train()
    stem_bn = model.stem[1]
    before = stem_bn.running_mean.clone()
    model(torch.randn(2, 1, 16, 16) * 3 + 1).mean().backward()
    assert not stem_bn.training and torch.equal(stem_bn.running_mean, before)
    assert all(p.grad is None for p in model.stem.parameters()) and all(p.grad is None for p in model.down.parameters())
    assert model.head.weight.grad is not None and model.decode[0][1].training
    assert model.num_parameters(trainable_only=True) < model.num_parameters()
    model.freeze_encoder(False)
    model.train()
    assert stem_bn.training and model.num_parameters(trainable_only=True) == model.num_parameters()
