"""Reading and writing single images and masks, with errors that name the file and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from runtime.io import atomic_path

IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class DataError(ValueError):
    """Bad input data: the message names the file and what to do about it."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a radiograph as a 2-D grey array, uint8 or uint16, as displayed (palettes applied).

    Palette images are converted through their palette to grey; RGB(A) images are converted to
    luminance; 16-bit images keep their 16 bits.

    Raises:
        DataError: if the file is missing, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGB").convert("L")
            elif im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                im = im.convert("L")
            elif im.mode == "1":
                im = im.convert("L")
            array = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err}); re-download or re-export it") from err
    if array.ndim != 2:
        raise DataError(f"{path}: expected a single-channel image, got shape {array.shape}")
    if array.dtype == np.int32 or array.dtype == np.int16:  # PIL "I"/"I;16" modes
        if array.min() < 0 or array.max() > 65535:
            raise DataError(f"{path}: expected grey levels in 0..65535, got {array.min()}..{array.max()}")
        array = array.astype(np.uint16)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: expected 8- or 16-bit grey levels, got {array.dtype}")
    return array


def read_mask(path: str | os.PathLike, *, strict: bool = True) -> np.ndarray:
    """Read a binary mask as a 2-D bool array (foreground = value above half the range).

    Args:
        path: mask file (PNG, GIF, ...).
        strict: when True, a mask with more than two grey levels is rejected; when False it is
            thresholded at half its range (for anti-aliased masks such as the merged Montgomery ones).

    Raises:
        DataError: if unreadable, or (strict) not binary.
    """
    array = read_image(path)
    values = np.unique(array)
    if strict and len(values) > 2:
        raise DataError(
            f"{Path(path)}: expected a binary mask (two grey levels), got {len(values)} levels; "
            "pass --threshold-masks to binarise anti-aliased masks at half range"
        )
    top = 65535 if array.dtype == np.uint16 else 255
    if len(values) <= 2 and strict:
        return array > (values.min() if len(values) == 2 else top // 2)
    return array > top // 2


def to_unit(array: np.ndarray) -> np.ndarray:
    """Grey levels of a 2-D ``uint8`` / ``uint16`` array (as :func:`read_image` returns) as ``float32`` in
    ``[0, 1]``: divided by 255 or 65535, the one bit-depth scaling of the pipeline."""
    return array.astype(np.float32) / np.float32(65535.0 if array.dtype == np.uint16 else 255.0)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a 2-D uint8/uint16 array (or bool mask, stored 0/255) as PNG, atomically."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16) or array.ndim != 2:
        raise ValueError(f"expected a 2-D uint8/uint16/bool array, got {array.dtype} {array.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
