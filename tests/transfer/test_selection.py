"""Selection rules: which data each needs, the label-free score, and a hand-computed Dice."""

from __future__ import annotations

import pytest
import torch

from transfer.selection import Selector, mean_dice


class Identity(torch.nn.Module):
    """A translator that changes nothing (so every cycle criterion is perfect)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def a_to_b(self, x):
        return x

    def b_to_a(self, x):
        return x


class Threshold(torch.nn.Module):
    """Logits = input - 0.5 on un-normalised inputs: the mask is the bright pixels."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x - 0.5 + 0 * self.w


def test_mean_dice_hand_computed():
    pred = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    target = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    pred[0, 0, 0, :] = True  # 2 pixels
    target[0, 0, :, 0] = True  # 2 pixels, 1 shared -> Dice 2*1/(2+2)
    assert mean_dice(pred, target) == pytest.approx(0.5)


def test_label_free_score_is_the_mean_of_both_criteria():
    images = torch.rand(4, 1, 8, 8)
    masks = (images > 0.5).float()
    masks[0] = 1 - masks[0]  # one wrong source label -> source_cycle < 1
    sel = Selector("label_free", lambda x: x, source_val=(images, masks), target_images=torch.rand(3, 1, 8, 8))
    out = sel(Identity(), Threshold())
    assert out["cycle_agreement"] == pytest.approx(1.0)
    assert out["source_cycle"] == pytest.approx(out["source_dice"]) and out["source_cycle"] < 1
    assert out["score"] == pytest.approx(0.5 * (out["source_cycle"] + 1.0))
    assert "target_val_dice" not in out  # no target label involved


def test_rules_need_their_data():
    norm = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="fraction of 0 has no labelled subset"):
        Selector("labelled", norm)
    with pytest.raises(ValueError, match="expected the data of selection rule 'paper_target_val'"):
        Selector("paper_target_val", norm)
    with pytest.raises(ValueError, match="expected selection rule in"):
        Selector("oracle", norm)
    images = torch.rand(2, 1, 8, 8)
    out = Selector("paper_target_val", norm, target_val=(images, (images > 0.5).float()))(Identity(), Threshold())
    assert out["score"] == pytest.approx(out["target_val_dice"]) == pytest.approx(1.0)
