"""Convergence measures for unpaired translation: intensity-histogram distance and KID.

Both compare a set of translated images with a set of real target images, without pairing; they
are what the training loop logs on held-out images at each epoch, so that one can see whether a
translator is converging (Oliveira & dos Santos 2018 judged their translations by eye).

- :func:`histogram_distance`: the Wasserstein-1 (earth mover's) distance between the grey-level
  histograms of the two sets, pooled over all pixels. It is in the units of the image values
  (for translator images in ``[-1, 1]`` it lies in ``[0, 2]``) and reads as "how far, on average,
  must grey levels move to make one histogram the other".
- :func:`kid`: the kernel inception distance of Binkowski et al. (2018, "Demystifying MMD GANs"):
  the unbiased estimate of the squared maximum mean discrepancy with the polynomial kernel
  ``k(x, y) = (x . y / d + 1) ** 3``, averaged over random subsets, with its standard error. The
  features come from a FIXED network that is randomly initialised from a fixed seed instead of an
  ImageNet Inception: nothing is downloaded, so offline machines give the same numbers. Random
  convolutional features are sensitive to texture, contrast and intensity statistics, which is what
  differs between scanners; values are comparable only between runs that use the same
  ``feature_size`` and ``seed`` (not with published Inception KIDs).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

__all__ = ["FeatureNet", "feature_net", "histogram_distance", "kid", "kid_features", "mmd2_unbiased"]

FEATURE_SEED = 20180917
FEATURE_WIDTHS = (32, 64, 128, 256)


def _check_images(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected {name} as a [N, C, H, W] tensor, got {shape}")
    if x.shape[0] < 1:
        raise ValueError(f"expected at least one image in {name}, got {x.shape[0]}")


def histogram_distance(x: Tensor, y: Tensor, bins: int = 64,
                       value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """Wasserstein-1 distance between the grey-level histograms of two image sets.

    All pixels of all images (and channels) of a set are pooled into one histogram of ``bins``
    equal bins over ``value_range`` (values outside are clamped into the end bins). The distance
    between the two normalised histograms ``p`` and ``q`` is
    ``sum_i |P_i - Q_i| * w`` with ``P``, ``Q`` the cumulative histograms and ``w`` the bin width,
    i.e. the exact earth mover's distance between the two histograms with every pixel placed at
    its bin centre. The sets need not have the same number or size of images.

    Args:
        x: first image set.
        y: second image set.
        bins: number of histogram bins (>= 2).
        value_range: ``(low, high)`` range of the image values; ``(-1, 1)`` for translator images.

    Returns:
        The distance, a float in ``[0, high - low - w]``; 0 for identical histograms.

    Raises:
        ValueError: on a bad shape, ``bins < 2`` or an empty range.

    Shape:
        x: ``[N, C, H, W]``; y: ``[M, C', H', W']``.

    Example:
        Two sets whose pixels all sit at -1 and at 1, with 4 bins over ``[-1, 1]`` (bin width 0.5,
        centres -0.75 and 0.75), are 1.5 apart.
    """
    _check_images("x", x)
    _check_images("y", y)
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"expected bins >= 2, got {bins}")
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        raise ValueError(f"expected value_range (low, high) with high > low, got {value_range}")
    width = (high - low) / bins

    def cdf(images: Tensor) -> Tensor:
        values = images.detach().reshape(-1).double().clamp(low, high)
        index = ((values - low) / width).floor().clamp(0, bins - 1).long()
        counts = torch.bincount(index, minlength=bins).double()
        return torch.cumsum(counts / counts.sum(), 0)

    return float((cdf(x).cpu() - cdf(y).cpu()).abs().sum() * width)


class FeatureNet(nn.Module):
    """A fixed random convolutional feature extractor for :func:`kid`.

    Four stride-2 3x3 convolutions with ReLU (widths 32, 64, 128, 256), He-normal weights drawn
    from a private generator seeded with ``seed`` (the global RNG is untouched). Each stage's
    output is average-pooled over space and the four are concatenated, so the features mix fine
    texture and coarse layout. Images are converted to one grey channel (channel mean) and
    resized to ``size x size`` (bilinear, anti-aliased) first.

    Args:
        size: side of the resized images (>= 16).
        seed: seed of the weights (>= 0).

    Raises:
        ValueError: on a bad ``size`` or ``seed``.

    Shape:
        input ``[N, C, H, W]`` in ``[-1, 1]``; output ``[N, 480]``.
    """

    def __init__(self, *, size: int = 128, seed: int = FEATURE_SEED) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"expected size >= 16, got {size}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"expected seed >= 0, got {seed}")
        self.size = size
        generator = torch.Generator().manual_seed(seed)
        layers = []
        in_channels = 1
        for width in FEATURE_WIDTHS:
            # skip_init: no default initialisation, so building the net never draws from torch's global RNG (a
            # resumed training run builds it at another step than the uninterrupted one; the streams must not shift)
            conv = skip_init(nn.Conv2d, in_channels, width, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                                  * math.sqrt(2.0 / (in_channels * 9)))
                conv.bias.zero_()
            layers.append(conv)
            in_channels = width
        self.convs = nn.ModuleList(layers)
        self.requires_grad_(False)
        self.eval()

    @property
    def dim(self) -> int:
        return sum(FEATURE_WIDTHS)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().mean(dim=1, keepdim=True)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        pooled = []
        for conv in self.convs:
            x = F.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


@lru_cache(maxsize=8)
def feature_net(size: int = 128, seed: int = FEATURE_SEED, device: str = "cpu") -> FeatureNet:
    """The shared (cached) :class:`FeatureNet` for ``size`` and ``seed`` on ``device``."""
    return FeatureNet(size=size, seed=seed).to(device)


@torch.no_grad()
def kid_features(images: Tensor, size: int = 128, seed: int = FEATURE_SEED, batch_size: int = 64) -> Tensor:
    """Features of ``images`` in the fixed network of :func:`kid`, in float64 on the CPU.

    Computing them once lets a loop compare many translated sets with one real set.

    Shape:
        images ``[N, C, H, W]``; output ``[N, 480]``.
    """
    _check_images("images", images)
    net = feature_net(size, seed, str(images.device))
    chunks = [net(images[i:i + batch_size].detach()) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(chunks).double().cpu()


def mmd2_unbiased(fx: Tensor, fy: Tensor) -> Tensor:
    """Unbiased squared MMD with the cubic polynomial kernel ``(x . y / d + 1) ** 3``.

    Args:
        fx: features of the first set.
        fy: features of the second set.

    Returns:
        A 0-d tensor; it can be slightly negative (the estimate is unbiased, not clipped).

    Raises:
        ValueError: when a set has fewer than 2 rows or the dimensions differ.

    Shape:
        fx ``[m, d]``, fy ``[n, d]``.
    """
    if fx.ndim != 2 or fy.ndim != 2 or fx.shape[1] != fy.shape[1]:
        raise ValueError(f"expected feature matrices [m, d] and [n, d], got {tuple(fx.shape)} and {tuple(fy.shape)}")
    m, n = fx.shape[0], fy.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"expected at least 2 feature rows per set, got {m} and {n}")
    d = fx.shape[1]
    kxx = (fx @ fx.T / d + 1) ** 3
    kyy = (fy @ fy.T / d + 1) ** 3
    kxy = (fx @ fy.T / d + 1) ** 3
    sum_xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    sum_yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sum_xx + sum_yy - 2 * kxy.mean()


def kid(x: Tensor, y: Tensor, *, subset_size: int = 50, num_subsets: int = 100, size: int = 128,
        seed: int = 0, features: tuple[Tensor | None, Tensor | None] = (None, None)) -> tuple[float, float]:
    """Kernel inception-style distance between two image sets, with its standard error.

    ``num_subsets`` times, ``subset_size`` images are drawn without replacement from each set
    (independently, from a private generator seeded with ``seed``) and the unbiased squared MMD
    between their features is computed (:func:`mmd2_unbiased`); the result is the mean over the
    subsets and the standard error of that mean (sample std / sqrt(num_subsets)). A set compared
    with itself gives about 0 (within a few standard errors); more distant sets give larger values.

    Args:
        x: first image set (e.g. translated images), values in ``[-1, 1]``.
        y: second image set (e.g. real target images), values in ``[-1, 1]``.
        subset_size: images per subset; lowered to 3/4 of the smaller set (at least 2) when larger, so that the
            subsets differ and the standard error means something.
        num_subsets: number of subsets (>= 2 for a standard error).
        size: side the images are resized to before the feature network.
        seed: seed of the subset draws (the network's weights are always the same).
        features: precomputed ``kid_features`` of ``x`` and/or ``y`` (None to compute them).

    Returns:
        ``(mean, standard_error)`` as floats.

    Raises:
        ValueError: on a bad shape, a set of fewer than 2 images, ``subset_size < 2`` or
            ``num_subsets < 2``.

    Shape:
        x ``[N, C, H, W]``, y ``[M, C', H', W']``.
    """
    _check_images("x", x)
    _check_images("y", y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"expected at least 2 images per set for KID, got {x.shape[0]} and {y.shape[0]}")
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"expected subset_size >= 2, got {subset_size}")
    if not isinstance(num_subsets, int) or num_subsets < 2:
        raise ValueError(f"expected num_subsets >= 2, got {num_subsets}")
    fx = features[0] if features[0] is not None else kid_features(x, size=size)
    fy = features[1] if features[1] is not None else kid_features(y, size=size)
    smaller = min(fx.shape[0], fy.shape[0])
    m = subset_size if subset_size <= smaller else max(2, (3 * smaller) // 4)
    generator = torch.Generator().manual_seed(seed)
    values = torch.empty(num_subsets, dtype=torch.float64)
    for i in range(num_subsets):
        ix = torch.randperm(fx.shape[0], generator=generator)[:m]
        iy = torch.randperm(fy.shape[0], generator=generator)[:m]
        values[i] = mmd2_unbiased(fx[ix], fy[iy])
    return float(values.mean()), float(values.std(unbiased=True) / math.sqrt(num_subsets))
