"""fda: Fourier domain adaptation, a source segmenter trained on source images in the target's low-frequency style.

Yang & Soatto, "FDA: Fourier domain adaptation for semantic segmentation", CVPR 2020: the low-frequency part of a
source image's amplitude spectrum is replaced by that of a random target image, the phase (the anatomy) is kept,
so the source image takes the target's global intensity and contrast profile while its masks stay valid.

Choices here, with the reasons:

* Trained from scratch, exactly as M_A (same seed and so the same initial weights, ``source_iterations`` at
  ``source_lr``, batch size, geometric augmentation, best source-validation Dice), with the Fourier transfer on every
  training batch: as in the paper, where the segmenter is trained on the stylised source from the start, and so that
  the only difference from ``source_only`` is the style transfer (no extra budget on top of M_A).
* Unlabelled target images only (every image of the target training part, labels never read), so the method is
  fraction-free; the labelled target pairs would make it a fine-tuning variant. Neither the paper's entropy term
  nor its multi-band ensemble (MBT) is used.
* Band size: ``beta`` is the half-side of the swapped square of the centred spectrum as a fraction of the image side,
  the paper's definition (``b = floor(beta * min(H, W))``), so the same band in cycles per image is swapped at any
  ``exp.size``: at the paper's 0.01 that is 5 frequencies either side of zero at 512 px, 2 at 256 px. It is at least
  1 (at 0 only the mean, which the per-image normalisation removes anyway, would change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from segmentation.data.preprocessing import resize_images
from transfer.methods.augsource import source_output, train_source
from transfer.methods.base import CellContext, Method, MethodOutput, method_options

NAME = "fda"


@dataclass(frozen=True)
class FDAOptions:
    """Options of ``fda`` (``ExperimentConfig.method_options["fda"]``).

    Args:
        beta: half-side of the swapped low-frequency band, a fraction of the image side (the paper's L; 0.01 in
            its main results, 0.01-0.09 in its ensemble).

    Raises:
        ValueError: for ``beta`` outside ``(0, 0.5)``.
    """

    beta: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < float(self.beta) < 0.5:
            raise ValueError(f"expected beta in (0, 0.5), got {self.beta}")


def band_size(beta: float, height: int, width: int) -> int:
    """Half-side ``b >= 1`` of the swapped band in frequencies: ``floor(beta * min(height, width))``."""
    return max(1, math.floor(beta * min(height, width)))


def fourier_style(source: Tensor, target: Tensor, beta: float) -> Tensor:
    """Source images with the low-frequency amplitude spectrum of target images (FDA, Yang & Soatto 2020, eq. 1).

    Frequencies ``(k_y, k_x)`` with ``|k_y| <= b`` and ``|k_x| <= b`` (:func:`band_size`) take the target's
    amplitude and keep the source's phase; the band is symmetric, so the result is real. Not clipped.

    Args:
        source: ``[N, C, H, W]``.
        target: ``[N, C, H, W]``, the style of each source image.
        beta: the band as a fraction of the image side.

    Returns:
        ``[N, C, H, W]`` float32 on ``source``'s device.

    Raises:
        ValueError: for images of different shapes.
    """
    if source.shape != target.shape or source.ndim != 4:
        raise ValueError(f"expected source and target images of one shape [N, C, H, W], got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    h, w = source.shape[-2:]
    b = band_size(beta, h, w)
    spectrum = torch.fft.fft2(source.float())
    style = torch.fft.fft2(target.float().to(source.device))
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=source.device).abs() <= b
    kx = torch.fft.fftfreq(w, d=1.0 / w, device=source.device).abs() <= b
    band = ky.view(-1, 1) & kx.view(1, -1)
    amplitude = torch.where(band, style.abs(), spectrum.abs())
    return torch.fft.ifft2(torch.polar(amplitude, spectrum.angle())).real


class FourierStyle(nn.Module):
    """Each image of a batch takes the low-frequency amplitude of a random image of a fixed target set.

    The target image of each source image is drawn from the global torch generator (seeded and checkpointed by the
    training), the output is clipped to ``[0, 1]``.

    Args:
        target: ``[M, C, H, W]`` target images in ``[0, 1]`` (resized to each batch's size when they differ).
        beta: the band, a fraction of the image side, in ``(0, 0.5)``.

    Raises:
        ValueError: for no target image or a ``beta`` outside ``(0, 0.5)``.

    Shape:
        images ``[N, C, H, W]`` in ``[0, 1]`` -> the same.
    """

    def __init__(self, target: Tensor, beta: float) -> None:
        super().__init__()
        if target.ndim != 4 or len(target) == 0:
            raise ValueError(f"expected target images [M, C, H, W] with M >= 1, got {tuple(target.shape)}")
        FDAOptions(beta=beta)
        self.beta = float(beta)
        self.register_buffer("target", target.float(), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        pick = torch.randint(0, len(self.target), (len(images),))
        style = resize_images(self.target[pick.to(self.target.device)], tuple(images.shape[-2:]))
        return fourier_style(images, style.to(images.device), self.beta).clamp(0.0, 1.0).to(images.dtype)

    def extra_repr(self) -> str:
        return f"targets={len(self.target)}, beta={self.beta}"


def run(ctx: CellContext) -> MethodOutput:
    """Train on source images restyled by the target training images (resumable); predict the target as it is."""
    options = method_options(ctx.exp, NAME, FDAOptions)
    images = ctx.target.unlabelled_images()
    style = FourierStyle(resize_images(images.float(), ctx.exp.size), options.beta).to(ctx.device)
    model, config = train_source(ctx, style)
    h = w = ctx.exp.size
    return source_output(ctx, model, {"fda_band": band_size(options.beta, h, w), "fda_targets": len(images),
                                      "fda_iterations": config.epochs * config.steps_per_epoch})


METHOD = Method(NAME, run, "a source segmenter trained on source images in the target's Fourier style (FDA)",
                fraction_free=True, options=(f"method_options.{NAME}", "source_iterations", "source_lr"))
