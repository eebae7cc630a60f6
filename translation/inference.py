"""Apply a fully convolutional translator to images of any size: whole, or in blended tiles.

A translator trained at one size (say 256 px) is reused on radiographs of their own size, so a 512 px image is not
shrunk to 256 px and blown up again. Sizes that are not multiples of the translator's ``required_divisor`` are
padded by reflection and cropped back. Images too large for memory are translated in overlapping tiles whose seams
are feathered (a linear cross-fade, as in the sliding-window inference of MONAI).

Tiling is exact, to float rounding, for a translator without image-wide statistics (``norm="none"``) whose
receptive-field radius is at most ``overlap // 4`` pixels: each tile's outer ``overlap // 4`` pixels on a side it
shares with a neighbour get weight 0 and the cross-fade runs over the middle half of the overlap; tiles start on
multiples of the divisor, so stride-2 layers see the same pixel phase as in the whole image. Instance and layer
norm compute their statistics per tile instead of per image: keep tiles at least the training size, where those
statistics were learnt, and the overlap wide.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from translation.generators import check_int


def translate_image(
    fn: Callable[[Tensor], Tensor], image: Tensor, divisor: int = 1, tile: int | None = None, overlap: int = 32
) -> Tensor:
    """Translate ``image`` at its own size with ``fn``, padding to ``divisor`` and optionally in blended tiles.

    The image is padded at the bottom and right to multiples of ``divisor`` (reflection; replication where the
    image is smaller than the padding), translated whole or tile by tile, and cropped back. Runs under
    ``torch.inference_mode``; ``fn`` is called on the device of ``image``.

    Args:
        fn: a translation direction, e.g. ``translator.a_to_b``: ``[B, C, h, w] -> [B, C, h, w]`` for ``h``, ``w``
            multiples of ``divisor``.
        image: a batch of equal-size images in ``[-1, 1]``.
        divisor: the translator's ``required_divisor``.
        tile: translate in ``tile x tile`` pieces (a multiple of ``divisor``); ``None`` translates the whole image.
            An image no larger than ``tile`` is translated whole.
        overlap: pixels shared by neighbouring tiles (``0 <= overlap <= tile - divisor``); the grid's stride is
            rounded down to a multiple of ``divisor``, so actual overlaps are at least ``overlap``.

    Returns:
        The translated images, same shape and dtype as ``image``.

    Raises:
        ValueError: for an image that is not ``[B, C, H, W]`` floating point, or a bad ``divisor``, ``tile`` or
            ``overlap`` (naming the argument).

    Shape:
        ``[B, C, H, W] -> [B, C, H, W]``, any ``H``, ``W >= 1``.
    """
    if not isinstance(image, Tensor) or image.dim() != 4 or not image.is_floating_point():
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected image as a floating-point tensor of shape [B, C, H, W], got {shape}")
    check_tiling(divisor, tile, overlap)
    height, width = image.shape[-2:]
    with torch.inference_mode():
        padded = pad_to_multiple(image, divisor)
        if tile is None or max(padded.shape[-2:]) <= tile:
            out = fn(padded)
        else:
            out = _tiled(fn, padded, divisor, tile, overlap)
        return out[..., :height, :width].to(image.dtype)


def check_tiling(divisor: int, tile: int | None, overlap: int) -> None:
    """Check the arguments of :func:`translate_image` that do not depend on the image.

    Raises:
        ValueError: unless ``divisor >= 1`` and, for a ``tile``, it is a multiple of ``divisor`` and
            ``0 <= overlap <= tile - divisor``.
    """
    check_int("divisor", divisor, 1)
    if tile is None:
        return
    check_int("tile", tile, divisor)
    if tile % divisor:
        raise ValueError(f"expected tile to be a multiple of the translator's divisor {divisor}, got {tile}")
    check_int("overlap", overlap, 0)
    if overlap > tile - divisor:
        raise ValueError(f"expected overlap <= tile - divisor = {tile - divisor}, got {overlap}; lower the overlap "
                         "or raise the tile")


def pad_to_multiple(image: Tensor, divisor: int) -> Tensor:
    """Pad ``image`` at the bottom and right to height and width multiples of ``divisor``.

    Reflection (no edge duplicated), or replication along an axis shorter than or equal to its padding, where
    reflection is undefined. No copy when nothing is padded.

    Shape:
        ``[B, C, H, W] -> [B, C, ceil(H / d) * d, ceil(W / d) * d]``.
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


def tile_starts(length: int, tile: int, overlap: int, divisor: int = 1) -> list[int]:
    """Starts of the tiles covering ``length`` pixels: stride ``tile - overlap`` rounded down to ``divisor``.

    The last tile ends at ``length``; a ``length`` no larger than ``tile`` is one tile at 0. ``length`` and ``tile``
    must be multiples of ``divisor`` (as after :func:`pad_to_multiple`), so every start is one.
    """
    if length <= tile:
        return [0]
    stride = max(divisor, (tile - overlap) // divisor * divisor)
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _feather(starts: list[int], size: int, length: int, overlap: int) -> list[Tensor]:
    """Per-tile 1-D weights: 0 on the outer ``overlap // 4`` pixels of a shared side, then a linear ramp to 1."""
    margin = overlap // 4
    ramp = max(1, overlap - 2 * margin)
    position = torch.arange(size, dtype=torch.float32)
    weights = []
    for i, start in enumerate(starts):
        w = torch.ones(size)
        if i > 0:
            w = torch.minimum(w, ((position - margin + 1) / ramp).clamp(0, 1))
        if start + size < length:
            w = torch.minimum(w, ((size - margin - position) / ramp).clamp(0, 1))
        weights.append(w)
    return weights


def _tiled(fn: Callable[[Tensor], Tensor], image: Tensor, divisor: int, tile: int, overlap: int) -> Tensor:
    height, width = image.shape[-2:]
    th, tw = min(tile, height), min(tile, width)
    rows, cols = tile_starts(height, th, overlap, divisor), tile_starts(width, tw, overlap, divisor)
    row_w, col_w = _feather(rows, th, height, overlap), _feather(cols, tw, width, overlap)
    total: Tensor | None = None
    weight = torch.zeros(height, width, device=image.device)
    for top, wy in zip(rows, row_w):
        for left, wx in zip(cols, col_w):
            out = fn(image[..., top:top + th, left:left + tw]).float()
            if total is None:
                total = torch.zeros(*out.shape[:2], height, width, device=out.device)
            w = (wy[:, None] * wx[None, :]).to(out.device)
            total[..., top:top + th, left:left + tw] += out * w
            weight[top:top + th, left:left + tw] += w.to(weight.device)
    return total / weight.to(total.device)
