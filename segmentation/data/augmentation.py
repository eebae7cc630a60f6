"""Augmentation of radiographs and their masks on tensors (CPU or GPU), built on ``kornia.augmentation``.

The same random geometry (flips, rotation, shear, shift, scale, elastic deformation, all with
reflection padding) is applied to an image and its masks; intensity changes (gamma, brightness,
contrast, noise, blur) touch images only. :func:`mixup` blends image-mask pairs with a
``Beta(alpha, alpha)`` weight (Zhang et al., "mixup: Beyond empirical risk minimization",
ICLR 2018), as the transfer study's segmenters use (Oliveira & dos Santos, SIBGRAPI 2018).

:class:`AppearanceAugmenter` randomises the appearance of images far more strongly (bias field, gamma,
contrast, blur, resolution, noise), to train segmenters for scanners they never see.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import kornia.augmentation as K
from kornia.constants import DataKey, Resample
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ELASTIC_STD = 0.163  # std of U(-1, 1) noise blurred by a unit-area Gaussian of sigma 1 pixel, times sigma


def _check_range(name: str, value: tuple[float, float], low: float, high: float = float("inf")) -> tuple[float, float]:
    value = tuple(float(v) for v in value)
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"expected {name} = (min, max) with {low:g} <= min <= max <= {high:g}, got {value}")
    return value  # type: ignore[return-value]


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"expected {name} in [0, 1], got {value}")
    return float(value)


def _check_nonneg(name: str, value: float) -> float:
    if not float(value) >= 0.0:
        raise ValueError(f"expected {name} >= 0, got {value}")
    return float(value)


class Augmenter(nn.Module):
    """Random geometry for images and masks, random intensity for images.

    Geometry (same draw for an image and its masks): horizontal / vertical flips, an affine map
    (rotation, shear, shift, scale; ``kornia.augmentation.RandomAffine``) and an elastic
    deformation (a smooth random field, one ``grid_sample`` for image and masks together); all
    sample with reflection padding. Masks are warped bilinearly like the image and re-thresholded
    at 0.5, so they stay in ``{0, 1}`` and follow the image's edges. A horizontal flip swaps the
    patient's sides: pass ``swap_pairs`` (mask channel pairs such as ``[(0, 1)]`` for
    ``("left_lung", "right_lung")``) so that labels follow; it is off by default for that reason.
    Intensity (images only): gamma, brightness, contrast,
    Gaussian noise, Gaussian blur; the output is clipped to ``[0, 1]``.

    Args:
        rotation: largest rotation in degrees.
        shear: largest shear in degrees.
        shift: largest translation as a fraction of the width and height.
        scale: ``(min, max)`` zoom factor.
        p_affine: probability of the affine map per image.
        hflip: probability of a horizontal flip per image.
        vflip: probability of a vertical flip per image.
        swap_pairs: mask channel pairs exchanged when an image is flipped horizontally.
        elastic_alpha: strength of the elastic deformation, as kornia's ``RandomElasticTransform``
            alpha: the displacement, in normalised coordinates (``[-1, 1]`` across the image), has
            a standard deviation of ``0.163 * alpha / elastic_sigma`` half-widths.
        elastic_sigma: smoothness of the elastic field in pixels (its correlation length is about
            twice this).
        p_elastic: probability of the elastic deformation per image.
        gamma: ``(min, max)`` gamma of the intensity curve.
        brightness: largest brightness change (added, grey levels).
        contrast: largest relative contrast change.
        noise: standard deviation of Gaussian noise.
        blur: largest Gaussian blur sigma in pixels (0 disables blur).
        p_intensity: probability of each intensity change per image.
        seed: when given, the augmenter draws from its own generator, so a run is reproducible
            whatever else uses the global RNG; when ``None`` it uses the global RNG (seed it with
            ``runtime.seed_everything``).

    Raises:
        ValueError: for a negative amount, a probability outside ``[0, 1]``, a bad range or a bad pair.

    Shape:
        images ``[N, 1, H, W]`` in ``[0, 1]``, masks ``[N, C, H, W]`` in ``{0, 1}`` -> same shapes.
    """

    def __init__(
        self,
        *,
        rotation: float = 10.0,
        shear: float = 5.0,
        shift: float = 0.05,
        scale: tuple[float, float] = (0.9, 1.1),
        p_affine: float = 0.8,
        hflip: float = 0.0,
        vflip: float = 0.0,
        swap_pairs: Sequence[tuple[int, int]] = (),
        elastic_alpha: float = 1.0,
        elastic_sigma: float = 8.0,
        p_elastic: float = 0.3,
        gamma: tuple[float, float] = (0.8, 1.25),
        brightness: float = 0.05,
        contrast: float = 0.1,
        noise: float = 0.02,
        blur: float = 1.0,
        p_intensity: float = 0.5,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        rotation = _check_nonneg("rotation", rotation)
        shear = _check_nonneg("shear", shear)
        shift = _check_nonneg("shift", shift)
        if shift > 1.0:
            raise ValueError(f"expected shift <= 1 (a fraction of the size), got {shift}")
        scale = _check_range("scale", scale, 1e-3)
        self.p_affine = _check_prob("p_affine", p_affine)
        self.hflip = _check_prob("hflip", hflip)
        self.vflip = _check_prob("vflip", vflip)
        self.swap_pairs = [tuple(int(i) for i in pair) for pair in swap_pairs]
        for pair in self.swap_pairs:
            if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 0:
                raise ValueError(f"expected swap_pairs of two distinct channel indices >= 0, got {pair}")
        elastic_alpha = _check_nonneg("elastic_alpha", elastic_alpha)
        elastic_sigma = _check_nonneg("elastic_sigma", elastic_sigma)
        p_elastic = _check_prob("p_elastic", p_elastic)
        gamma = _check_range("gamma", gamma, 1e-3)
        brightness = _check_nonneg("brightness", brightness)
        contrast = _check_nonneg("contrast", contrast)
        if contrast >= 1.0:
            raise ValueError(f"expected contrast < 1 (a relative change), got {contrast}")
        noise = _check_nonneg("noise", noise)
        blur = _check_nonneg("blur", blur)
        p_intensity = _check_prob("p_intensity", p_intensity)
        if seed is not None and seed < 0:
            raise ValueError(f"expected seed >= 0 or None, got {seed}")
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(int(seed))

        geometry: list[nn.Module] = []
        if self.p_affine > 0 and (rotation > 0 or shear > 0 or shift > 0 or scale != (1.0, 1.0)):
            geometry.append(
                K.RandomAffine(
                    degrees=rotation,
                    translate=(shift, shift),
                    scale=scale,
                    shear=shear,
                    padding_mode="reflection",
                    align_corners=False,
                    p=self.p_affine,
                )
            )
        self.p_elastic = p_elastic if elastic_alpha > 0 and elastic_sigma > 0 else 0.0
        self.elastic_sigma = elastic_sigma
        self.elastic_std = _ELASTIC_STD * elastic_alpha / max(elastic_sigma, 1e-6)
        # Masks are resampled bilinearly like the image and re-thresholded at 0.5: the same warp, binary output.
        self.geometry = (
            K.AugmentationSequential(
                *geometry,
                data_keys=["input", "mask"],
                extra_args={DataKey.MASK: {"resample": Resample.BILINEAR, "align_corners": False}},
            )
            if geometry
            else None
        )

        intensity: list[nn.Module] = []
        if p_intensity > 0:
            if gamma != (1.0, 1.0):
                intensity.append(K.RandomGamma(gamma=gamma, p=p_intensity))
            if contrast > 0:
                intensity.append(K.RandomContrast(contrast=(1.0 - contrast, 1.0 + contrast), p=p_intensity))
            if brightness > 0:
                intensity.append(K.RandomBrightness(brightness=(1.0 - brightness, 1.0 + brightness), p=p_intensity))
            if blur > 0:
                kernel = 2 * int(np.ceil(2 * blur)) + 1
                intensity.append(K.RandomGaussianBlur((kernel, kernel), sigma=(0.1, blur), p=p_intensity))
            if noise > 0:
                intensity.append(K.RandomGaussianNoise(std=noise, p=p_intensity))
        self.intensity = K.AugmentationSequential(*intensity, data_keys=["input"]) if intensity else None

    @contextlib.contextmanager
    def _rng(self, device: torch.device) -> Iterator[None]:
        if self._generator is None:
            yield
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        cuda = []
        if device.type == "cuda":
            cuda = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(cuda[0]):
                    torch.cuda.manual_seed(seed)
            yield

    @property
    def generator(self) -> torch.Generator | None:
        """The augmenter's own CPU generator (``seed`` given), whose state a checkpoint saves; else ``None``."""
        return self._generator

    def _flip(
        self, images: Tensor, masks: Tensor | None, prob: float, dim: int, swap: bool
    ) -> tuple[Tensor, Tensor | None]:
        if prob <= 0:
            return images, masks
        flip = torch.rand(images.shape[0], device=images.device) < prob
        view = flip.view(-1, 1, 1, 1)
        images = torch.where(view, images.flip(dim), images)
        if masks is not None:
            flipped = masks.flip(dim)
            if swap and self.swap_pairs:
                order = list(range(masks.shape[1]))
                for i, j in self.swap_pairs:
                    if max(i, j) >= masks.shape[1]:
                        raise ValueError(f"expected swap_pairs within the {masks.shape[1]} mask channels, got {(i, j)}")
                    order[i], order[j] = order[j], order[i]
                flipped = flipped[:, order]
            masks = torch.where(view, flipped, masks)
        return images, masks

    def _elastic(self, images: Tensor, masks: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One smooth random displacement field per image, applied to the image and its masks in one warp.

        Gaussian noise on a grid with a node every ``2 * elastic_sigma`` pixels, upsampled bicubically:
        the field of kornia's ``RandomElasticTransform`` (uniform noise blurred by a Gaussian), with the
        same standard deviation, at a small fraction of its cost on CPU (no 4-sigma-wide convolutions).
        """
        n, _, h, w = images.shape
        nodes = (max(2, round(h / (2 * self.elastic_sigma)) + 1), max(2, round(w / (2 * self.elastic_sigma)) + 1))
        apply = (torch.rand(n, device=images.device) < self.p_elastic).to(images.dtype)
        noise = torch.randn(n, 2, *nodes, device=images.device, dtype=images.dtype)
        field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)
        field = field * (self.elastic_std * apply).view(n, 1, 1, 1)
        identity = torch.eye(2, 3, device=images.device, dtype=images.dtype).expand(n, 2, 3)
        grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False) + field.permute(0, 2, 3, 1)
        stacked = images if masks is None else torch.cat([images, masks], dim=1)
        warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        channels = images.shape[1]
        return warped[:, :channels], None if masks is None else warped[:, channels:]

    def forward(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Augment a batch (a new random draw on every call, training or eval mode alike).

        Args:
            images: ``float [N, 1, H, W]`` in ``[0, 1]``, any device.
            masks: ``{0, 1}`` masks ``[N, C, H, W]`` (float or bool) or ``None``.

        Returns:
            ``(images, masks)`` of the input shapes, dtypes and device (masks ``None`` if given ``None``).

        Raises:
            ValueError: for non 4-D inputs or masks of another batch or size.
        """
        if images.ndim != 4:
            raise ValueError(f"expected images of shape [N, C, H, W], got {tuple(images.shape)}")
        n = images.shape[0]
        if masks is not None and (masks.ndim != 4 or masks.shape[0] != n or masks.shape[2:] != images.shape[2:]):
            raise ValueError(
                f"expected masks of shape [{images.shape[0]}, C, {images.shape[2]}, {images.shape[3]}], "
                f"got {tuple(masks.shape)}"
            )
        in_dtype = images.dtype
        mask_dtype = None if masks is None else masks.dtype
        x = images.float()
        m = None if masks is None else masks.float()
        with self._rng(images.device), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Default grid_sample and affine_grid behavior")
            x, m = self._flip(x, m, self.hflip, -1, swap=True)
            x, m = self._flip(x, m, self.vflip, -2, swap=False)
            if self.geometry is not None:
                if m is None:
                    x = self.geometry(x, torch.zeros_like(x))[0]
                else:
                    x, m = self.geometry(x, m)
            if self.p_elastic > 0:
                x, m = self._elastic(x, m)
            if self.intensity is not None:
                x = self.intensity(x)
        x = x.clamp(0.0, 1.0).to(in_dtype)
        if m is not None:
            m = (m > 0.5).to(mask_dtype)
        return x, m

    def extra_repr(self) -> str:
        return f"hflip={self.hflip}, vflip={self.vflip}, swap_pairs={self.swap_pairs}, seed={self.seed}"


def _blur_each(images: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of each image of ``[N, C, H, W]`` with its own sigma ``[N]`` in pixels (reflection padding);
    a sigma near 0 leaves the image as it is."""
    n, c, h, w = images.shape
    half = max(1, min(int(np.ceil(3.0 * float(sigma.max()))), h - 1, w - 1))
    offsets = torch.arange(-half, half + 1, dtype=images.dtype, device=images.device)
    s = sigma.to(images.dtype).clamp_min(1e-3).repeat_interleave(c).view(n * c, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    out = F.pad(images.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    out = F.conv2d(out, kernel.view(n * c, 1, 1, -1), groups=n * c)
    out = F.conv2d(out, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return out.view(n, c, h, w)


class AppearanceAugmenter(nn.Module):
    """Strong random appearance of radiographs (images only): a segmenter trained on it meets unseen scanners.

    Each change is applied to an image with probability ``p`` and a strength of its own, in the order of an
    acquisition: a smooth multiplicative bias field ``exp(s * f)`` (``f`` a unit Gaussian field on a 4 x 4 grid,
    upsampled bicubically), a gamma curve ``x ** g`` (``log g`` uniform), a contrast and brightness change about the
    image mean (clipped to ``[0, 1]``, so strong contrast saturates like a narrow window), a Gaussian blur, a lower
    resolution (down-sampled by a random factor with anti-aliasing, then up-sampled back bilinearly) and Gaussian
    noise; the output is clipped to ``[0, 1]``. The geometry stays: masks need no change. These are the image
    quality and appearance transformations of Zhang et al., "Generalizing deep learning for medical image
    segmentation to unseen domains via deep stacked transformation" (BigAug), IEEE TMI 2020, with the bias field
    and resolution changes of Billot et al., "SynthSeg", Medical Image Analysis 2023.

    Args:
        gamma: ``(min, max)`` exponent of the intensity curve, drawn log-uniformly.
        contrast: ``(min, max)`` factor of the deviation from the image mean.
        brightness: largest shift of the grey levels (added).
        noise: largest standard deviation of the Gaussian noise (drawn uniformly from ``[0, noise]``).
        blur: largest Gaussian blur sigma in pixels (drawn uniformly from ``[0, blur]``).
        bias_field: largest strength ``s`` of the multiplicative bias field (0 disables it).
        resolution: ``(min, max)`` down-sampling factor, ``>= 1`` (``(1, 1)`` disables it).
        p: probability of each change per image.
        seed: when given, the augmenter draws from its own CPU generator; when ``None`` from the global torch
            generator (which ``segmentation.training.train_segmenter`` seeds and saves in every checkpoint, so
            a resumed training draws what the uninterrupted one would). ``forward(generator=...)`` overrides both.

    Raises:
        ValueError: for a negative amount, a probability outside ``[0, 1]`` or a bad range.

    Shape:
        images ``[N, C, H, W]`` in ``[0, 1]`` -> the same shape, dtype and device.
    """

    def __init__(
        self,
        *,
        gamma: tuple[float, float] = (0.5, 2.0),
        contrast: tuple[float, float] = (0.6, 1.5),
        brightness: float = 0.1,
        noise: float = 0.05,
        blur: float = 1.0,
        bias_field: float = 0.3,
        resolution: tuple[float, float] = (1.0, 2.0),
        p: float = 0.5,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.gamma = _check_range("gamma", gamma, 1e-3)
        self.contrast = _check_range("contrast", contrast, 0.0)
        self.brightness = _check_nonneg("brightness", brightness)
        self.noise = _check_nonneg("noise", noise)
        self.blur = _check_nonneg("blur", blur)
        self.bias_field = _check_nonneg("bias_field", bias_field)
        self.resolution = _check_range("resolution", resolution, 1.0)
        self.p = _check_prob("p", p)
        if seed is not None and seed < 0:
            raise ValueError(f"expected seed >= 0 or None, got {seed}")
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    @property
    def generator(self) -> torch.Generator | None:
        """The augmenter's own CPU generator (``seed`` given), else ``None`` (the global generator)."""
        return self._generator

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Change the appearance of a batch (a new random draw on every call, training or eval mode alike).

        Args:
            images: ``[N, C, H, W]`` in ``[0, 1]``, any device.
            generator: a CPU generator to draw from instead of the augmenter's own (or the global one).

        Returns:
            The changed images, clipped to ``[0, 1]``, in the input's shape, dtype and device.

        Raises:
            ValueError: for non 4-D images.
        """
        if images.ndim != 4:
            raise ValueError(f"expected images of shape [N, C, H, W], got {tuple(images.shape)}")
        gen = generator if generator is not None else self._generator
        x = images.float().clamp(0.0, 1.0)
        n, _, h, w = x.shape
        device = x.device

        def uniform(low: float, high: float) -> Tensor:
            return (low + (high - low) * torch.rand(n, generator=gen)).to(device).view(n, 1, 1, 1)

        def chosen() -> Tensor:
            return (torch.rand(n, generator=gen) < self.p).to(device).view(n, 1, 1, 1)

        if self.bias_field > 0:
            strength = uniform(0.0, self.bias_field) * chosen()
            field = F.interpolate(torch.randn(n, 1, 4, 4, generator=gen).to(device), size=(h, w), mode="bicubic",
                                  align_corners=True)
            x = (x * torch.exp(strength * field)).clamp(0.0, 1.0)
        if self.gamma != (1.0, 1.0):
            log_gamma = uniform(float(np.log(self.gamma[0])), float(np.log(self.gamma[1])))
            x = torch.where(chosen(), x.clamp_min(1e-6) ** torch.exp(log_gamma), x)
        if self.contrast != (1.0, 1.0) or self.brightness > 0:
            factor = uniform(*self.contrast)
            shift = uniform(-self.brightness, self.brightness)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = torch.where(chosen(), ((x - mean) * factor + mean + shift).clamp(0.0, 1.0), x)
        if self.blur > 0:
            sigma = (uniform(0.0, self.blur) * chosen()).flatten()
            if float(sigma.max()) > 0:
                x = _blur_each(x, sigma)
        if self.resolution != (1.0, 1.0):
            factor = uniform(*self.resolution).flatten().cpu()
            picked = chosen().flatten().cpu()
            for i in torch.nonzero(picked & (factor > 1.0)).flatten().tolist():
                low = (max(2, round(h / float(factor[i]))), max(2, round(w / float(factor[i]))))
                small = F.interpolate(x[i:i + 1], size=low, mode="bilinear", align_corners=False, antialias=True)
                x[i:i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        if self.noise > 0:
            std = uniform(0.0, self.noise) * chosen()
            x = x + std * torch.randn(x.shape, generator=gen).to(device)
        return x.clamp(0.0, 1.0).to(images.dtype)

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, contrast={self.contrast}, brightness={self.brightness}, noise={self.noise}, "
                f"blur={self.blur}, bias_field={self.bias_field}, resolution={self.resolution}, p={self.p}, "
                f"seed={self.seed}")


def mixup(
    images: Tensor, masks: Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Blend each image-mask pair with a random partner of the batch (mixup, Zhang et al. 2018).

    ``x_i' = lam_i * x_i + (1 - lam_i) * x_p(i)`` and the same for masks, with ``lam_i ~ Beta(alpha,
    alpha)`` and ``p`` a random permutation; masks become soft targets in ``[0, 1]``.

    Args:
        images: ``[N, C, H, W]``.
        masks: ``[N, K, H, W]`` float (or bool) targets.
        alpha: Beta parameter, ``> 0`` (small values keep most pairs near one of the two).
        generator: CPU generator for the weights and the permutation; the global RNG when ``None``.

    Returns:
        ``(images, masks)`` mixed, same shapes, devices and floating dtypes.

    Raises:
        ValueError: for ``alpha <= 0`` or batches of different sizes.
    """
    if not alpha > 0:
        raise ValueError(f"expected alpha > 0, got {alpha}")
    if images.ndim != 4 or masks.ndim != 4 or images.shape[0] != masks.shape[0]:
        raise ValueError(
            f"expected images [N, C, H, W] and masks [N, K, H, W] of one batch, got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}"
        )
    n = images.shape[0]
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    perm = torch.randperm(n, generator=generator).to(images.device)
    dtype = images.dtype if images.is_floating_point() else torch.float32
    weight = torch.as_tensor(lam, dtype=dtype, device=images.device)
    weight = weight.view(n, 1, 1, 1)
    masks = masks.to(weight.dtype) if not masks.is_floating_point() else masks
    mixed_images = weight * images + (1 - weight) * images[perm]
    mixed_masks = weight.to(masks.dtype) * masks + (1 - weight.to(masks.dtype)) * masks[perm.to(masks.device)]
    return mixed_images, mixed_masks
