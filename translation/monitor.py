"""Whether a translator converges, on held-out images: KID and histogram distance per direction, image grids.

GAN losses alone do not show convergence; these figures do. :class:`TranslationMonitor` holds a few held-out images of
each domain, computes the real images' KID features once, and at each call measures the translations with the same
functions ``translate train`` reports (:func:`translation.metrics.kid`, :func:`translation.metrics.histogram_distance`).
It runs only when called (at evaluations), never per step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from runtime.distributed import unwrap
from runtime.logging import RunLogger
from translation.metrics import histogram_distance, kid, kid_features


class TranslationMonitor:
    """Held-out KID, histogram distance and image grids of a translator, per direction.

    Args:
        images_a / images_b: held-out images of each domain, ``[N, 1, H, W]`` in ``[-1, 1]`` (the translator's scale).
        kid_size / kid_subset_size / kid_subsets / seed: as in ``translation.training.TranslationConfig``.
        grid_images: images per row of the grids.
        batch_size: images per translation batch.

    Raises:
        ValueError: with fewer than two images in a domain (KID needs two).
    """

    def __init__(self, images_a: Tensor, images_b: Tensor, *, kid_size: int = 64, kid_subset_size: int = 50,
                 kid_subsets: int = 20, seed: int = 0, grid_images: int = 4, batch_size: int = 8) -> None:
        if images_a.shape[0] < 2 or images_b.shape[0] < 2:
            raise ValueError(f"expected at least 2 held-out images per domain, got {images_a.shape[0]} and "
                             f"{images_b.shape[0]}")
        self.images = {"a": images_a.detach().float().cpu(), "b": images_b.detach().float().cpu()}
        self.kid_size, self.kid_subset_size, self.kid_subsets, self.seed = kid_size, kid_subset_size, kid_subsets, seed
        self.grid_images, self.batch_size = grid_images, batch_size
        self.real = {d: kid_features(x, size=kid_size) for d, x in self.images.items()}  # once

    @torch.no_grad()
    def _translate(self, translator: nn.Module, direction: str, images: Tensor) -> Tensor:
        model = unwrap(translator)
        fn = model.a_to_b if direction == "a2b" else model.b_to_a
        device = next(model.parameters()).device
        mode = model.training
        model.eval()
        try:
            return torch.cat([fn(images[i:i + self.batch_size].to(device)).float().cpu()
                              for i in range(0, len(images), self.batch_size)])
        finally:
            model.train(mode)

    def evaluate(self, translator: nn.Module) -> dict[str, float]:
        """``hist/<dir>``, ``kid/<dir>``, ``kid_se/<dir>`` and ``cycle_l1/<dir>`` for ``a2b`` and ``b2a``."""
        out: dict[str, float] = {}
        for direction, source, target in (("a2b", "a", "b"), ("b2a", "b", "a")):
            back = "b2a" if direction == "a2b" else "a2b"
            fake = self._translate(translator, direction, self.images[source])
            cycled = self._translate(translator, back, fake)
            out[f"hist/{direction}"] = histogram_distance(fake, self.images[target])
            mean, se = kid(fake, self.images[target], subset_size=min(self.kid_subset_size, len(fake),
                                                                        len(self.images[target])),
                           num_subsets=self.kid_subsets, size=self.kid_size, seed=self.seed,
                           features=(None, self.real[target]))
            out[f"kid/{direction}"], out[f"kid_se/{direction}"] = mean, se
            out[f"cycle_l1/{direction}"] = float((cycled - self.images[source]).abs().mean())
        return out

    def grids(self, translator: nn.Module) -> dict[str, Tensor]:
        """CHW grids in [0, 1]: rows b, G_BA(b), G_AB(G_BA(b)) and a, G_AB(a) of the first held-out images."""
        b = self.images["b"][:self.grid_images]
        fake_a = self._translate(translator, "b2a", b)
        a = self.images["a"][:self.grid_images]
        out = {"images/b_translated_cycled": torch.cat([b, fake_a, self._translate(translator, "a2b", fake_a)]),
               "images/a_translated": torch.cat([a, self._translate(translator, "a2b", a)])}
        return {tag: make_grid((rows[:, :1] + 1) / 2, nrow=len(b), padding=2, pad_value=1.0).clamp(0, 1)
                for tag, rows in out.items()}

    def log(self, logger: RunLogger, translator: nn.Module, step: int, prefix: str) -> dict[str, Any]:
        """Evaluate, write the scalars under ``prefix`` and the grids under ``prefix/images/...``; return the figures."""
        figures = self.evaluate(translator)
        if logger.active:
            logger.scalars(figures, step, prefix=prefix)
            for tag, grid in self.grids(translator).items():
                logger.image(f"{prefix}/{tag}", grid, step)
        return figures


def convergence_layout(prefixes: tuple[str, ...] = ("warmup", "transfer")) -> dict[str, dict[str, list]]:
    """A TensorBoard custom-scalars layout: D and G losses, KID and histogram distance, and the selection score of
    each phase on one page (``RunLogger.layout``)."""
    layout: dict[str, dict[str, list]] = {}
    for prefix in prefixes:
        layout[f"convergence: {prefix}"] = {
            "discriminator loss": ["Multiline", [rf"{prefix}/discriminative/loss", rf"{prefix}/discriminative/.*"]],
            "generator loss": ["Multiline", [rf"{prefix}/generative/loss", rf"{prefix}/generative/.*"]],
            "KID (held out)": ["Multiline", [rf"{prefix}/monitor/kid/.*"]],
            "histogram distance (held out)": ["Multiline", [rf"{prefix}/monitor/hist/.*"]],
            "selection score": ["Multiline", [r"selection/score", r"selection/.*"]],
        }
    return layout
