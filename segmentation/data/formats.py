"""Readers of the chest X-ray datasets in the formats and folder layouts in which people really get them.

Everything here reads; nothing writes. :mod:`segmentation.data.prepare` turns what these readers
find into one prepared dataset folder.

Formats:

- JSRT ``.IMG`` (Shiraishi et al., AJR 174(1):71-74, 2000): headerless raw 2048x2048, 16-bit
  big-endian words of which 12 bits are used, "white is zero" (a high value is a high optical
  density, shown dark), 0.175 mm pixels. :func:`read_jsrt_img` returns grey levels as displayed
  (``4095 - raw``, bone bright).
- JSRT re-distributions as 8-bit palette PNGs named ``<ID>.IMG.png``: the palette is applied
  (:func:`segmentation.data.io.read_image`), giving grey levels as displayed.
- SCR masks (van Ginneken et al., Medical Image Analysis 10(1):19-40, 2006): one 1024x1024 GIF per
  organ, at half the JSRT resolution, in folders named ``left lung`` or ``left_lung`` (etc.),
  possibly under ``fold1`` / ``fold2`` (:func:`find_scr_masks`).
- Montgomery County, NLM layout (Jaeger et al., QIMS 4(6):475-477, 2014): ``CXR_png/*.png`` and
  ``ManualMask/leftMask`` / ``ManualMask/rightMask``, 4020x4892 or 4892x4020, 0.0875 mm
  (:func:`find_montgomery_nlm`); and the compilation layout in which both lungs are one merged
  mask, split by :func:`split_lungs`.
- Shenzhen (CHNCXR) images with ``<id>_mask.png`` merged lung masks.
- DICOM through pydicom (optional extra ``cxr-transfer[dicom]``): MONOCHROME1 is inverted to
  display grey levels, pixel spacing is read from ``PixelSpacing`` / ``ImagerPixelSpacing``.

Left and right are always the patient's: ``left_lung`` lies on the image's right-hand side.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from segmentation.data.io import IMAGE_SUFFIXES, DataError, read_image

ORGANS: tuple[str, ...] = ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")
"""The five SCR organs (patient's left/right)."""

MERGED_LUNGS = "lungs"
"""Class name of a merged two-lung mask kept merged (written as ``masks/lungs/<id>.png``)."""

KNOWN_CLASSES: tuple[str, ...] = ORGANS + (MERGED_LUNGS,)
"""Every class name a prepared dataset may hold."""

DICOM_SUFFIXES = (".dcm", ".dicom")
RAW_SUFFIXES = (".img",)
SOURCE_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + RAW_SUFFIXES

JSRT_SHAPE = (2048, 2048)
JSRT_SPACING_MM = 0.175
JSRT_BITS = 12
MONTGOMERY_SHAPES = ((4892, 4020), (4020, 4892))
MONTGOMERY_SPACING_MM = 0.0875


@dataclass
class SourceImage:
    """One radiograph as read from its original file.

    Attributes:
        array: 2-D ``uint8`` or ``uint16`` grey levels as displayed (bone bright).
        bits_stored: significant bits of ``array`` (8, or e.g. 12 for JSRT / DICOM ``BitsStored``);
            values lie in ``0 .. 2**bits_stored - 1``.
        spacing_mm: ``(row, column)`` pixel spacing in millimetres, or ``None`` when unknown.
    """

    array: np.ndarray
    bits_stored: int
    spacing_mm: tuple[float, float] | None = None


def normalize_class_name(name: str) -> str:
    """``"Left Lung"``, ``"left-lung"``, ``"left_lung"`` -> ``"left_lung"``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def clean_class_name(name: str) -> str:
    """A class name as a prepared dataset stores it: known organ names normalised, any other name kept as given.

    ``"Left Lung"`` -> ``"left_lung"``, ``"Lungs"`` -> ``"lungs"``, ``"lung"`` -> ``"lung"``, ``"Tumour"`` ->
    ``"Tumour"`` (surrounding spaces are dropped).

    Raises:
        DataError: for a name that cannot be a mask folder or a ``--classes`` entry (empty, starting with
            ``.``, or holding ``/``, ``\\``, ``,`` or ``=``).
    """
    stripped = name.strip()
    norm = normalize_class_name(stripped)
    if norm in KNOWN_CLASSES:
        return norm
    if not stripped or stripped.startswith(".") or any(c in stripped for c in "/\\,="):
        raise DataError(f"expected a class name usable as a folder name (not empty, not starting with '.', without "
                        f"/ \\ , =), got {name!r}; rename the mask folder or choose another name")
    return stripped


def check_classes(classes: list[str] | tuple[str, ...], allowed: tuple[str, ...] = KNOWN_CLASSES,
                  what: str = "class") -> tuple[str, ...]:
    """Normalise class names and reject unknown ones.

    Raises:
        DataError: for an unknown or repeated name, listing the valid ones.
    """
    out = []
    for name in classes:
        norm = normalize_class_name(name)
        if norm not in allowed:
            raise DataError(f"unknown organ name {name!r}: expected one of {', '.join(allowed)}; "
                            f"rename the {what} or choose among those")
        if norm in out:
            raise DataError(f"expected each class once, got {norm!r} twice")
        out.append(norm)
    if not out:
        raise DataError(f"expected at least one class among {', '.join(allowed)}, got none")
    return tuple(out)


def image_id(path: str | os.PathLike) -> str:
    """The identifier of a source image file: its name without image suffixes.

    ``JPCLN001.IMG.png`` -> ``JPCLN001``; ``JPCLN001.IMG`` -> ``JPCLN001``; ``a.dcm`` -> ``a``;
    ``CHNCXR_0001_0_mask.png`` -> ``CHNCXR_0001_0_mask`` (see :func:`shenzhen_mask_id`).
    """
    name = Path(path).name
    for _ in range(2):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in SOURCE_SUFFIXES:
            name = stem
    return name


def shenzhen_mask_id(path: str | os.PathLike) -> str | None:
    """``CHNCXR_0001_0_mask.png`` -> ``CHNCXR_0001_0``; None for a name without ``_mask``."""
    stem = image_id(path)
    return stem[: -len("_mask")] if stem.lower().endswith("_mask") else None


def list_files(folder: str | os.PathLike, suffixes: tuple[str, ...] = SOURCE_SUFFIXES, *,
               recursive: bool = False, what: str = "folder") -> list[Path]:
    """Sorted image files of ``folder`` (hidden files and other suffixes ignored).

    Raises:
        DataError: if the folder is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such {what}; check the path")
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and not p.name.startswith(".") and _has_suffix(p, suffixes))


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.suffix.lower() in suffixes


def index_by_id(files: list[Path], key=image_id) -> dict[str, Path]:  # noqa: ANN001 - a callable
    """``{id: path}``; files whose key is None are skipped.

    Raises:
        DataError: if two files share an id (e.g. ``a.png`` and ``a.gif``).
    """
    out: dict[str, Path] = {}
    for path in files:
        ident = key(path)
        if ident is None:
            continue
        if ident in out:
            raise DataError(f"{path}: same id {ident!r} as {out[ident]}; remove or rename one of the two")
        out[ident] = path
    return out


# --------------------------------------------------------------------------------------------- JSRT


def read_jsrt_img(path: str | os.PathLike, shape: tuple[int, int] = JSRT_SHAPE) -> np.ndarray:
    """Read a JSRT ``.IMG`` file as 12-bit grey levels as displayed.

    The file is headerless: ``H * W`` big-endian unsigned 16-bit words, of which 12 bits are used,
    "white is zero" (JSRT user's guide), so the displayed grey level is ``4095 - raw``.

    Args:
        path: the ``.IMG`` file.
        shape: ``(H, W)``; 2048x2048 for every JSRT image.

    Returns:
        ``uint16 [H, W]`` with values in ``0 .. 4095``, bone bright.

    Raises:
        DataError: if the file is missing, truncated / of another size, or holds values above 4095
            (a little-endian or non-JSRT file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    expected = shape[0] * shape[1] * 2
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"{path}: expected {expected} bytes (headerless {shape[1]}x{shape[0]} 16-bit JSRT .IMG), got {size}; "
            "the file is truncated or not a JSRT .IMG: re-download it"
        )
    raw = np.fromfile(path, dtype=">u2").reshape(shape)
    top = int(raw.max())
    if top > 4095:
        raise DataError(
            f"{path}: expected 12-bit values (<= 4095) in a big-endian JSRT .IMG, got a maximum of {top}; "
            "the file is little-endian or not a JSRT .IMG: convert or re-download it"
        )
    return (4095 - raw).astype(np.uint16)


def read_jsrt_image(path: str | os.PathLike) -> SourceImage:
    """Read a JSRT radiograph, raw ``.IMG`` or a re-distributed conversion (``<ID>.IMG.png``).

    Pixel spacing is 0.175 mm at 2048x2048, scaled for square conversions of another size.
    """
    path = Path(path)
    if path.suffix.lower() == ".img":
        array = read_jsrt_img(path)
        bits = JSRT_BITS
    else:
        source = read_source_image(path)
        array, bits = source.array, source.bits_stored
    h, w = array.shape
    spacing = None
    if h == w:
        spacing = (JSRT_SPACING_MM * JSRT_SHAPE[0] / h, JSRT_SPACING_MM * JSRT_SHAPE[1] / w)
    return SourceImage(array, bits, spacing)


def find_scr_masks(root: str | os.PathLike, organs: tuple[str, ...] = ORGANS) -> dict[str, dict[str, Path]]:
    """Find SCR mask GIFs under ``root``: ``{organ: {id: path}}``.

    Organ folders may be named ``left lung``, ``left_lung`` or ``Left-Lung``, and may sit under
    ``fold1`` / ``fold2`` (or any depth): the folds are merged. Folders with other names (such as
    ``left_lung_png`` copies) are ignored.

    Raises:
        DataError: if ``root`` is missing, an organ folder is absent, or an id appears twice.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such SCR mask folder; check --masks")
    found: dict[str, dict[str, Path]] = {organ: {} for organ in organs}
    folders: dict[str, list[Path]] = {organ: [] for organ in organs}
    for folder in sorted(p for p in [root, *root.rglob("*")] if p.is_dir()):
        organ = normalize_class_name(folder.name)
        if organ in found:
            folders[organ].append(folder)
            for path in list_files(folder, (".gif", ".png", ".bmp", ".tif", ".tiff")):
                ident = image_id(path)
                if ident in found[organ]:
                    raise DataError(f"{path}: {organ} mask of {ident!r} also at {found[organ][ident]}; "
                                    "remove the duplicate")
                found[organ][ident] = path
    missing = [organ for organ in organs if not folders[organ]]
    if missing:
        raise DataError(
            f"{root}: no SCR mask folder for {', '.join(missing)} (expected folders named like 'left lung' or "
            "'left_lung', possibly under fold1/fold2); point --masks at the SCR masks or choose --classes"
        )
    return found


# --------------------------------------------------------------------------------------- Montgomery


@dataclass
class MontgomeryNLM:
    """Paths of the NLM Montgomery layout: ``images`` = ``CXR_png``, ``left`` / ``right`` = ManualMask folders."""

    images: Path
    left: Path
    right: Path


def find_montgomery_nlm(root: str | os.PathLike) -> MontgomeryNLM | None:
    """Locate ``CXR_png`` and ``ManualMask/{leftMask,rightMask}`` at ``root`` or one or two levels below.

    Returns:
        the folders, or None if ``root`` is not in the NLM layout.
    """
    root = Path(root)
    candidates = [root, *sorted(p for p in root.glob("*") if p.is_dir()),
                  *sorted(p for p in root.glob("*/*") if p.is_dir())]
    for base in candidates:
        images, manual = base / "CXR_png", base / "ManualMask"
        if images.is_dir() and (manual / "leftMask").is_dir() and (manual / "rightMask").is_dir():
            return MontgomeryNLM(images, manual / "leftMask", manual / "rightMask")
    return None


def find_merged_layout(root: str | os.PathLike) -> tuple[Path, Path] | None:
    """Locate an (images, merged masks) folder pair of a compilation layout under ``root``.

    Recognised pairs: ``cxr`` + ``masks`` (as in ``originals/montgomery/data``), ``CXR_png`` +
    ``masks`` or ``mask``, ``images`` + ``masks`` (holding files, not organ folders), at ``root`` or
    one level below.
    """
    root = Path(root)
    for base in [root, *sorted(p for p in root.glob("*") if p.is_dir())]:
        for image_name in ("cxr", "CXR_png", "images", "img"):
            for mask_name in ("masks", "mask", "ManualMask"):
                images, masks = base / image_name, base / mask_name
                if images.is_dir() and masks.is_dir() and any(list_files(masks)):
                    return images, masks
    return None


def montgomery_spacing(shape: tuple[int, int]) -> tuple[float, float] | None:
    """Pixel spacing of a Montgomery NLM image (0.0875 mm at 4020x4892 / 4892x4020).

    A copy scaled down with its aspect ratio kept (within 0.5%) gets the spacing scaled; a size with
    another aspect ratio (a squashed square copy) gets None.
    """
    h, w = shape
    for nh, nw in MONTGOMERY_SHAPES:
        if abs((h / w) / (nh / nw) - 1.0) < 0.005:
            return (MONTGOMERY_SPACING_MM * nh / h, MONTGOMERY_SPACING_MM * nw / w)
    return None


def split_lungs(mask: np.ndarray, path: str | os.PathLike = "<mask>") -> tuple[np.ndarray, np.ndarray]:
    """Split a merged two-lung mask into the patient's left and right lung.

    8-connected components are assigned by the x of their centroid relative to the midpoint between
    the centroids of the two largest components; components on the image's right-hand side go to
    the patient's LEFT lung (radiographs are viewed as if facing the patient).

    Args:
        mask: 2-D bool merged mask.
        path: the file it came from, for error messages.

    Returns:
        ``(left_lung, right_lung)`` bool masks; ``left | right == mask`` and ``left & right`` is empty.

    Raises:
        DataError: if the mask has fewer than two components (lungs touching, or one lung missing).
    """
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count < 2:
        raise DataError(
            f"{path}: expected two lung components in the merged mask, got {count}; the lungs touch or one is "
            "missing: fix the mask, or keep it merged with --classes lungs"
        )
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, labels, index)
    centres = np.array([c[1] for c in ndimage.center_of_mass(mask, labels, index)])
    largest = np.argsort(-sizes, kind="stable")[:2]
    midpoint = centres[largest].mean()
    left_labels = index[centres > midpoint]
    left = np.isin(labels, left_labels)
    return left, mask & ~left


# ------------------------------------------------------------------------------------- any image


def read_dicom(path: str | os.PathLike) -> SourceImage:
    """Read a DICOM radiograph as grey levels as displayed, with its pixel spacing.

    MONOCHROME1 (high value shown dark) is inverted to ``2**BitsStored - 1 - value``. The spacing is
    ``PixelSpacing``, else ``ImagerPixelSpacing``, else unknown.

    Raises:
        DataError: if pydicom is not installed, or the file is unreadable or not a single grey frame.
    """
    path = Path(path)
    try:
        import pydicom
    except ImportError as err:  # pragma: no cover - pydicom is in the test extra
        raise DataError(f"{path}: reading DICOM needs pydicom; pip install 'cxr-transfer[dicom]'") from err
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    try:
        ds = pydicom.dcmread(path)
        array = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for broken files
        raise DataError(f"{path}: unreadable or truncated DICOM ({err}); re-export it") from err
    if array.ndim != 2:
        raise DataError(f"{path}: expected a single-frame grey DICOM, got pixel data of shape {array.shape}; "
                        "export the frontal frame alone")
    bits = int(getattr(ds, "BitsStored", 16 if array.dtype.itemsize > 1 else 8))
    top = (1 << bits) - 1
    array = np.clip(array.astype(np.int64), 0, top)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        array = top - array
    array = array.astype(np.uint8 if bits <= 8 else np.uint16)
    spacing = None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, key, None)
        if value is not None and len(value) == 2:
            spacing = (float(value[0]), float(value[1]))
            break
    return SourceImage(array, bits, spacing)


def _png_significant_bits(path: Path) -> int | None:
    """Significant bits from a PNG ``sBIT`` chunk, or None."""
    try:
        with Image.open(path) as im:
            sbit = im.info.get("sbit")
    except OSError:
        return None
    if isinstance(sbit, (tuple, list)) and sbit:
        return int(sbit[0])
    if isinstance(sbit, int):
        return sbit
    return None


def read_source_image(path: str | os.PathLike) -> SourceImage:
    """Read any supported radiograph file (PNG/GIF/JPEG/TIFF/BMP, DICOM, JSRT ``.IMG``).

    For a 16-bit image the significant bits come from the PNG ``sBIT`` chunk when present; otherwise
    a 16-bit image whose maximum is below 4096 is taken as 12-bit (as the NLM sets and most
    detector exports store it), else as 16-bit.

    Raises:
        DataError: for a missing, truncated or unreadable file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path)
    if suffix in RAW_SUFFIXES:
        return read_jsrt_image(path)
    array = read_image(path)
    if array.dtype == np.uint8:
        return SourceImage(array, 8)
    bits = _png_significant_bits(path)
    if bits is None:
        bits = 12 if int(array.max()) < 4096 else 16
    return SourceImage(array, max(8, min(16, bits)))
