"""Tests of segmentation.losses: hand-computed values, gradients, function == module, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segmentation import losses as L

# One 2x2 image, one channel: target [[1, 1], [0, 0]], probabilities [[0.75, 0.5], [0.25, 0.25]], so that
# soft TP = 0.75 + 0.5 = 1.25, FP = 0.25 + 0.25 = 0.5, FN = 0.25 + 0.5 = 0.75.
PROBS = torch.tensor([[[[0.75, 0.5], [0.25, 0.25]]]], dtype=torch.float64)
LOGITS = torch.logit(PROBS)
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)

ALL_NAMES = tuple(L.LOSSES)


# Every (name, mode) pair create_loss accepts: bce is multilabel only, ce multiclass only.
EXCLUDED = {("bce", "multiclass"), ("ce", "multilabel")}
CASES = [(n, m) for n in ALL_NAMES for m in ("multilabel", "multiclass") if (n, m) not in EXCLUDED]


def _batch(mode: str, dtype: torch.dtype = torch.float32, b: int = 2, c: int = 3, size: int = 8):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(b, c, size, size, generator=g, dtype=dtype)
    if mode == "multilabel":
        targets = (torch.rand(b, c, size, size, generator=g) > 0.5).to(dtype)
    else:
        targets = torch.randint(0, c, (b, size, size), generator=g)
    return logits, targets


def _perfect_logits(targets: torch.Tensor, mode: str, c: int, scale: float) -> torch.Tensor:
    onehot = targets if mode == "multilabel" else F.one_hot(targets, c).permute(0, 3, 1, 2).to(torch.float64)
    return (2 * onehot.to(torch.float64) - 1) * scale


# ------------------------------------------------------------------------------------------------ hand values


def test_dice_hand_value():
    # Dice = 2 * 1.25 / (2 * 1.25 + 0.5 + 0.75) = 2.5 / 3.75 = 2/3.
    assert L.dice_loss(LOGITS, TARGET, smooth=0).item() == pytest.approx(1 / 3)
    # smooth 1: (2.5 + 1) / (3.75 + 1).
    assert L.dice_loss(LOGITS, TARGET, smooth=1).item() == pytest.approx(1 - 3.5 / 4.75)


def test_tversky_hand_values_alpha_weighs_false_positives():
    # TI = TP / (TP + a FP + b FN)
    assert L.tversky_loss(LOGITS, TARGET, alpha=0.6, beta=0.4, smooth=0).item() == pytest.approx(
        1 - 1.25 / (1.25 + 0.6 * 0.5 + 0.4 * 0.75)
    )
    # alpha = 1, beta = 0 is 1 - precision = 1 - 1.25 / 1.75.
    assert L.tversky_loss(LOGITS, TARGET, alpha=1, beta=0, smooth=0).item() == pytest.approx(1 - 1.25 / 1.75)
    # alpha = beta = 0.5 with smooth 0 equals Dice.
    dice = L.dice_loss(LOGITS, TARGET, smooth=0).item()
    assert L.tversky_loss(LOGITS, TARGET, smooth=0).item() == pytest.approx(dice)
    # focal: (1 - TI) ** gamma with Maga's 0.6 / 0.4 / 0.675.
    expected = (1 - 1.25 / 1.85) ** 0.675
    assert L.focal_tversky_loss(LOGITS, TARGET, smooth=0).item() == pytest.approx(expected)


def test_tanimoto_hand_value():
    # T(p, t) = sum pt / (sum p^2 + sum t^2 - sum pt) = 1.25 / (0.9375 + 2 - 1.25);
    # complement: 1.5 / (1.4375 + 2 - 1.5).
    t = 1.25 / 1.6875
    tc = 1.5 / 1.9375
    assert L.tanimoto_loss(LOGITS, TARGET, complement=False, smooth=0).item() == pytest.approx(1 - t)
    assert L.tanimoto_loss(LOGITS, TARGET, smooth=0).item() == pytest.approx(1 - (t + tc) / 2)


def test_bce_and_dice_bce_hand_value():
    bce = -(math.log(0.75) + math.log(0.5) + math.log(0.75) + math.log(0.75)) / 4
    assert L.bce_loss(LOGITS, TARGET).item() == pytest.approx(bce)
    assert L.dice_bce_loss(LOGITS, TARGET, smooth=0).item() == pytest.approx(1 / 3 + bce)
    assert L.dice_bce_loss(LOGITS, TARGET, dice_weight=2, ce_weight=0.5, smooth=0).item() == pytest.approx(
        2 / 3 + 0.5 * bce
    )


def test_ce_hand_value_with_class_weights():
    # Two pixels, two classes; softmax of [0, log 3] is [0.25, 0.75].
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3), math.log(3)]]]], dtype=torch.float64)
    targets = torch.tensor([[[0, 1]]])
    assert L.ce_loss(logits, targets).item() == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2)
    w = torch.tensor([3.0, 1.0])
    expected = -(3 * math.log(0.25) + 1 * math.log(0.75)) / 4
    assert L.ce_loss(logits, targets, class_weights=w).item() == pytest.approx(expected)


def test_batch_class_weights_are_inverse_pixel_shares():
    onehot = torch.zeros(1, 3, 2, 2)
    onehot[0, 0, 0, 0] = 1  # share 1/4 -> inverse 4
    onehot[0, 1] = 1
    onehot[0, 1, 0, 0] = 0  # share 3/4 -> inverse 4/3; class 2 absent -> 0
    w = L.batch_class_weights(onehot)
    assert w.tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert L.batch_class_weights(torch.zeros(1, 2, 2, 2)).tolist() == pytest.approx([0.5, 0.5])


def test_weighted_dice_uses_batch_weights():
    logits, targets = _batch("multilabel", torch.float64)
    w = L.batch_class_weights(targets)
    expected = L.dice_loss(logits, targets, class_weights=w)
    assert L.weighted_dice_loss(logits, targets).item() == pytest.approx(expected.item())
    assert not torch.allclose(expected, L.dice_loss(logits, targets))


def test_generalized_dice_hand_value():
    # Two channels on the 2x2 image: channel 0 as above (2 target pixels -> w 1/4), channel 1 its complement
    # (2 target pixels -> w 1/4); equal weights cancel in the ratio.
    logits = torch.cat([LOGITS, -LOGITS], dim=1)
    target = torch.cat([TARGET, 1 - TARGET], dim=1)
    # channel 1 probs [[.25, .5], [.75, .75]], target [[0, 0], [1, 1]]: TP 1.5, FP 0.75, FN 0.5.
    num = 2 * (1.25 + 1.5) / 4
    den = ((2 * 1.25 + 0.5 + 0.75) + (2 * 1.5 + 0.75 + 0.5)) / 4
    assert L.generalized_dice_loss(logits, target, smooth=0).item() == pytest.approx(1 - num / den)
    assert L.generalized_dice_weights(target).tolist() == pytest.approx([0.5, 0.5])  # 1/4 each, normalised
    # 1 and 3 target pixels: raw weights 1 and 1/9 -> 0.9, 0.1; an absent class takes the largest present weight.
    onehot = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    assert L.generalized_dice_weights(onehot).tolist() == pytest.approx([0.9 / 1.9, 0.1 / 1.9, 0.9 / 1.9])


# ------------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_gradcheck(name, mode):
    logits, targets = _batch(mode, torch.float64, b=1, c=2, size=3)
    loss = L.create_loss(name, mode=mode).double()
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, targets), (logits,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_weight_map_loss_gradcheck():
    logits, targets = _batch("multilabel", torch.float64, b=1, c=2, size=5)
    maps = L.compute_weight_maps(targets, sigma=1.0).double()
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: L.weight_map_loss(x, targets, maps), (logits,), eps=1e-6, atol=1e-5, fast_mode=True
    )


# ------------------------------------------------------------------------------------------------ modules


FUNCTIONS = {
    "dice": L.dice_loss,
    "weighted_dice": L.weighted_dice_loss,
    "generalized_dice": L.generalized_dice_loss,
    "tversky": L.tversky_loss,
    "focal_tversky": L.focal_tversky_loss,
    "tanimoto": L.tanimoto_loss,
    "dice_bce": L.dice_bce_loss,
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
def test_function_equals_module(name, mode):
    logits, targets = _batch(mode)
    module = L.create_loss(name, mode=mode)
    assert module(logits, targets).item() == pytest.approx(FUNCTIONS[name](logits, targets, mode=mode).item(), 1e-6)


def test_cross_entropy_function_equals_module_and_torch():
    logits, targets = _batch("multilabel")
    w = torch.tensor([1.0, 2.0, 0.5])
    assert L.create_loss("bce", class_weights=w)(logits, targets).item() == pytest.approx(
        L.bce_loss(logits, targets, w).item()
    )
    assert L.bce_loss(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets).item(), 1e-6
    )
    logits, targets = _batch("multiclass")
    assert L.create_loss("ce", class_weights=w)(logits, targets).item() == pytest.approx(
        F.cross_entropy(logits, targets, weight=w).item(), 1e-6
    )


def test_class_weights_are_buffers():
    loss = L.DiceLoss(class_weights=[1.0, 2.0])
    assert "class_weights" in dict(loss.named_buffers())
    assert "class_weights" in loss.state_dict()
    assert loss.double().class_weights.dtype == torch.float64
    assert "pos_weight" in L.BCELoss(pos_weight=[2.0]).state_dict()


def test_sum_loss_terms_and_dice_bce():
    logits, targets = _batch("multilabel")
    total = L.SumLoss({"dice": L.DiceLoss(), "bce": L.BCELoss()}, {"bce": 0.5})
    terms = total.terms(logits, targets)
    assert set(terms) == {"dice", "bce", "loss"}
    assert terms["loss"].item() == pytest.approx(terms["dice"].item() + 0.5 * terms["bce"].item())
    dice_bce = L.create_loss("dice_bce")
    assert dice_bce(logits, targets).item() == pytest.approx(terms["dice"].item() + terms["bce"].item(), 1e-6)
    logits, targets = _batch("multiclass")
    mc = L.create_loss("dice_bce", mode="multiclass")
    expected = L.dice_loss(logits, targets, "multiclass") + L.ce_loss(logits, targets)
    assert mc(logits, targets).item() == pytest.approx(expected.item(), 1e-6)


def test_weight_maps_hand_values():
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, 2:6, 2:6] = 1  # share 16/64 = 1/4
    plain = L.compute_weight_maps(masks, edge_weight=0)
    # balance: 0.5 / 0.25 = 2 inside, 0.5 / 0.75 = 2/3 outside; averages to 1.
    assert plain[0, 0, 3, 3].item() == pytest.approx(2.0)
    assert plain[0, 0, 0, 0].item() == pytest.approx(2 / 3)
    assert plain.mean().item() == pytest.approx(1.0)
    edged = L.compute_weight_maps(masks, sigma=1.0, edge_weight=5)
    assert edged.shape == (1, 1, 8, 8) and bool((edged > 0).all())
    # an edge pixel weighs more than the far corner relative to their balance terms.
    assert edged[0, 0, 2, 3] / plain[0, 0, 2, 3] > edged[0, 0, 0, 0] / plain[0, 0, 0, 0]
    assert (edged / plain).max().item() == pytest.approx(6.0)  # the blurred edge peaks at 1 -> 1 + 5
    assert L.compute_weight_maps(torch.zeros(2, 3, 8, 8), exclusive=True).shape == (2, 8, 8)


def test_weight_map_loss_scales_cross_entropy():
    logits, targets = _batch("multilabel")
    maps = torch.full_like(logits, 2.0)
    assert L.weight_map_loss(logits, targets, maps).item() == pytest.approx(2 * L.bce_loss(logits, targets).item())
    logits, targets = _batch("multiclass")
    ones = torch.ones(targets.shape)
    module = L.WeightMapLoss(mode="multiclass")
    assert module(logits, targets, ones).item() == pytest.approx(L.ce_loss(logits, targets).item(), 1e-6)


# ------------------------------------------------------------------------------------------------ behaviour


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_loss_decreases_to_zero_for_perfect_logits(name, mode):
    _, targets = _batch(mode, torch.float64, c=3)
    loss = L.create_loss(name, mode=mode)
    values = [loss(_perfect_logits(targets, mode, 3, s), targets).item() for s in (0.5, 1, 2, 4, 8, 30)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] < 1e-6, values


def test_optimising_free_logits_fits_targets():
    # 40 sign-gradient steps of 0.1 (what Adam does early on, without the optimizer's start-up cost) on free logits
    # with Dice + BCE must shrink the loss by more than half: it starts at the random-guess value (about 0.5 + 0.9)
    # and each step moves every logit 0.1 towards its target, i.e. logits of magnitude ~4 at the end.
    logits, targets = _batch("multilabel")
    logits.requires_grad_(True)
    loss = L.create_loss("dice_bce")
    start = loss(logits, targets).item()
    for _ in range(40):
        value = loss(logits, targets)
        (grad,) = torch.autograd.grad(value, logits)
        with torch.no_grad():
            logits -= 0.1 * grad.sign()
    assert loss(logits, targets).item() < 0.5 * start


def test_bf16_autocast_and_channels_last():
    logits, targets = _batch("multilabel")
    reference = L.dice_bce_loss(logits, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = L.create_loss("dice_bce")(logits.to(torch.bfloat16), targets)
    assert bf16.dtype == torch.float32
    assert bf16.item() == pytest.approx(reference.item(), rel=2e-2)
    cl = L.dice_bce_loss(logits.contiguous(memory_format=torch.channels_last), targets)
    assert cl.item() == pytest.approx(reference.item(), 1e-6)


# ------------------------------------------------------------------------------------------------ bad arguments


def test_create_loss_unknown_name_lists_names():
    with pytest.raises(ValueError, match="expected a loss name in .*'dice_bce'.*got 'dise'"):
        L.create_loss("dise")
    with pytest.raises(ValueError, match=r"unknown \['alhpa'\]"):
        L.create_loss("tversky", alhpa=0.3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: L.DiceLoss(mode="softmax"), "expected mode 'multilabel'.*got 'softmax'"),
        (lambda: L.create_loss("bce", mode="multiclass"), "expected mode='multilabel' for bce.*use 'ce'"),
        (lambda: L.create_loss("ce", mode="multilabel"), "expected mode='multiclass' for ce.*use 'bce'"),
        (lambda: L.TverskyLoss(alpha=-1), "expected alpha >= 0, got -1"),
        (lambda: L.TverskyLoss(alpha=0, beta=0), "expected alpha \\+ beta > 0"),
        (lambda: L.FocalTverskyLoss(gamma=0), "expected gamma > 0, got 0"),
        (lambda: L.DiceLoss(smooth=-1), "expected smooth >= 0, got -1"),
        (lambda: L.DiceLoss(class_weights=[1, -1]), "expected class_weights finite and >= 0"),
        (lambda: L.SumLoss({}), "expected at least one loss"),
        (lambda: L.SumLoss({"dice": L.DiceLoss()}, {"bce": 1.0}), "unknown terms \\['bce'\\]"),
        (lambda: L.compute_weight_maps(torch.zeros(4, 4)), "expected masks of shape \\[N, C, H, W\\]"),
        (lambda: L.compute_weight_maps(torch.zeros(1, 1, 4, 4), sigma=0), "expected sigma > 0, got 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_inputs():
    logits, targets = _batch("multilabel")
    with pytest.raises(ValueError, match="expected multilabel targets of the logits' shape"):
        L.dice_loss(logits, targets[:, :2])
    with pytest.raises(ValueError, match="expected logits of shape \\[B, C, H, W\\]"):
        L.dice_loss(logits[0], targets[0])
    with pytest.raises(ValueError, match="expected multiclass targets of shape"):
        L.dice_loss(logits, targets, mode="multiclass")
    with pytest.raises(ValueError, match="expected multiclass target values in \\[0, 2\\], got range \\[3, 3\\]"):
        L.dice_loss(logits, torch.full((2, 8, 8), 3), mode="multiclass")
    with pytest.raises(ValueError, match="expected multiclass targets of dtype torch.int64"):
        L.ce_loss(logits, torch.zeros(2, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="expected >= 2 channels"):
        L.ce_loss(logits[:, :1], torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="expected 3 class_weights .*got 2"):
        L.DiceLoss(class_weights=[1.0, 1.0])(logits, targets)
    with pytest.raises(ValueError, match="expected weight_maps of shape"):
        L.weight_map_loss(logits, targets, torch.ones(2, 8, 8))
