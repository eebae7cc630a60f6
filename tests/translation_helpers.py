"""Contract checks for :class:`translation.base.Translator` implementations.

The tests of CycleGAN, UNIT, MUNIT (and of any translator with the same interface) check with these
that loss dictionaries hold finite scalars that add up to
``"loss"``, and generator losses reach only generator parameters (discriminators frozen), the converse for the
discriminator losses.
"""

from __future__ import annotations

import torch

from translation.base import Translator


def images(n: int = 2, channels: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Seeded random images ``[n, channels, size, size]`` in ``[-1, 1]``, the translators' range."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def assert_losses(losses: dict[str, torch.Tensor], keys: set[str]) -> None:
    """``losses`` holds exactly ``keys`` plus ``"loss"``: finite float32 scalars, ``"loss"`` their sum."""
    assert set(losses) == keys | {"loss"}
    for k, v in losses.items():
        assert v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v), k
    total = sum(v for k, v in losses.items() if k != "loss")
    torch.testing.assert_close(losses["loss"], total)


def assert_gradient_routing(t: Translator, a: torch.Tensor, b: torch.Tensor) -> None:
    """Generator losses reach every generator parameter and no discriminator one; the converse for the D losses."""
    gen, dis = list(t.generator_parameters()), list(t.discriminator_parameters())
    assert gen and dis and not {id(p) for p in gen} & {id(p) for p in dis}
    assert {id(p) for p in gen} | {id(p) for p in dis} == {id(p) for p in t.parameters()}
    t.zero_grad(set_to_none=True)
    fakes: dict[str, torch.Tensor] = {}
    t.generator_losses(a, b, fakes=fakes)["loss"].backward()
    assert all(p.grad is not None for p in gen)
    assert sum(p.grad.abs().sum() for p in gen) > 0
    assert all(p.grad is None for p in dis)
    assert all(p.requires_grad for p in dis)  # restored after the generator step
    assert set(fakes) == {"fake_a", "fake_b"} and not fakes["fake_a"].requires_grad
    t.zero_grad(set_to_none=True)
    t.discriminator_losses(a, b, fakes=fakes)["loss"].backward()
    assert all(p.grad is None for p in gen)
    assert all(p.grad is not None for p in dis) and sum(p.grad.abs().sum() for p in dis) > 0
