"""The interface shared by every translator (CycleGAN, UNIT, MUNIT).

A translator maps image tensors ``[B, C, H, W]`` in ``[-1, 1]`` between two domains A and B. Training code sees only
this interface: two parameter groups, and two methods returning dicts of named losses, each with a ``"loss"`` total
that is the sum of the other (already weighted) terms.

A typical step (the loop in ``translation.training`` owns optimisers, AMP and logging)::

    fakes = {}
    g = translator.generator_losses(a, b, fakes=fakes)     # fills fakes["fake_a"], fakes["fake_b"] (detached)
    g["loss"].backward(); opt_g.step()
    d = translator.discriminator_losses(a, b, fakes=fakes)  # reuses them; without fakes, regenerates under no_grad
    d["loss"].backward(); opt_d.step()
"""

from __future__ import annotations

import abc
import contextlib
import json
from typing import Any, ClassVar, Iterable, Iterator

import torch
from torch import Tensor, nn

from runtime.distributed import frozen
from translation.generators import check_image

FAKE_KEYS = ("fake_a", "fake_b")


class Translator(nn.Module, abc.ABC):
    """Abstract unpaired image-to-image translator between domains A and B.

    Subclasses set ``name`` and ``presets``, call :meth:`_set_config` with their constructor keywords, build their
    networks, and implement the abstract methods. Everything is device-agnostic (the device comes from the inputs).

    Attributes:
        name: the key of the translator in ``translation.TRANSLATORS``.
        channels: image channels of both domains.
        required_divisor: image height and width must be multiples of it (tile or pad other sizes).
        presets: named sets of constructor keywords ("default" matches the paper; "tiny" is for CPU tests and close to
            what Oliveira & dos Santos 2018 could afford).
    """

    name: ClassVar[str] = ""
    required_divisor: int = 1
    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}
        self.channels = 1

    # -- configuration -------------------------------------------------------------------------------------------
    def _set_config(self, values: dict[str, Any]) -> None:
        config = {k: v for k, v in values.items() if k not in ("self", "__class__")}
        try:
            self._config = json.loads(json.dumps(config))  # plain JSON types (a str enum becomes its value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"expected JSON-serialisable constructor arguments for {self.name}, got {err}") from None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor keywords (JSON-able): ``type(t)(**t.config)`` rebuilds the same architecture."""
        return dict(self._config)

    # -- translation ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def a_to_b(self, x: Tensor) -> Tensor:
        """Translate images of domain A to domain B (differentiable).

        Shape:
            ``[B, C, H, W] -> [B, C, H, W]``, values in [-1, 1].
        """

    @abc.abstractmethod
    def b_to_a(self, x: Tensor) -> Tensor:
        """Translate images of domain B to domain A (differentiable).

        Shape:
            ``[B, C, H, W] -> [B, C, H, W]``, values in [-1, 1].
        """

    def translate(self, x: Tensor, direction: str) -> Tensor:
        """Translate ``x`` in ``direction`` ("a2b" or "b2a").

        Raises:
            ValueError: on an unknown direction.
        """
        if direction == "a2b":
            return self.a_to_b(x)
        if direction == "b2a":
            return self.b_to_a(x)
        raise ValueError(f"expected direction in ('a2b', 'b2a'), got {direction!r}")

    # -- parameter groups ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def generator_modules(self) -> list[nn.Module]:
        """The modules optimised by the generator step (encoders, decoders, MLPs)."""

    @abc.abstractmethod
    def discriminator_modules(self) -> list[nn.Module]:
        """The discriminators."""

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters updated by the generator optimiser (each once)."""
        return _unique_parameters(self.generator_modules())

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters updated by the discriminator optimiser (each once)."""
        return _unique_parameters(self.discriminator_modules())

    # -- losses --------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def generator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Losses of the generator step; gradients reach generator parameters only.

        Args:
            a: a batch of domain A images in [-1, 1].
            b: a batch of domain B images in [-1, 1] (batch size may differ from ``a``'s).
            fakes: optional dict, filled with the detached translations ``"fake_b"`` (of ``a``) and ``"fake_a"``
                (of ``b``) for :meth:`discriminator_losses` to reuse.

        Returns:
            Named float32 scalars, each already weighted, and ``"loss"``, their sum.
        """

    @abc.abstractmethod
    def discriminator_losses(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Losses of the discriminator step; gradients reach discriminator parameters only.

        Args:
            a: a batch of domain A images in [-1, 1].
            b: a batch of domain B images in [-1, 1].
            fakes: translations cached by :meth:`generator_losses`; when None they are regenerated under
                ``torch.no_grad``.

        Returns:
            Named float32 scalars, each already weighted, and ``"loss"``, their sum.
        """

    # -- helpers for subclasses ----------------------------------------------------------------------------------
    def _check_pair(self, a: Tensor, b: Tensor, divisor: int = 1) -> None:
        check_image(a, self.channels, "images a", divisor)
        check_image(b, self.channels, "images b", divisor)

    def _frozen_discriminators(self) -> contextlib.AbstractContextManager[None]:
        """Stop gradients from reaching discriminator parameters (they still flow through them to the inputs)."""
        return frozen(self.discriminator_parameters())

    def _fakes(self, a: Tensor, b: Tensor, fakes: dict[str, Tensor] | None) -> tuple[Tensor, Tensor]:
        """(fake_a, fake_b) from the cache, else regenerated under no_grad with :meth:`_sample_fakes`."""
        if fakes is not None:
            missing = [k for k in FAKE_KEYS if k not in fakes]
            if missing:
                raise ValueError(
                    f"expected fakes with keys {FAKE_KEYS}, got {sorted(fakes)}; pass the dict that generator_losses "
                    "filled, or None to regenerate"
                )
            return fakes["fake_a"].detach(), fakes["fake_b"].detach()
        with torch.no_grad():
            fake_a, fake_b = self._sample_fakes(a, b)
        return fake_a.detach(), fake_b.detach()

    def _sample_fakes(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(fake_a, fake_b) as the generator step makes them; deterministic translators use b_to_a / a_to_b."""
        return self.b_to_a(b), self.a_to_b(a)

    @staticmethod
    def _total(losses: dict[str, Tensor]) -> dict[str, Tensor]:
        total = None
        for value in losses.values():
            total = value if total is None else total + value
        return {"loss": total, **losses}


def _unique_parameters(modules: Iterable[nn.Module]) -> Iterator[nn.Parameter]:
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                yield p
