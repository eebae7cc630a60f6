"""Segmenter base class, building blocks and the create_segmenter lookup."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segmentation.models import SEGMENTERS, Segmenter, create_segmenter
from segmentation.models.base import check_choice, check_int, check_probability, make_activation, make_norm

CONTRACT_NAMES = {
    "unet",
    "segnet",
    "fcn",
    "invertednet",
    "all_dropout",
    "all_convolutional",
    "attention_unet",
    "attention_bcdu_net",
    "res_cr_net",
}


def test_registry_holds_exactly_the_contract_names():
    assert set(SEGMENTERS) == CONTRACT_NAMES
    assert all(issubclass(cls, Segmenter) for cls in SEGMENTERS.values())


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_every_default_builds_and_reports_its_size(name):
    with torch.device("meta"):  # defaults are full size: count without allocating
        model = create_segmenter(name, out_channels=3)
    assert model.out_channels == 3 and model.in_channels == 1
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
    assert isinstance(model.required_divisor, int) and 256 % model.required_divisor == 0


def test_create_segmenter_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"expected a segmenter name in \[.*'all_dropout'.*'unet'\], got 'unet3d'"):
        create_segmenter("unet3d")


def test_create_segmenter_passes_keywords_and_rejects_unknown_ones():
    model = create_segmenter("unet", depth=1, base_channels=2, out_channels=3)
    assert model.out_channels == 3 and model.depth == 1
    with pytest.raises(TypeError):
        create_segmenter("unet", widht=3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_int("depth", 0, 1), r"expected depth >= 1 \(an int\), got 0"),
        (lambda: check_int("depth", True, 0), "expected depth >= 0"),
        (lambda: check_probability("dropout", 1.0), r"expected dropout in \[0, 1\), got 1.0"),
        (lambda: check_probability("p", 1.5, upper_inclusive=True), r"expected p in \[0, 1\], got 1.5"),
        (lambda: check_choice("norm", "layer", ("batch",)), r"expected norm to be one of \('batch',\), got 'layer'"),
    ],
)
def test_checks_raise_readable_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_make_norm_and_activation():
    assert isinstance(make_norm("batch", 4), nn.BatchNorm2d)
    inst = make_norm("instance", 4)
    assert isinstance(inst, nn.InstanceNorm2d) and not inst.track_running_stats and inst.affine
    assert make_norm("group", 12, groups=8).num_groups == 6  # largest divisor of 12 not above 8
    assert isinstance(make_norm("none", 4), nn.Identity)
    x = torch.tensor([-2.0, 3.0])
    assert torch.allclose(make_activation("leaky_relu")(x.clone()), torch.tensor([-0.02, 3.0]))
    assert torch.allclose(make_activation("elu")(x.clone()), torch.tensor([torch.expm1(torch.tensor(-2.0)), 3.0]))


class _Toy(Segmenter):
    def __init__(self) -> None:
        super().__init__()
        self.required_divisor = 8
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.conv(x)


def test_divisor_message_names_size_and_nearest_valid_sizes():
    with pytest.raises(ValueError, match=r"multiples of 8 for _Toy, got 20x9; .* e\.g\. 16x8 or 24x16"):
        _Toy()(torch.zeros(1, 1, 20, 9))


def test_freeze_encoder_without_encoder_says_so():
    with pytest.raises(NotImplementedError, match="does not define an encoder"):
        _Toy().freeze_encoder()


def test_num_parameters_by_hand():
    toy = _Toy()
    assert toy.num_parameters() == 2  # 1x1 conv: one weight, one bias
    toy.conv.bias.requires_grad_(False)
    assert toy.num_parameters(trainable_only=True) == 1
