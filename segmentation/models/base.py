"""The segmenter contract shared by every architecture, and small validated building blocks.

Every segmenter is a plain :class:`torch.nn.Module` subclassing :class:`Segmenter`: ``forward(x)`` returns
logits ``[N, out_channels, H, W]`` (no sigmoid/softmax), ``predict(x)`` runs the forward pass in eval mode
under :func:`torch.inference_mode` and restores the previous training mode, ``num_parameters()`` counts
weights, ``required_divisor`` says which input sizes the design allows and ``freeze_encoder()`` freezes the
contracting path (its weights and its normalisation statistics). The contract follows
segmentation_models.pytorch's ``SegmentationModel`` in spirit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

NORMS: tuple[str, ...] = ("batch", "instance", "group", "none")
ACTIVATIONS: tuple[str, ...] = ("relu", "elu", "leaky_relu")

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``.

    Raises:
        ValueError: "expected <name> >= <minimum>, got <value>" (also for non-integers and bools).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"expected {name} >= {minimum} (an int), got {value!r}")
    return value


def check_probability(name: str, value: object, upper_inclusive: bool = False) -> float:
    """Return ``value`` as a float if it lies in [0, 1) (or [0, 1] when ``upper_inclusive``).

    Raises:
        ValueError: "expected <name> in [0, 1), got <value>".
    """
    closing = "]" if upper_inclusive else ")"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and 0.0 <= float(value) and (float(value) <= 1.0 if upper_inclusive else float(value) < 1.0)
    if not ok:
        raise ValueError(f"expected {name} in [0, 1{closing}, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: "expected <name> to be one of (...), got <value>".
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {choices}, got {value!r}")
    return str(value)


def make_norm(norm: str, channels: int, groups: int = 8) -> nn.Module:
    """Return the normalisation layer named ``norm`` for ``channels`` feature maps.

    ``"instance"`` is affine and always normalises with each image's own statistics (no running statistics, in
    training and in eval alike, which keeps its robustness to a change of scanner). ``"group"`` uses
    ``min(groups, channels)`` groups, reduced to a divisor of ``channels``.

    Raises:
        ValueError: for an unknown ``norm``.
    """
    check_choice("norm", norm, NORMS)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        g = min(groups, channels)
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    return nn.Identity()


def make_activation(activation: str) -> nn.Module:
    """Return the activation named ``activation`` (ReLU, ELU, or LeakyReLU with slope 0.01), in place.

    Raises:
        ValueError: for an unknown ``activation``.
    """
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "elu":
        return nn.ELU(inplace=True)
    return nn.LeakyReLU(0.01, inplace=True)


class Segmenter(nn.Module):
    """Base class of every segmenter: logits out, ``predict`` in inference mode, encoder freezing.

    Subclasses set ``self.in_channels``, ``self.out_channels`` and ``self.required_divisor`` in ``__init__``,
    call :meth:`check_input` at the top of ``forward`` and override :meth:`encoder_modules` to name their
    contracting path.

    Attributes:
        in_channels: number of input channels the network expects.
        out_channels: number of logit channels (classes) it returns.
        required_divisor: the input height and width must be multiples of it (1: any size).
    """

    in_channels: int = 1
    out_channels: int = 1
    required_divisor: int = 1

    def __init__(self) -> None:
        super().__init__()
        self._encoder_frozen = False

    # ----------------------------------------------------------------------------------------------- contract
    def check_input(self, x: torch.Tensor) -> None:
        """Check that ``x`` is ``[N, in_channels, H, W]`` with H and W multiples of ``required_divisor``.

        Raises:
            ValueError: naming the input size, the valid multiples and the nearest valid sizes.
        """
        name = type(self).__name__
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape [N, {self.in_channels}, H, W] for {name}, got {list(x.shape)}; "
                f"pass in_channels={x.shape[1] if x.dim() == 4 else '?'} when building the model or fix the input"
            )
        d = self.required_divisor
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % d or w % d:
            lo_h, lo_w = max(d, h // d * d), max(d, w // d * d)
            hi_h, hi_w = -(-h // d) * d, -(-w // d) * d
            raise ValueError(
                f"expected input height and width to be multiples of {d} for {name}, got {h}x{w}; "
                f"resize or pad to a multiple of {d}, e.g. {lo_h}x{lo_w} or {hi_h}x{hi_w}"
            )
        if h < d or w < d:
            raise ValueError(f"expected input height and width >= {d} for {name}, got {h}x{w}")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass in eval mode under :func:`torch.inference_mode`; restores the previous mode.

        Args:
            x: normalised images.

        Returns:
            Logits (no sigmoid/softmax), created in inference mode (no autograd history).

        Shape:
            x: ``[N, in_channels, H, W]``; returns ``[N, out_channels, H, W]``.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self(x)
        finally:
            self.train(was_training)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ----------------------------------------------------------------------------------------------- encoder
    def encoder_modules(self) -> list[nn.Module]:
        """The modules of the contracting path (encoder), frozen by :meth:`freeze_encoder`.

        Raises:
            NotImplementedError: when the architecture has no separable encoder.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define an encoder to freeze")

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Freeze (or unfreeze) the encoder: no gradients to its weights, its norm layers kept in eval.

        While frozen, :meth:`train` keeps the encoder's normalisation layers in eval mode: batch norm normalises
        with its stored running statistics and fine-tuning batches do not update them.

        Args:
            freeze: ``True`` to freeze, ``False`` to make the encoder trainable again.
        """
        for module in self.encoder_modules():
            for p in module.parameters():
                p.requires_grad_(not freeze)
        self._encoder_frozen = freeze
        self.train(self.training)

    @property
    def encoder_frozen(self) -> bool:
        """Whether :meth:`freeze_encoder` is in effect."""
        return self._encoder_frozen

    def train(self, mode: bool = True) -> Segmenter:
        """Set training mode; the norm layers of a frozen encoder stay in eval mode."""
        super().train(mode)
        if self._encoder_frozen and mode:
            for module in self.encoder_modules():
                for m in module.modules():
                    if isinstance(m, _NORM_TYPES):
                        m.eval()
        return self

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"
