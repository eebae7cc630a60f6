"""Image history pool (Shrivastava et al. 2017), as used by CycleGAN to update discriminators with past fakes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from translation.generators import check_int


class ImagePool(nn.Module):
    """A buffer of up to ``size`` previously generated images.

    For each image of a query: while the pool is not full the image is stored and returned; afterwards, with
    probability 0.5, a random stored image is returned and replaced by the new one, otherwise the new image is
    returned. Randomness comes from torch's global RNG (or ``generator``), so ``runtime.seed`` makes it reproducible
    and ``runtime.get_rng_state`` resumable. The stored images travel in ``state_dict`` (as extra state) so that a
    training checkpoint resumes exactly; :func:`translation.save_translator` leaves them out.

    Args:
        size: number of images kept; 0 disables the pool (queries return their input).

    Raises:
        ValueError: if ``size < 0``.

    Shape:
        ``query``: ``[B, C, H, W] -> [B, C, H, W]``, detached.

    Reference:
        Shrivastava et al. Learning from Simulated and Unsupervised Images through Adversarial Training. CVPR 2017.
        Zhu et al. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks. ICCV 2017.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.size = check_int("size", size, 0)
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a batch mixing ``images`` with stored ones, updating the pool.

        Args:
            images: freshly generated images (detached here).
            generator: optional RNG; torch's global one by default.

        Returns:
            A detached batch of the same shape and dtype.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if torch.rand((), generator=generator).item() < 0.5:
                index = int(torch.randint(0, self.size, (), generator=generator).item())
                old = self.images[index]
                self.images[index] = image.clone()
                if old.shape != image.shape:
                    raise ValueError(
                        f"expected images of shape {tuple(old.shape[1:])} as stored in the pool, got "
                        f"{tuple(image.shape[1:])}; call reset() when the image size changes"
                    )
                out.append(old.to(device=image.device, dtype=image.dtype))
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    def reset(self) -> None:
        """Empty the pool."""
        self.images = []

    def get_extra_state(self) -> Any:
        return {"size": self.size, "images": [im.cpu() for im in self.images]}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or "images" not in state:
            raise ValueError(f"expected an image pool state dict with 'images', got {type(state).__name__}")
        device = next((b.device for b in self.buffers()), None)
        self.images = [im if device is None else im.to(device) for im in state["images"]][: self.size]


def pool_states(model: nn.Module) -> dict[str, Any]:
    """The state of every image pool inside ``model``, by module name: the translator state that differs between
    torchrun ranks (each rank pools its own share's fakes), saved per rank beside the shared weights."""
    return {name: m.get_extra_state() for name, m in model.named_modules() if isinstance(m, ImagePool)}


def load_pool_states(model: nn.Module, states: dict[str, Any]) -> None:
    """Restore :func:`pool_states` into ``model``'s pools."""
    modules = dict(model.named_modules())
    for name, state in states.items():
        modules[name].set_extra_state(state)
