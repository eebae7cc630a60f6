"""Divergence guard for GAN training: notice a run that has gone wrong instead of producing garbage.

Two failure modes are detected (Oliveira & dos Santos 2018 had to repeat failed translation runs
by hand; a training loop with this guard rolls back and carries on instead):

- a loss that is NaN or infinite (exploding gradients, a bad batch, bf16 overflow);
- a discriminator that wins outright for a sustained period: over a window of ``window`` steps, the mean
  discriminator loss stays below ``d_loss_floor`` while the mean generator adversarial loss (the mean of its
  adversarial terms, e.g. one per direction) stays above ``g_adv_ceiling``. The generator then gets no useful
  gradient and the translations collapse. The default thresholds are for the least-squares criterion (LSGAN,
  CycleGAN's default): a perfect discriminator has loss 0 and pushes the generator's adversarial loss to 1 per
  discriminator output (to the number of scales for a multi-scale discriminator, whose terms are summed); for
  BCE or hinge criteria pass thresholds of that scale.

The guard only decides; the loop (``translation.training.train_translator``) acts on a verdict by
restoring the last good checkpoint and multiplying the learning rates by ``lr_factor``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import torch

__all__ = ["DivergenceGuard", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Why the guard fired: ``kind`` is ``"non_finite"`` or ``"discriminator_wins"``."""

    kind: str
    step: int
    message: str


def _value(x: float | torch.Tensor) -> float:
    return float(x.detach().float().item()) if isinstance(x, torch.Tensor) else float(x)


class DivergenceGuard:
    """Watches the losses of each step and says when training has diverged.

    Args:
        window: number of consecutive steps over which a winning discriminator must persist (>= 1).
        d_loss_floor: the discriminator "wins" while its mean total loss is below this (>= 0).
        g_adv_ceiling: ... and the generator's mean adversarial loss is above this (> 0).
        adversarial_keys: substrings that mark the generator's adversarial terms in its loss dict
            (e.g. ``"gan"`` matches CycleGAN's ``"gan_ab"``, ``"gan_ba"``); their values are averaged per step.
        lr_factor: the loop multiplies the learning rates by this after a rollback, in (0, 1).
        max_rollbacks: how many rollbacks the loop may make before giving up (>= 0).

    Raises:
        ValueError: on an argument out of range.

    Example:
        >>> guard = DivergenceGuard(window=100)
        >>> verdict = guard.update(step, d_losses, g_losses)
        >>> if verdict is not None: ...  # roll back, lower the learning rate, guard.reset()
    """

    def __init__(self, *, window: int = 200, d_loss_floor: float = 0.02, g_adv_ceiling: float = 0.9,
                 adversarial_keys: tuple[str, ...] = ("adv", "gan"), lr_factor: float = 0.5,
                 max_rollbacks: int = 3) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"expected window >= 1, got {window}")
        if not d_loss_floor >= 0:
            raise ValueError(f"expected d_loss_floor >= 0, got {d_loss_floor}")
        if not g_adv_ceiling > 0:
            raise ValueError(f"expected g_adv_ceiling > 0, got {g_adv_ceiling}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"expected lr_factor in (0, 1), got {lr_factor}")
        if not isinstance(max_rollbacks, int) or max_rollbacks < 0:
            raise ValueError(f"expected max_rollbacks >= 0, got {max_rollbacks}")
        if not adversarial_keys:
            raise ValueError("expected at least one adversarial key substring, got none")
        self.window = window
        self.d_loss_floor = float(d_loss_floor)
        self.g_adv_ceiling = float(g_adv_ceiling)
        self.adversarial_keys = tuple(adversarial_keys)
        self.lr_factor = float(lr_factor)
        self.max_rollbacks = max_rollbacks
        self.rollbacks = 0
        self.lr_scale = 1.0
        self._d: deque[float] = deque(maxlen=window)
        self._g: deque[float] = deque(maxlen=window)

    def adversarial_loss(self, g_losses: Mapping[str, float | torch.Tensor]) -> float | None:
        """Mean of the generator's adversarial terms (None when the dict has none)."""
        terms = [_value(v) for k, v in g_losses.items() if k != "loss" and any(s in k for s in self.adversarial_keys)]
        return sum(terms) / len(terms) if terms else None

    def update(self, step: int, d_losses: Mapping[str, float | torch.Tensor],
               g_losses: Mapping[str, float | torch.Tensor]) -> Verdict | None:
        """Record one step's losses; return a :class:`Verdict` when training has diverged, else None.

        Args:
            step: the step the losses belong to (for the message).
            d_losses: the discriminator loss dict (with ``"loss"``).
            g_losses: the generator loss dict (with ``"loss"``).
        """
        for name, losses in (("discriminator", d_losses), ("generator", g_losses)):
            for key, value in losses.items():
                if not math.isfinite(_value(value)):
                    return Verdict("non_finite", step, f"step {step}: {name} loss {key!r} is {_value(value)}")
        if "loss" not in d_losses:
            raise ValueError(f"expected a 'loss' key in the discriminator losses, got {sorted(d_losses)}")
        d_loss = _value(d_losses["loss"])
        g_adv = self.adversarial_loss(g_losses)
        if g_adv is None:
            return None
        self._d.append(d_loss)
        self._g.append(g_adv)
        if len(self._d) == self.window and self._discriminator_wins():
            return Verdict(
                "discriminator_wins", step,
                f"step {step}: the discriminator wins outright over the last {self.window} steps (mean D loss "
                f"{sum(self._d) / self.window:.4g} < {self.d_loss_floor:g}, mean G adversarial loss "
                f"{sum(self._g) / self.window:.4g} > {self.g_adv_ceiling:g})")
        return None

    def _discriminator_wins(self) -> bool:
        n = len(self._d)
        return n > 0 and sum(self._d) / n < self.d_loss_floor and sum(self._g) / n > self.g_adv_ceiling

    @property
    def healthy(self) -> bool:
        """False while the steps seen since the last reset already look like a winning discriminator.

        The loop marks checkpoints saved in such a state as not good, so a rollback skips them.
        """
        return not self._discriminator_wins()

    def can_roll_back(self) -> bool:
        return self.rollbacks < self.max_rollbacks

    def record_rollback(self) -> float:
        """Count a rollback, lower the learning-rate scale by ``lr_factor``, clear the window; return the new scale."""
        self.rollbacks += 1
        self.lr_scale *= self.lr_factor
        self.reset()
        return self.lr_scale

    def reset(self) -> None:
        """Forget the window (after a rollback the old losses no longer describe the run)."""
        self._d.clear()
        self._g.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale, "d": list(self._d), "g": list(self._g)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rollbacks = int(state["rollbacks"])
        self.lr_scale = float(state["lr_scale"])
        self._d = deque(state.get("d", []), maxlen=self.window)
        self._g = deque(state.get("g", []), maxlen=self.window)
