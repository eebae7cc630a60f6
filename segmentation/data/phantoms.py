"""Synthetic chest radiographs ("phantoms") with lung, heart and clavicle masks, in scanner domains.

Every phantom has its own random anatomy (sizes, positions and outlines of the lungs, heart and
clavicles; body width, ribs, spine, tissue texture), rendered as a displayed radiograph (bone
bright, lung dark) and then passed through a *scanner*: an intensity curve (gamma, optionally an
inversion), a contrast window, blur, noise, a field of view (zoom) and collimation borders. The
domains differ only in their scanners, the way JSRT and Montgomery do, so a segmenter trained on
domain ``"a"`` does clearly worse on domain ``"b"`` and an unpaired translator
(Oliveira & dos Santos, SIBGRAPI 2018) has a real gap to close.

The anatomy depends only on ``seed``, the scanner on ``seed`` and ``domain``: the same seed in two
domains gives *paired* images of the same patients (useful to measure a translator); use
different seeds for unpaired experiments.

Phantoms are the embedded default for the demo and the fast tests, never a substitute for real data.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from runtime.io import atomic_write_json
from segmentation.data.dataset import ORGANS, CXRData
from segmentation.data.io import write_png

PHANTOM_CLASSES: tuple[str, ...] = ORGANS
_FIELD_OF_VIEW_MM = 400.0


@dataclass(frozen=True)
class Scanner:
    """Acquisition of one domain; each value is a ``(low, high)`` range drawn per image.

    Attributes:
        gamma: exponent of the intensity curve ``I ** gamma``.
        invert: show the inverted curve (``1 - I``), as on a "white is zero" film.
        low, high: the contrast window: curve output ``0`` maps to ``low``, ``1`` to ``high``.
        noise: standard deviation of additive Gaussian noise (grey levels).
        blur: Gaussian blur sigma in pixels of a 64-pixel image (scaled with the size).
        zoom: field of view; above 1 the anatomy looks smaller (more of the body in view).
        shift: largest translation of the anatomy, as a fraction of the half-width.
        collimation: largest width of each bright collimator border, as a fraction of the size.
        collimation_prob: probability that a given border is collimated.
    """

    gamma: tuple[float, float] = (0.9, 1.1)
    invert: bool = False
    low: tuple[float, float] = (0.0, 0.04)
    high: tuple[float, float] = (0.94, 1.0)
    noise: tuple[float, float] = (0.005, 0.015)
    blur: tuple[float, float] = (0.0, 0.3)
    zoom: tuple[float, float] = (0.95, 1.05)
    shift: tuple[float, float] = (0.0, 0.04)
    collimation: tuple[float, float] = (0.0, 0.0)
    collimation_prob: float = 0.0


DOMAINS: dict[str, Scanner] = {
    # a: clean, full contrast, tight field of view (JSRT-like digitised film).
    "a": Scanner(),
    # b: a different curve and window, softer and noisier, wider field of view with collimator
    # borders (Montgomery-like computed radiography).
    "b": Scanner(
        gamma=(0.5, 0.65),
        low=(0.12, 0.2),
        high=(0.8, 0.9),
        noise=(0.03, 0.05),
        blur=(0.8, 1.2),
        zoom=(1.15, 1.3),
        shift=(0.0, 0.06),
        collimation=(0.03, 0.09),
        collimation_prob=0.6,
    ),
    # c: inverted display (lungs bright), a harder third domain.
    "c": Scanner(gamma=(0.8, 1.2), invert=True, low=(0.05, 0.1), high=(0.85, 0.95), noise=(0.01, 0.03),
                 blur=(0.3, 0.7), zoom=(1.0, 1.1)),
}
"""The phantom domains by name."""


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return (low + (high - low) * torch.rand(n, generator=gen)).view(n, 1, 1)


def _smooth_noise(gen: torch.Generator, n: int, cells: int, size: int) -> Tensor:
    coarse = torch.randn(n, 1, cells, cells, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]


def _wobble(gen: torch.Generator, n: int, amplitude: float) -> list[tuple[int, Tensor, Tensor]]:
    """Random low-order harmonics of an outline: ``[(k, a_k, phi_k)]``."""
    return [
        (k, _uniform(gen, n, -amplitude, amplitude), _uniform(gen, n, 0.0, 2 * math.pi)) for k in (2, 3, 4)
    ]


def _blob(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor, angle: Tensor | float,
          wobble: list[tuple[int, Tensor, Tensor]], taper: float = 0.0) -> Tensor:
    """Signed inside-ness of a wobbly, optionally tapered ellipse: > 0 inside, in units of its radius."""
    cos, sin = torch.cos(torch.as_tensor(angle)), torch.sin(torch.as_tensor(angle))
    dx, dy = x - cx, y - cy
    u = (cos * dx + sin * dy) / rx
    v = (-sin * dx + cos * dy) / ry
    if taper:
        u = u / (1.0 - taper * (1.0 - v.clamp(-1.0, 1.0)) / 2.0)
    rho = torch.sqrt(u * u + v * v + 1e-12)
    theta = torch.atan2(v, u)
    radius = torch.ones_like(rho)
    for k, a, phi in wobble:
        radius = radius + a * torch.cos(k * theta + phi)
    return radius - rho


def _gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image of ``[N, H, W]`` with its own sigma (pixels), reflection padding."""
    n = images.shape[0]
    half = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    offsets = torch.arange(-half, half + 1, dtype=images.dtype)
    s = sigma.view(n, 1).clamp_min(1e-3)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    out = F.pad(images[None], (half, half, half, half), mode="reflect")
    out = F.conv2d(out, kernel.view(n, 1, 1, -1), groups=n)
    out = F.conv2d(out, kernel.view(n, 1, -1, 1), groups=n)
    return out[0]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread: rendering is a chain of small element-wise ops that gain nothing
    from intra-op threads, and on a busy CPU two OpenMP threads per op made it 30x slower (measured)."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def make_phantoms(n: int, size: int = 64, domain: str = "a", seed: int = 0) -> CXRData:
    """Render ``n`` random phantoms of one domain with masks of the five SCR organs.

    Deterministic: the same arguments give the same tensors. 64 phantoms at 64x64 take about a
    tenth of a second on one core of a busy CPU (``benchmarks/bench_data.py``).

    Args:
        n: number of images, ``>= 1``.
        size: side in pixels, ``>= 16``.
        domain: a key of :data:`DOMAINS` (``"a"``, ``"b"``, ``"c"``).
        seed: anatomy seed (the scanner draws from ``seed`` and ``domain``), ``>= 0``.

    Returns:
        :class:`CXRData` with ``classes = ("left_lung", "right_lung", "heart", "left_clavicle",
        "right_clavicle")`` (patient's left = image right), ids ``phantom_<domain>_<seed>_<i>``
        and a pixel spacing from a nominal 400 mm field of view times the zoom.

    Raises:
        ValueError: for ``n < 1``, ``size < 16``, a negative seed or an unknown domain.

    Shape:
        images ``[n, 1, size, size]``, masks ``[n, 5, size, size]``.
    """
    if n < 1:
        raise ValueError(f"expected n >= 1, got {n}")
    if size < 16:
        raise ValueError(f"expected size >= 16, got {size}")
    if seed < 0:
        raise ValueError(f"expected seed >= 0, got {seed}")
    if domain not in DOMAINS:
        raise ValueError(f"expected domain in {sorted(DOMAINS)}, got {domain!r}")
    with _one_thread():
        return _render(n, size, domain, seed)


def _render(n: int, size: int, domain: str, seed: int) -> CXRData:
    scanner = DOMAINS[domain]
    anatomy = torch.Generator().manual_seed(int(seed))
    acquisition = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * (sorted(DOMAINS).index(domain) + 1))

    # Field of view and position (scanner), then the anatomy's coordinates.
    zoom = _uniform(acquisition, n, *scanner.zoom)
    shift_r = _uniform(acquisition, n, *scanner.shift)
    shift_a = _uniform(acquisition, n, 0.0, 2 * math.pi)
    pixel = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    gy, gx = torch.meshgrid(pixel, pixel, indexing="ij")
    x = gx[None] * zoom - shift_r * torch.cos(shift_a)
    y = gy[None] * zoom - shift_r * torch.sin(shift_a)

    # Body: a rounded box, wider at the shoulders' level than a plain ellipse.
    body_w = _uniform(anatomy, n, 0.78, 0.92)
    body_cx = _uniform(anatomy, n, -0.03, 0.03)
    body_f = 1.0 - ((x - body_cx) / body_w).abs() ** 4 - ((y - 0.15) / 1.35).abs() ** 4
    sharp = 0.35 * size  # edge softness: about a pixel and a half

    # Lungs: tapered wobbly ellipses (apex narrow, costophrenic angle wide).
    lungs_f = []
    for side in (1.0, -1.0):  # patient's left lung = image right (+x), then right lung
        cx = body_cx + side * _uniform(anatomy, n, 0.36, 0.43)
        cy = _uniform(anatomy, n, -0.02, 0.1)
        rx = _uniform(anatomy, n, 0.23, 0.3)
        ry = _uniform(anatomy, n, 0.5, 0.62) * (0.94 if side > 0 else 1.0)
        tilt = side * _uniform(anatomy, n, -0.12, 0.05)
        lungs_f.append(_blob(x, y, cx, cy, rx, ry, tilt, _wobble(anatomy, n, 0.05), taper=0.4))

    # Heart: tilted wobbly ellipse low in the chest, shifted to the patient's left.
    hx = body_cx + _uniform(anatomy, n, 0.04, 0.12)
    hy = _uniform(anatomy, n, 0.26, 0.36)
    hrx = _uniform(anatomy, n, 0.23, 0.29)
    hry = _uniform(anatomy, n, 0.18, 0.24)
    h_angle = _uniform(anatomy, n, -0.5, -0.15)
    heart_f = _blob(x, y, hx, hy, hrx, hry, h_angle, _wobble(anatomy, n, 0.04))
    heart_core = _blob(x, y, hx, hy, 0.85 * hrx, 0.85 * hry, h_angle, [])

    # Clavicles: thin curved bars from the sternum out and up over each apex.
    clav_f = []
    for side in (1.0, -1.0):
        mx = body_cx + side * _uniform(anatomy, n, 0.05, 0.11)
        my = _uniform(anatomy, n, -0.62, -0.5)
        a = _uniform(anatomy, n, 0.05, 0.3)
        length = _uniform(anatomy, n, 0.45, 0.6)
        thick = _uniform(anatomy, n, 0.035, 0.05)
        bend = _uniform(anatomy, n, -0.35, 0.35)
        dx, dy = x - mx, y - my
        ux, uy = side * torch.cos(a), -torch.sin(a)
        u = dx * ux + dy * uy
        v = -dx * uy + dy * ux - bend * (u - length / 2) ** 2
        t = (2 * u / length - 1).clamp(-1.0, 1.0)
        half = thick * (1.0 - 0.3 * t * t)
        clav_f.append(torch.minimum(torch.minimum(u, length - u) / length * 4.0, (half - v.abs()) / thick))

    # Masks, multi-label as in SCR: lungs stop at the heart's core, heart and clavicles overlap lungs.
    no_heart = heart_core <= 0
    masks = torch.stack(
        [
            (lungs_f[0] > 0) & no_heart,
            (lungs_f[1] > 0) & no_heart,
            heart_f > 0,
            clav_f[0] > 0,
            clav_f[1] > 0,
        ],
        dim=1,
    ).float()

    # Density as displayed (bone bright, lung dark), before the scanner.
    def soft(f: Tensor, scale: float = 1.0) -> Tensor:
        return torch.sigmoid(f * sharp * scale)

    body = soft(body_f, 0.5)
    lung = torch.maximum(soft(lungs_f[0]), soft(lungs_f[1]))
    heart = soft(heart_f)
    clav = torch.maximum(soft(clav_f[0], 0.3), soft(clav_f[1], 0.3))
    spine = soft((_uniform(anatomy, n, 0.08, 0.12) - (x - body_cx).abs()) / 0.1, 0.5)
    rib_period = _uniform(anatomy, n, 0.15, 0.2)
    rib_phase = _uniform(anatomy, n, 0.0, 2 * math.pi)
    rib_slope = _uniform(anatomy, n, 0.25, 0.45)
    ribs = torch.cos(2 * math.pi * (y - rib_slope * (x - body_cx).abs() ** 1.5) / rib_period + rib_phase)
    ribs = ribs.clamp_min(0.0) ** 2 * soft(0.7 - (x - body_cx).abs(), 0.5) * soft(0.55 - y, 0.5)
    tissue = 0.03 * _smooth_noise(anatomy, n, 5, size)
    vessels = 0.025 * _smooth_noise(anatomy, n, max(8, size // 5), size)

    density = (
        0.06
        + body * (_uniform(anatomy, n, 0.5, 0.6) + tissue)
        - lung * (_uniform(anatomy, n, 0.25, 0.33) + 0.05 * (0.3 - y).clamp(0.0, 1.0) - vessels)
        + heart * _uniform(anatomy, n, 0.08, 0.13)
        + spine * body * 0.12
        + ribs * _uniform(anatomy, n, 0.06, 0.1)
        + clav * _uniform(anatomy, n, 0.18, 0.25)
    ).clamp(0.0, 1.0)

    # Scanner: curve, window, blur, collimator borders, noise.
    image = density ** _uniform(acquisition, n, *scanner.gamma)
    if scanner.invert:
        image = 1.0 - image
    low = _uniform(acquisition, n, *scanner.low)
    high = _uniform(acquisition, n, *scanner.high)
    image = low + (high - low) * image
    sigma = _uniform(acquisition, n, *scanner.blur).flatten() * size / 64.0
    if float(sigma.max()) > 0.05:
        image = _gaussian_blur(image, sigma)
    if scanner.collimation_prob > 0:
        widths = _uniform(acquisition, 4 * n, *scanner.collimation).view(n, 4)
        widths = widths * (torch.rand(n, 4, generator=acquisition) < scanner.collimation_prob)
        level = _uniform(acquisition, n, 0.85, 0.98)
        edge = (pixel + 1.0) / 2.0
        covered = (
            (edge.view(1, -1, 1) < widths[:, 0].view(n, 1, 1))
            | (edge.view(1, -1, 1) > 1.0 - widths[:, 1].view(n, 1, 1))
            | (edge.view(1, 1, -1) < widths[:, 2].view(n, 1, 1))
            | (edge.view(1, 1, -1) > 1.0 - widths[:, 3].view(n, 1, 1))
        )
        image = torch.where(covered, level.expand_as(image), image)
    noise_std = _uniform(acquisition, n, *scanner.noise)
    image = (image + noise_std * torch.randn(image.shape, generator=acquisition)).clamp(0.0, 1.0)

    spacing = (_FIELD_OF_VIEW_MM * zoom.flatten() / size).tolist()
    return CXRData(
        images=image.unsqueeze(1).contiguous(),
        masks=masks,
        ids=[f"phantom_{domain}_{seed}_{i:04d}" for i in range(n)],
        classes=PHANTOM_CLASSES,
        spacing_mm=spacing,
    )


def write_phantom_dataset(root: str | os.PathLike, n: int, size: int = 64, domain: str = "a", seed: int = 0) -> Path:
    """Write phantoms as a prepared dataset folder, readable by :func:`~segmentation.data.dataset.load_dataset`.

    Writes ``images/<id>.png`` (8-bit), ``masks/<organ>/<id>.png`` (0/255) for the five organs and
    ``dataset.json`` (classes, source, domain, seed, size, pixel spacing per image, scanner). The
    folder is built beside ``root`` and renamed into place at the end, so a failure leaves no half dataset.

    Args:
        root: the folder to create; it must not exist, or be empty.
        n, size, domain, seed: as for :func:`make_phantoms`.

    Returns:
        ``root``.

    Raises:
        FileExistsError: if ``root`` exists and is not empty (choose another folder or delete it).
        ValueError: as :func:`make_phantoms`.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root}: exists and is not empty; choose a new folder or delete it")
    data = make_phantoms(n, size=size, domain=domain, seed=seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        images = (data.images[:, 0] * 255.0).round().to(torch.uint8).numpy()
        masks = data.masks.numpy() > 0.5
        for i, image_id in enumerate(data.ids):
            write_png(tmp / "images" / f"{image_id}.png", images[i])
            for c, organ in enumerate(data.classes):
                write_png(tmp / "masks" / organ / f"{image_id}.png", masks[i, c])
        atomic_write_json(
            tmp / "dataset.json",
            {
                "classes": list(data.classes),
                "source": "phantom",
                "domain": domain,
                "seed": seed,
                "size": [size, size],
                "scanner": asdict(DOMAINS[domain]),
                "images": {
                    image_id: {"pixel_spacing_mm": spacing, "original_size": [size, size]}
                    for image_id, spacing in zip(data.ids, data.spacing_mm or [])
                },
            },
        )
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


__all__ = ["DOMAINS", "PHANTOM_CLASSES", "Scanner", "make_phantoms", "write_phantom_dataset"]
