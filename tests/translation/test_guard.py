"""Tests for translation.guard.DivergenceGuard (the rollback itself is tested in test_training.py)."""

from __future__ import annotations

import math

import pytest
import torch

from translation.guard import DivergenceGuard


def test_non_finite_loss_fires_at_once():
    guard = DivergenceGuard(window=5)
    assert guard.update(0, {"loss": torch.tensor(0.3)}, {"loss": 1.0, "adv_a": 0.5}) is None
    verdict = guard.update(1, {"loss": 0.3}, {"loss": torch.tensor(float("nan")), "adv_a": 0.5})
    assert verdict is not None and verdict.kind == "non_finite" and verdict.step == 1
    assert "generator loss 'loss' is nan" in verdict.message
    assert guard.update(2, {"loss": math.inf}, {"loss": 1.0}).kind == "non_finite"


def test_discriminator_win_must_be_sustained_for_a_window():
    guard = DivergenceGuard(window=3, d_loss_floor=0.05, g_adv_ceiling=0.9)
    winning = ({"loss": 0.01}, {"loss": 5.0, "gan_ab": 0.9, "gan_ba": 1.0, "cycle_a": 3.0})  # adversarial mean 0.95
    assert guard.update(0, *winning) is None
    assert guard.update(1, *winning) is None
    assert not guard.healthy
    verdict = guard.update(2, *winning)
    assert verdict is not None and verdict.kind == "discriminator_wins" and "last 3 steps" in verdict.message
    # a balanced step inside the window pulls the means back: mean D = (0.01 + 0.01 + 0.5) / 3 > 0.05
    guard.reset()
    guard.update(0, *winning)
    guard.update(1, *winning)
    assert guard.update(2, {"loss": 0.5}, {"loss": 1.0, "adv_a": 0.3}) is None
    assert guard.healthy


def test_no_adversarial_terms_never_fires_on_winning():
    guard = DivergenceGuard(window=1)
    assert guard.update(0, {"loss": 0.0}, {"loss": 5.0, "cycle": 5.0}) is None
    assert guard.adversarial_loss({"loss": 1.0, "gan_ab": 0.25, "gan_ba": 0.5, "cycle_a": 9.0}) == 0.375


def test_rollback_bookkeeping_and_state_round_trip():
    guard = DivergenceGuard(window=4, lr_factor=0.5, max_rollbacks=2)
    guard.update(0, {"loss": 0.1}, {"loss": 1.0, "adv": 0.5})
    state = guard.state_dict()
    assert guard.record_rollback() == 0.5
    assert guard.record_rollback() == 0.25
    assert not guard.can_roll_back()
    other = DivergenceGuard(window=4)
    other.load_state_dict(state)
    assert other.state_dict() == state
    guard.load_state_dict(state)
    assert guard.rollbacks == 0 and guard.lr_scale == 1.0 and guard.can_roll_back()


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 0}, "expected window >= 1, got 0"),
    ({"d_loss_floor": -1.0}, "expected d_loss_floor >= 0, got -1.0"),
    ({"g_adv_ceiling": 0.0}, "expected g_adv_ceiling > 0, got 0.0"),
    ({"lr_factor": 1.0}, r"expected lr_factor in \(0, 1\), got 1.0"),
    ({"max_rollbacks": -1}, "expected max_rollbacks >= 0, got -1"),
    ({"adversarial_keys": ()}, "at least one adversarial key"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DivergenceGuard(**kwargs)
