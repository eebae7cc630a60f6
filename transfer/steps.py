"""The three kinds of step of the transfer method (Oliveira & dos Santos, SIBGRAPI 2018, Sec. III).

* discriminative step: D_A and D_B learn to tell real from translated images; the generators are frozen.
* generative step: G_AB and G_BA learn against frozen discriminators, with the translator's own cycle / identity /
  reconstruction terms.
* supervised step: the discriminators are frozen; the segmenter M_A learns on source pairs (a, y_a), on translated
  labelled target pairs (G_BA(b), y_b), on the cycle G_BA(G_AB(a)) with y_a, and optionally on confident
  pseudo-labels of G_BA(b). Its loss back-propagates into G_AB and G_BA so that translation keeps what M_A needs.

Every step zeroes the gradients of the parameters it may touch, runs forward and backward, steps its optimizers
(when given), and returns a dict of named, detached losses with a ``"loss"`` total. Gradients are left in ``.grad``
after the step, so a test can see which parameters received them.

Images enter in the pipeline's ``[0, 1]`` range; translators see ``x * 2 - 1`` and return ``[-1, 1]``; the segmenter
sees ``normalize((t + 1) / 2)`` of a translated image ``t``, which is differentiable so gradients reach the
generators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.device import autocast
from runtime.distributed import all_reduce_gradients, frozen, get_world_size, mean_over_ranks, unwrap

LossFn = Callable[[Tensor, Tensor], Tensor]
Normalizer = Callable[[Tensor], Tensor]


def to_translator(images: Tensor) -> Tensor:
    """Pipeline images in ``[0, 1]`` to translator space ``[-1, 1]``."""
    return images * 2 - 1


def from_translator(images: Tensor) -> Tensor:
    """Translator images in ``[-1, 1]`` back to ``[0, 1]`` (differentiable; no clamp, so gradients always flow)."""
    return (images + 1) / 2


def _zero(parameters: Iterable[nn.Parameter]) -> None:
    for p in parameters:
        p.grad = None


def _step(optimizers: Sequence[torch.optim.Optimizer | None], parameters: Sequence[nn.Parameter],
          grad_clip: float) -> None:
    all_reduce_gradients(parameters)  # DDP under torchrun: every rank steps with the same averaged gradients
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], grad_clip)
    for optimizer in optimizers:
        if optimizer is not None:
            optimizer.step()


def _detached(losses: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.detach().float() for name, value in losses.items()}


def _check_loss_dict(losses: dict[str, Tensor], where: str) -> Tensor:
    if "loss" not in losses:
        raise ValueError(f"expected a 'loss' key in the dict returned by {where}, got keys {sorted(losses)}")
    return losses["loss"]


def discriminative_step(translator: nn.Module, a: Tensor, b: Tensor,
                        optimizer: torch.optim.Optimizer | None = None, *, amp: bool = True,
                        grad_clip: float = 0.0) -> dict[str, Tensor]:
    """One update of D_A and D_B with G_AB and G_BA frozen.

    Args:
        translator: a ``translation.base.Translator`` (or a DDP wrapper of one: its ``module`` is used for the
            parameter groups, and the loss methods are called on the unwrapped model).
        a: source images in ``[0, 1]``.
        b: target images in ``[0, 1]``.
        optimizer: optimizer over the discriminator parameters; None computes gradients without stepping.
        amp: bf16 autocast on CUDA.
        grad_clip: max gradient norm (0 disables it).

    Returns:
        The translator's discriminator losses, detached, with ``"loss"``.

    Shape:
        a: ``[B, C, H, W]``; b: ``[B', C, H, W]``.
    """
    model = _unwrap(translator)
    d_params = list(model.discriminator_parameters())
    g_params = list(model.generator_parameters())
    _zero(d_params)
    with frozen(g_params), autocast(a.device, amp):
        losses = model.discriminator_losses(to_translator(a), to_translator(b))
    _check_loss_dict(losses, "discriminator_losses").float().backward()
    _step([optimizer], d_params, grad_clip)
    return _detached(losses)


def generative_step(translator: nn.Module, a: Tensor, b: Tensor,
                    optimizer: torch.optim.Optimizer | None = None, *, amp: bool = True,
                    grad_clip: float = 0.0) -> dict[str, Tensor]:
    """One update of G_AB and G_BA against frozen discriminators (adversarial + cycle / identity terms).

    Args:
        translator: a ``translation.base.Translator``.
        a: source images in ``[0, 1]``.
        b: target images in ``[0, 1]``.
        optimizer: optimizer over the generator parameters; None computes gradients without stepping.
        amp: bf16 autocast on CUDA.
        grad_clip: max gradient norm (0 disables it).

    Returns:
        The translator's generator losses, detached, with ``"loss"``.

    Shape:
        a: ``[B, C, H, W]``; b: ``[B', C, H, W]``.
    """
    model = _unwrap(translator)
    d_params = list(model.discriminator_parameters())
    g_params = list(model.generator_parameters())
    _zero(g_params)
    with frozen(d_params), autocast(a.device, amp):
        losses = model.generator_losses(to_translator(a), to_translator(b))
    _check_loss_dict(losses, "generator_losses").float().backward()
    _step([optimizer], g_params, grad_clip)
    return _detached(losses)


@dataclass
class SupervisedBatch:
    """Inputs of one supervised step (all images in ``[0, 1]``).

    Attributes:
        a: source images ``[B, 1, H, W]``; y_a: their masks ``[B, K, H, W]``.
        b_labelled / y_b: labelled target images and masks (None at fraction 0).
        b_unlabelled / pseudo / pseudo_weight: target images, their pseudo-labels and a per-pixel weight that is 1
            on confident pixels and 0 elsewhere (None when self-training is off).
        target_channels: M_A's output channels that ``y_b`` labels, when M_A has more classes than the target
            (e.g. lungs of lungs/heart/clavicles); None: all.
    """

    a: Tensor
    y_a: Tensor
    b_labelled: Tensor | None = None
    y_b: Tensor | None = None
    b_unlabelled: Tensor | None = None
    pseudo: Tensor | None = None
    pseudo_weight: Tensor | None = None
    target_channels: list[int] | None = None


@dataclass(frozen=True)
class SupervisedWeights:
    """Weights of the supervised terms (see :class:`transfer.config.TransferConfig`)."""

    source: float = 1.0
    cycle: float = 1.0
    target: float = 1.0
    pseudo: float = 0.5


def segment_translated(segmenter: nn.Module, translated: Tensor, normalize: Normalizer) -> Tensor:
    """Logits of the segmenter on a translator output ``t`` in ``[-1, 1]``: ``M(normalize((t + 1) / 2))``."""
    return segmenter(normalize(from_translator(translated)))


def supervised_step(translator: nn.Module, segmenter: nn.Module, batch: SupervisedBatch, loss_fn: LossFn,
                    normalize: Normalizer, optimizers: Sequence[torch.optim.Optimizer | None] = (), *,
                    weights: SupervisedWeights = SupervisedWeights(), amp: bool = True,
                    grad_clip: float = 0.0) -> dict[str, Tensor]:
    """One update of M_A, G_AB and G_BA by the segmentation losses; D_A and D_B are frozen.

    Terms (each present only when its weight is > 0 and its inputs are given):
    ``source`` = L(M_A(a), y_a); ``cycle`` = L(M_A(G_BA(G_AB(a))), y_a), which reaches both generators;
    ``target`` = L(M_A(G_BA(b)), y_b) on labelled target pairs, which reaches G_BA; ``pseudo`` = pixel-weighted BCE
    of M_A(G_BA(b)) against confident pseudo-labels (not in the paper). ``loss`` is their weighted sum.

    Args:
        translator: a ``translation.base.Translator`` (``a_to_b``, ``b_to_a``).
        segmenter: M_A, returns logits.
        batch: the images and labels of this step.
        loss_fn: segmentation loss on (logits, float masks), e.g. ``segmentation.losses.create_loss("dice_bce")``.
        normalize: segmenter input normalisation of ``[0, 1]`` images (differentiable).
        optimizers: optimizers of the segmenter and of the generators (None entries compute gradients only).
        weights: term weights.
        amp: bf16 autocast on CUDA.
        grad_clip: max gradient norm over segmenter and generator parameters (0 disables it).

    Returns:
        Detached losses ``source``, ``cycle``, ``target``, ``pseudo`` (those computed) and ``loss``.

    Raises:
        ValueError: if no term is active (all weights 0 or inputs missing), or labels are given without images.

    Shape:
        a: ``[B, 1, H, W]``, y_a: ``[B, K, H, W]``; the target tensors likewise with their own batch sizes.
    """
    if (batch.b_labelled is None) != (batch.y_b is None):
        raise ValueError("expected both b_labelled and y_b or neither, got only one of them")
    model = _unwrap(translator)
    d_params = list(model.discriminator_parameters())
    g_params = list(model.generator_parameters())
    s_params = list(segmenter.parameters())
    _zero(g_params + s_params)
    losses: dict[str, Tensor] = {}
    terms: list[Tensor] = []
    with frozen(d_params), autocast(batch.a.device, amp):
        if weights.source > 0:
            losses["source"] = loss_fn(segmenter(normalize(batch.a)).float(), batch.y_a)
            terms.append(weights.source * losses["source"])
        if weights.cycle > 0:
            cycled = model.b_to_a(model.a_to_b(to_translator(batch.a)))
            losses["cycle"] = loss_fn(segment_translated(segmenter, cycled, normalize).float(), batch.y_a)
            terms.append(weights.cycle * losses["cycle"])
        if weights.target > 0 and batch.b_labelled is not None and len(batch.b_labelled) > 0:
            translated = model.b_to_a(to_translator(batch.b_labelled))
            logits_b = segment_translated(segmenter, translated, normalize).float()
            losses["target"] = loss_fn(_channels(logits_b, batch.target_channels), batch.y_b)
            terms.append(weights.target * losses["target"])
        if weights.pseudo > 0 and batch.b_unlabelled is not None and batch.pseudo is not None:
            translated = model.b_to_a(to_translator(batch.b_unlabelled))
            logits = segment_translated(segmenter, translated, normalize).float()
            pixel_weight = batch.pseudo_weight if batch.pseudo_weight is not None else torch.ones_like(logits)
            # over the confident pixels of the global batch (at least one), as a share per rank under torchrun: the
            # ranks' averaged gradients are then those of the global batch's loss
            denom = mean_over_ranks(pixel_weight.sum()).clamp_min(1.0 / get_world_size())
            losses["pseudo"] = (F.binary_cross_entropy_with_logits(logits, batch.pseudo, reduction="none")
                                * pixel_weight).sum() / denom
            terms.append(weights.pseudo * losses["pseudo"])
    if not terms:
        raise ValueError("expected at least one active supervised term, got none: set a weight > 0 and pass its inputs")
    total = torch.stack([t.float() for t in terms]).sum()
    losses["loss"] = total
    total.backward()
    _step(list(optimizers), g_params + s_params, grad_clip)
    return _detached(losses)


def _channels(logits: Tensor, channels: list[int] | None) -> Tensor:
    """The segmenter's output channels that target labels label (all when ``channels`` is None)."""
    return logits if channels is None else logits[:, channels]


def _unwrap(model: nn.Module) -> nn.Module:
    return unwrap(model)
