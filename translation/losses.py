"""Losses of the translators: GAN criteria (outside the discriminators), L1 reconstruction, KL for UNIT.

Every function computes in float32 whatever the dtype of its inputs (bf16 under autocast) and returns a scalar.

References:
    Mao et al. Least Squares Generative Adversarial Networks. ICCV 2017 (LSGAN, CycleGAN's default).
    Goodfellow et al. Generative Adversarial Nets. NeurIPS 2014 (BCE).
    Lim, Ye. Geometric GAN. 2017; Miyato et al. Spectral Normalization for GANs. ICLR 2018 (hinge).
    Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014 (KL term, used by UNIT).
"""

from __future__ import annotations

import enum
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Scores = Union[Tensor, Sequence[Tensor]]


class GANCriterion(str, enum.Enum):
    """Adversarial criteria. Discriminators output raw scores (logits); the criterion interprets them."""

    LSGAN = "lsgan"
    BCE = "bce"
    HINGE = "hinge"

    @classmethod
    def parse(cls, value: "str | GANCriterion") -> "GANCriterion":
        """Return the criterion named ``value``.

        Raises:
            ValueError: listing the valid names.
        """
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"expected gan_mode in {[c.value for c in cls]}, got {value!r}") from None


def gan_loss(
    scores: Scores,
    target_is_real: bool,
    criterion: "str | GANCriterion" = GANCriterion.LSGAN,
    for_discriminator: bool = True,
) -> Tensor:
    """Adversarial loss of discriminator scores, summed over the scales of a multi-scale discriminator.

    Per score map (mean over its elements):

    - ``lsgan``: ``(s - t)**2`` with ``t = 1`` for real, ``0`` for fake.
    - ``bce``: binary cross-entropy with logits against ``t``.
    - ``hinge``: for the discriminator ``relu(1 - s)`` (real) or ``relu(1 + s)`` (fake); for the generator
      ``-s`` (only with ``target_is_real=True``).

    Multi-scale scores are summed over scales, as in the UNIT/MUNIT/pix2pixHD code.

    Args:
        scores: a score map, or a list of them (one per scale).
        target_is_real: whether the scores should say "real".
        criterion: "lsgan", "bce" or "hinge".
        for_discriminator: only matters for hinge: the discriminator's or the generator's form.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: on an unknown criterion, an empty list, or a hinge generator loss with a fake target.
    """
    criterion = GANCriterion.parse(criterion)
    if isinstance(scores, Tensor):
        return _gan_loss_single(scores, target_is_real, criterion, for_discriminator)
    scores = list(scores)
    if not scores:
        raise ValueError("expected at least one score map, got an empty list")
    total = _gan_loss_single(scores[0], target_is_real, criterion, for_discriminator)
    for s in scores[1:]:
        total = total + _gan_loss_single(s, target_is_real, criterion, for_discriminator)
    return total


def _gan_loss_single(s: Tensor, real: bool, criterion: GANCriterion, for_discriminator: bool) -> Tensor:
    s = s.float()
    if criterion is GANCriterion.LSGAN:
        return ((s - (1.0 if real else 0.0)) ** 2).mean()
    if criterion is GANCriterion.BCE:
        return F.binary_cross_entropy_with_logits(s, torch.full_like(s, 1.0 if real else 0.0))
    if for_discriminator:
        return F.relu(1.0 - s).mean() if real else F.relu(1.0 + s).mean()
    if not real:
        raise ValueError("expected target_is_real=True for the hinge generator loss, got False")
    return -s.mean()


class GANLoss(nn.Module):
    """Module form of :func:`gan_loss` with the criterion fixed at construction.

    Args:
        criterion: "lsgan", "bce" or "hinge".

    Raises:
        ValueError: on an unknown criterion.
    """

    def __init__(self, criterion: str = "lsgan") -> None:
        super().__init__()
        self.criterion = GANCriterion.parse(criterion)

    def forward(self, scores: Scores, target_is_real: bool, for_discriminator: bool = True) -> Tensor:
        return gan_loss(scores, target_is_real, self.criterion, for_discriminator)


def l1_loss(x: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error in float32 (image, content and style reconstruction, cycle and identity losses).

    Raises:
        ValueError: if the shapes differ.
    """
    if x.shape != target.shape:
        raise ValueError(f"expected tensors of the same shape, got {tuple(x.shape)} and {tuple(target.shape)}")
    return (x.float() - target.float()).abs().mean()


def kl_loss(mu: Tensor, logvar: Tensor | None = None) -> Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, 1)``, averaged over all elements.

    ``mean(0.5 * (mu**2 + exp(logvar) - 1 - logvar))``. UNIT's encoders fix the variance to 1 (``logvar = 0``), so
    the term reduces to ``0.5 * mean(mu**2)``; the UNIT code drops the 0.5, which its weight absorbs.

    Args:
        mu: latent means.
        logvar: latent log-variances of the same shape, or None for unit variance.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: if ``logvar`` has a different shape.
    """
    mu = mu.float()
    if logvar is None:
        return 0.5 * (mu**2).mean()
    if logvar.shape != mu.shape:
        raise ValueError(f"expected logvar of shape {tuple(mu.shape)}, got {tuple(logvar.shape)}")
    logvar = logvar.float()
    return (0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)).mean()
