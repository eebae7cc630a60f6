"""Turn datasets in their original layouts into one prepared dataset folder.

A prepared folder (read by :func:`segmentation.data.dataset.load_dataset`)::

    out/
        images/<id>.png            8-bit grey, or 16-bit when the source has more than 8 bits
        masks/<class>/<id>.png     0 / 255, the same size as the image
        dataset.json               classes, source, sizes, pixel spacing, per-image metadata

Output size (``size``, default 512): with ``resize="longest"`` the longer side becomes ``size`` and
the aspect ratio is kept (a 4020x4892 Montgomery image, width x height, becomes 421x512); with ``resize="square"``
every image becomes ``size`` x ``size`` (aspect not kept); ``size=None`` keeps the source size.
Images are resized with an anti-aliased bilinear filter (``skimage.transform.resize(order=1,
anti_aliasing=True)``), masks label-safe (the same filter on 0/1 values, thresholded at 0.5, so the
output holds only 0 and 255). SCR masks at half the JSRT resolution are resized to the image's output
size directly.

Everything is written into a hidden temporary folder beside ``out`` that is renamed to ``out`` at the
end: a failed or interrupted prepare leaves no half-written dataset (the temporary folder is removed).
All file matching and checks that need no pixels run before anything is written.

Datasets: JSRT (Shiraishi et al., AJR 2000) with SCR masks (van Ginneken et al., MedIA 2006),
Montgomery County and Shenzhen (Jaeger et al., QIMS 2014), as used for cross-dataset transfer by
Oliveira & dos Santos, "Deep transfer learning for segmentation of anatomical structures in chest
radiographs", SIBGRAPI 2018.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shlex
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from skimage.transform import resize as _sk_resize

from runtime.io import atomic_write_json
from runtime.logging import progress
from segmentation.data import formats
from segmentation.data.formats import MERGED_LUNGS, ORGANS, SourceImage
from segmentation.data.io import DataError, read_mask, write_png

RESIZE_MODES = ("longest", "square")
LUNG_SIDES = ("left_lung", "right_lung")
FORMAT_NAME = "cxr-transfer prepared dataset"
FORMAT_VERSION = 1
DEFAULT_CLASS_NAME = "mask"
"""Class of a flat mask folder (``masks/<id>.png``, one class) when ``prepare_folder`` is given no ``class_name``."""


@dataclass
class SourceItem:
    """One image of a source dataset and where its masks are.

    Attributes:
        id: output identifier (file stem).
        image: the source image file.
        masks: ``{class: file}`` masks given per class.
        merged: a merged two-lung mask (compilation layouts), split into ``left_lung`` /
            ``right_lung`` or kept as ``lungs`` as the classes ask.
        orient_lungs: given ``left_lung`` and ``right_lung`` files whose naming convention is not
            certain (NLM ``leftMask`` / ``rightMask``), swap them when the "left" one lies on the image's
            left, so that ``left_lung`` is always the patient's left (the image's right).
    """

    id: str
    image: Path
    masks: dict[str, Path] = field(default_factory=dict)
    merged: Path | None = None
    orient_lungs: bool = False


# ---------------------------------------------------------------------------------------- resizing


def output_shape(shape: tuple[int, int], size: int | None, resize: str = "longest") -> tuple[int, int]:
    """Output ``(H, W)`` of an image of ``shape`` (see the module docstring).

    Raises:
        ValueError: for a size below 1 or an unknown resize mode.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"expected resize in {RESIZE_MODES}, got {resize!r}")
    if size is None:
        return tuple(shape)  # type: ignore[return-value]
    if size < 1:
        raise ValueError(f"expected size >= 1 (or None to keep the source size), got {size}")
    if resize == "square":
        return (size, size)
    h, w = shape
    scale = size / max(h, w)
    return (max(1, int(round(h * scale))), max(1, int(round(w * scale))))


def resize_image(image: SourceImage, shape: tuple[int, int]) -> np.ndarray:
    """Resize anti-aliased to ``shape``; ``uint8`` for 8-bit sources, else ``uint16`` on the full 16-bit range.

    A ``b``-bit value ``v`` becomes ``v / (2**b - 1)`` of the output range (12-bit 4095 -> 65535).
    """
    top = float((1 << image.bits_stored) - 1)
    values = np.clip(image.array.astype(np.float64) / top, 0.0, 1.0)
    if values.shape != tuple(shape):
        down = shape[0] < values.shape[0] or shape[1] < values.shape[1]
        values = _sk_resize(values, shape, order=1, anti_aliasing=down, preserve_range=True)
    if image.bits_stored <= 8:
        return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return np.clip(np.rint(values * 65535.0), 0, 65535).astype(np.uint16)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label-safe resize of a bool mask: anti-aliased bilinear on 0/1, thresholded at 0.5. Returns bool."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    down = shape[0] < mask.shape[0] or shape[1] < mask.shape[1]
    return _sk_resize(mask.astype(np.float64), shape, order=1, anti_aliasing=down, preserve_range=True) >= 0.5


# ----------------------------------------------------------------------------------------- matching


def match_items(images: Mapping[str, Path], masks: Mapping[str, Mapping[str, Path]], *, merged: Mapping[str, Path]
                | None = None, skip_unmatched: bool = False,
                hint: str | None = None) -> tuple[list[SourceItem], list[dict[str, str]]]:
    """Pair images with their masks by id.

    Args:
        images: ``{id: image file}``.
        masks: ``{class: {id: mask file}}``.
        merged: ``{id: merged lung mask file}`` for compilation layouts.
        skip_unmatched: leave out images without a mask and masks without an image (recorded in the
            returned list) instead of failing.
        hint: the likely fix of a mismatch (such as :func:`suffix_hint`'s), put first in the errors for unmatched files.

    Returns:
        ``(items, skipped)``; ``skipped`` holds ``{"file", "reason"}`` records.

    Raises:
        DataError: for no images, or (unless ``skip_unmatched``) an image without a mask or the reverse.
    """
    if not images:
        raise DataError("expected at least one image, got none; check the images folder and its file suffixes")
    tables = dict(masks)
    if merged is not None:
        tables = {**tables, "merged lung": merged}
    skipped: list[dict[str, str]] = []
    keep = set(images)
    fix = f"{hint}; else " if hint else ""
    for name, table in tables.items():
        what = name if name.lower().endswith("mask") else f"{name} mask"  # "a mask", not "a mask mask"
        for ident in sorted(set(images) - set(table)):
            if not skip_unmatched:
                raise DataError(f"{images[ident]}: image without a {what}; {fix}add the mask, remove the image, "
                                "or pass --skip-unmatched to leave such images out")
            if ident in keep:
                skipped.append({"file": str(images[ident]), "reason": f"no {what}"})
            keep.discard(ident)
        for ident in sorted(set(table) - set(images)):
            if not skip_unmatched:
                raise DataError(f"{table[ident]}: {what} without an image; {fix}add the image, remove the mask, "
                                "or pass --skip-unmatched to leave it out")
            skipped.append({"file": str(table[ident]), "reason": "mask without an image"})
    if not keep:
        raise DataError(f"expected at least one image with all its masks, got none; {fix}check that image and mask "
                        "file names match (ids are the file names without suffixes)")
    items = [
        SourceItem(ident, images[ident], {cls: table[ident] for cls, table in masks.items()},
                   merged[ident] if merged is not None else None)
        for ident in sorted(keep)
    ]
    return items, skipped


def suffix_hint(images: Mapping[str, Path], masks: Mapping[str, Mapping[str, Path]]) -> str | None:
    """Say which ``--mask-suffix`` would match masks named like their image plus a suffix (``<id>_mask.png``).

    Args:
        images: ``{id: image file}``.
        masks: ``{class: {id: mask file}}``.

    Returns:
        the hint, or None when no suffix is shared by at least half of the masks without an image.
    """
    unmatched = [(ident, path) for table in masks.values() for ident, path in table.items() if ident not in images]
    counts: Counter[str] = Counter()
    examples: dict[str, Path] = {}
    for ident, path in unmatched:
        for cut in range(len(ident) - 1, 0, -1):  # the longest image id that begins the mask id
            if ident[:cut] in images:
                counts[ident[cut:]] += 1
                examples.setdefault(ident[cut:], path)
                break
    if not counts:
        return None
    suffix, count = counts.most_common(1)[0]
    if 2 * count < len(unmatched):
        return None
    return (f"{count} of {len(unmatched)} masks without an image are named like an image plus {suffix!r} (e.g. "
            f"{examples[suffix].name}): pass --mask-suffix {shlex.quote(suffix)} to match them")


# ------------------------------------------------------------------------------------------ writing


def _spacing_entry(spacing: tuple[float, float] | None) -> float | list[float] | None:
    if spacing is None:
        return None
    r, c = (round(float(v), 6) for v in spacing)
    return r if abs(r - c) <= 1e-6 * max(r, c) else [r, c]


def _check_mask_shape(mask: np.ndarray, path: Path, image_shape: tuple[int, int], image_path: Path,
                      ratios: tuple[int, ...]) -> None:
    for ratio in ratios:
        if mask.shape[0] * ratio == image_shape[0] and mask.shape[1] * ratio == image_shape[1]:
            return
    extra = " or half of it (SCR)" if 2 in ratios else ""
    raise DataError(
        f"{path}: mask of size {mask.shape[1]}x{mask.shape[0]} (width x height) for image {image_path} of size "
        f"{image_shape[1]}x{image_shape[0]}; expected the image's size{extra}: pair the mask with its own image "
        "or re-export it at the image's size"
    )


def _read_masks(item: SourceItem, classes: tuple[str, ...], image_shape: tuple[int, int], *, strict: bool,
                ratios: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict]:
    out: dict[str, np.ndarray] = {}
    notes: dict = {}
    for cls, path in item.masks.items():
        mask = read_mask(path, strict=strict)
        _check_mask_shape(mask, path, image_shape, item.image, ratios)
        out[cls] = mask
    if item.merged is not None:
        mask = read_mask(item.merged, strict=strict)
        _check_mask_shape(mask, item.merged, image_shape, item.image, ratios)
        if MERGED_LUNGS in classes:
            out[MERGED_LUNGS] = mask
        if any(side in classes for side in LUNG_SIDES):
            out["left_lung"], out["right_lung"] = formats.split_lungs(mask, item.merged)
    if item.orient_lungs and out["left_lung"].any() and out["right_lung"].any():
        left_x = np.nonzero(out["left_lung"])[1].mean() / out["left_lung"].shape[1]
        right_x = np.nonzero(out["right_lung"])[1].mean() / out["right_lung"].shape[1]
        if left_x < right_x:
            out["left_lung"], out["right_lung"] = out["right_lung"], out["left_lung"]
            notes["sides_swapped"] = True
    if MERGED_LUNGS in classes and MERGED_LUNGS not in out:
        out[MERGED_LUNGS] = out["left_lung"] | out["right_lung"]
    return {cls: out[cls] for cls in classes}, notes


@contextlib.contextmanager
def _staging(out: Path):
    """Yield a temporary folder beside ``out``, renamed to ``out`` on success and removed on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset gets ordinary folder permissions
    old = None
    try:
        yield tmp
        if out.exists():
            if any(out.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / "data")
            else:
                out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / "data", out)  # put the previous dataset back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_output(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate the output folder before any work.

    Raises:
        DataError: if ``out`` exists as a file, or as a non-empty folder without ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the output exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: the output folder exists and is not empty; choose another --out or pass --overwrite")
    return out


def write_prepared(
    items: Sequence[SourceItem],
    out: str | os.PathLike,
    *,
    classes: Sequence[str],
    source: dict,
    reader: Callable[[Path], SourceImage] = formats.read_source_image,
    size: int | None = 512,
    resize: str = "longest",
    spacing_mm: float | None = None,
    threshold_masks: bool = False,
    mask_ratios: tuple[int, ...] = (1,),
    skipped: Sequence[dict[str, str]] = (),
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int = 4,
) -> Path:
    """Read, check, resize and write ``items`` as a prepared dataset, atomically.

    Args:
        items: images and their masks (:func:`match_items`).
        out: the output folder; must not exist (or be empty) unless ``overwrite``.
        classes: output mask classes, in order (empty: images only, for unlabelled data).
        source: description of the source stored in ``dataset.json``.
        reader: reads one source image.
        size: output size (see the module docstring); None keeps the source size.
        resize: ``"longest"`` (aspect kept) or ``"square"``.
        spacing_mm: pixel spacing of every source image when the reader does not know it.
        threshold_masks: binarise anti-aliased masks at half range instead of rejecting them.
        mask_ratios: accepted image-to-mask size ratios (``(1, 2)`` for SCR half-resolution masks).
        skipped: records of left-out files, stored in ``dataset.json``.
        overwrite: replace an existing non-empty ``out``.
        show_progress: show a progress bar.
        workers: threads reading, resizing and writing images (the output does not depend on it).

    Returns:
        ``out``.

    Raises:
        DataError: for an unreadable, truncated or wrongly sized file, a non-binary mask (unless
            ``threshold_masks``), or an existing output; nothing is left behind.
        ValueError: for a bad ``size``, ``resize`` or ``workers``.
    """
    out = check_output(out, overwrite)
    output_shape((1, 1), size, resize)
    classes = tuple(classes)
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")

    def process(item: SourceItem, tmp: Path) -> dict:
        image = reader(item.image)
        if image.spacing_mm is None and spacing_mm is not None:
            image.spacing_mm = (float(spacing_mm), float(spacing_mm))
        src_shape = image.array.shape
        masks, notes = _read_masks(item, classes, src_shape, strict=not threshold_masks, ratios=mask_ratios)
        shape = output_shape(src_shape, size, resize)
        pixels = resize_image(image, shape)
        write_png(tmp / "images" / f"{item.id}.png", pixels)
        for cls, mask in masks.items():
            write_png(tmp / "masks" / cls / f"{item.id}.png", resize_mask(mask, shape))
        spacing = None
        if image.spacing_mm is not None:
            spacing = (image.spacing_mm[0] * src_shape[0] / shape[0], image.spacing_mm[1] * src_shape[1] / shape[1])
        return {
            "id": item.id,
            "source_file": str(item.image),
            "mask_files": {cls: str(p) for cls, p in item.masks.items()}
            | ({"merged_lungs": str(item.merged)} if item.merged is not None else {}),
            "original_size": list(src_shape),
            "size": list(shape),
            "bits_stored": image.bits_stored,
            "bit_depth": pixels.dtype.itemsize * 8,
            "original_pixel_spacing_mm": _spacing_entry(image.spacing_mm),
            "pixel_spacing_mm": _spacing_entry(spacing),
            **notes,
        }

    with _staging(out) as tmp:
        # Threads overlap file I/O (each PNG is fsync'ed) with decoding and resizing, which release the GIL.
        # The pool is shut down (pending items cancelled) before the staging folder is removed on failure.
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        try:
            records = list(progress(pool.map(lambda item: process(item, tmp), items), total=len(items),
                                    desc=f"prepare {out.name}", enabled=show_progress))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        bit_depths = {r["bit_depth"] for r in records}
        for cls in classes:
            (tmp / "masks" / cls).mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": out.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            "classes": list(classes),
            "count": len(records),
            "target_size": size,
            "resize": resize,
            "bit_depths": sorted(bit_depths),
            "original_sizes": sorted({tuple(r["original_size"]) for r in records}),
            "pixel_spacing_note": "per image: pixel_spacing_mm of the written PNG, original_pixel_spacing_mm of the "
            "source; a float when isotropic, [row, column] otherwise, null when unknown",
            "images": records,
            "skipped": list(skipped),
        }
        atomic_write_json(tmp / "dataset.json", meta)
    return out


# --------------------------------------------------------------------------------------- datasets


def _images_in(folder: str | os.PathLike, what: str, key: Callable[[Path], str | None] = formats.image_id,
               suffixes: tuple[str, ...] = formats.SOURCE_SUFFIXES) -> dict[str, Path]:
    files = formats.list_files(folder, suffixes, what=what)
    return formats.index_by_id(files, key)


def _merged_mask_id(path: Path) -> str:
    """Merged masks are named like their image, or ``<id>_mask.png`` (Shenzhen style)."""
    return formats.shenzhen_mask_id(path) or formats.image_id(path)


def _mask_naming(paths: Iterable[Path], key: Callable[[Path], str | None] = _merged_mask_id) -> list[str]:
    """The file name patterns of the masks read: ``["<id>.png"]``, ``["<id>_mask.png"]``, or both."""
    names = set()
    for path in paths:
        ident = key(path)
        names.add("<id>" + path.name[len(ident):] if ident and path.name.startswith(ident) else path.name)
    return sorted(names)


def _only_prefix(table: dict[str, Path], prefix: str) -> dict[str, Path]:
    """Keep the ids starting with ``prefix`` when some do: compilations mix Montgomery (MCUCXR_) and Shenzhen
    (CHNCXR_) files in one folder."""
    kept = {k: v for k, v in table.items() if k.startswith(prefix)}
    return kept if kept else table


def prepare_jsrt(
    images: str | os.PathLike,
    masks: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] = ORGANS,
    size: int | None = 512,
    resize: str = "longest",
    threshold_masks: bool = False,
    skip_unmatched: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int = 4,
) -> Path:
    """Prepare JSRT with SCR masks.

    Args:
        images: folder of JSRT images: raw ``<ID>.IMG`` (2048x2048 big-endian 12-bit, "white is
            zero") or conversions such as the 8-bit palette ``<ID>.IMG.png``.
        masks: the SCR masks folder (organ folders ``left lung`` / ``left_lung`` ..., possibly under
            ``fold1`` / ``fold2``), or None for images only.
        out: output folder.
        classes: organs among ``left_lung, right_lung, heart, left_clavicle, right_clavicle``.
        size, resize, threshold_masks, skip_unmatched, overwrite, show_progress, workers: see
            :func:`write_prepared`.

    Returns:
        ``out``. Pixel spacing is 0.175 mm at 2048x2048.

    Raises:
        DataError: see :func:`write_prepared`, plus missing folders, unknown organs, unmatched files.
    """
    check_output(out, overwrite)
    classes = formats.check_classes(classes, ORGANS, "organ folder") if masks is not None else ()
    image_files = _images_in(images, "JSRT images folder (--images)")
    mask_tables = formats.find_scr_masks(masks, classes) if masks is not None else {}
    items, skipped = match_items(image_files, mask_tables, skip_unmatched=skip_unmatched)
    source = {"dataset": "jsrt", "layout": "JSRT images + SCR masks", "images": str(Path(images).resolve()),
              "masks": str(Path(masks).resolve()) if masks is not None else None}
    return write_prepared(items, out, classes=classes, source=source, reader=formats.read_jsrt_image, size=size,
                          resize=resize, threshold_masks=threshold_masks, mask_ratios=(1, 2), skipped=skipped,
                          overwrite=overwrite, show_progress=show_progress, workers=workers)


def prepare_montgomery(
    out: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    classes: Sequence[str] = LUNG_SIDES,
    size: int | None = 512,
    resize: str = "longest",
    threshold_masks: bool = False,
    skip_unmatched: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int = 4,
) -> Path:
    """Prepare the Montgomery County set from the NLM layout or a merged-mask compilation.

    Layouts:
        - NLM (``root``): ``CXR_png/*.png`` with ``ManualMask/leftMask`` and ``ManualMask/rightMask``
          (found at ``root`` or up to two levels below, e.g. ``root/MontgomerySet``). Which side NLM's
          ``leftMask`` means is not verified here (no NLM file was available), so sides are assigned
          by geometry: the mask lying on the image's right becomes ``left_lung``; images whose files
          had to be swapped are marked ``"sides_swapped": true`` in ``dataset.json``.
        - Compilation (``root`` holding ``cxr``/``CXR_png``/``images`` + ``masks``, or ``images`` and
          ``masks`` given): one merged two-lung mask per image with the image's file name, split into
          ``left_lung`` / ``right_lung`` by :func:`segmentation.data.formats.split_lungs` or kept as
          ``lungs``. Masks may also be named ``<id>_mask.png``; in a folder mixing Montgomery and
          Shenzhen files only the ``MCUCXR_*`` ones are taken.

    Args:
        out: output folder.
        root: dataset root (either layout).
        images, masks: image and merged-mask folders of a compilation layout (instead of ``root``).
        classes: among ``left_lung``, ``right_lung`` and ``lungs`` (both lungs, one mask).
        size, resize, threshold_masks, skip_unmatched, overwrite, show_progress, workers: see
            :func:`write_prepared`.

    Returns:
        ``out``. Pixel spacing is 0.0875 mm at 4020x4892 (scaled for copies with that aspect ratio,
        unknown for squashed square copies).

    Raises:
        DataError: for a folder in neither layout, plus everything :func:`write_prepared` raises.
    """
    check_output(out, overwrite)
    classes = formats.check_classes(classes, LUNG_SIDES + (MERGED_LUNGS,), "class")
    nlm = None
    if images is None and masks is None:
        if root is None:
            raise DataError("expected --root, or both --images and --masks; got neither")
        if not Path(root).is_dir():
            raise DataError(f"{root}: no such Montgomery folder; check --root")
        nlm = formats.find_montgomery_nlm(root)
        if nlm is None:
            pair = formats.find_merged_layout(root)
            if pair is None:
                raise DataError(
                    f"{root}: neither the NLM layout (CXR_png + ManualMask/leftMask, rightMask) nor a merged-mask "
                    "layout (cxr or CXR_png + masks); point --root at MontgomerySet, or pass --images and --masks"
                )
            images, masks = pair
    elif images is None or masks is None:
        raise DataError("expected both --images and --masks for a merged-mask layout, got only one")

    def reader(path: Path) -> SourceImage:
        image = formats.read_source_image(path)
        if image.spacing_mm is None:
            image.spacing_mm = formats.montgomery_spacing(image.array.shape)
        return image

    if nlm is not None:
        image_files = _images_in(nlm.images, "CXR_png folder")
        sides = {"left_lung": _images_in(nlm.left, "ManualMask/leftMask folder"),
                 "right_lung": _images_in(nlm.right, "ManualMask/rightMask folder")}
        items, skipped = match_items(image_files, sides, skip_unmatched=skip_unmatched)
        for item in items:
            item.orient_lungs = True
        source = {"dataset": "montgomery", "layout": "NLM (CXR_png + ManualMask/leftMask, rightMask)",
                  "root": str(Path(root).resolve())}
    else:
        image_files = _only_prefix(_images_in(images, "Montgomery images folder"), "MCUCXR_")
        merged = _only_prefix(_images_in(masks, "Montgomery masks folder", key=_merged_mask_id), "MCUCXR_")
        items, skipped = match_items(image_files, {}, merged=merged, skip_unmatched=skip_unmatched)
        source = {"dataset": "montgomery", "layout": "compilation (one merged lung mask per image)",
                  "images": str(Path(images).resolve()), "masks": str(Path(masks).resolve())}
    return write_prepared(items, out, classes=classes, source=source, reader=reader, size=size, resize=resize,
                          threshold_masks=threshold_masks, skipped=skipped, overwrite=overwrite,
                          show_progress=show_progress, workers=workers)


def prepare_shenzhen(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] = LUNG_SIDES,
    size: int | None = 512,
    resize: str = "longest",
    threshold_masks: bool = False,
    skip_unmatched: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int = 4,
) -> Path:
    """Prepare the Shenzhen (CHNCXR) set: images ``CHNCXR_<n>_<0|1>.png``, merged lung masks ``<id>_mask.png``.

    Masks named exactly like their image are accepted too; in a folder mixing Shenzhen and Montgomery
    files only the ``CHNCXR_*`` ones are taken. Not every Shenzhen image has a mask in
    the public compilations: pass ``skip_unmatched=True`` to prepare the annotated ones.

    Args:
        images: image folder (``CXR_png``).
        masks: merged-mask folder.
        out: output folder.
        classes: among ``left_lung``, ``right_lung`` and ``lungs``.
        size, resize, threshold_masks, skip_unmatched, overwrite, show_progress, workers: see
            :func:`write_prepared`.

    Returns:
        ``out`` (pixel spacing unknown: the set does not record it).
    """
    check_output(out, overwrite)
    classes = formats.check_classes(classes, LUNG_SIDES + (MERGED_LUNGS,), "class")
    image_files = _only_prefix(_images_in(images, "Shenzhen images folder (--images)"), "CHNCXR_")
    merged = _only_prefix(_images_in(masks, "Shenzhen masks folder (--masks)", key=_merged_mask_id), "CHNCXR_")
    items, skipped = match_items(image_files, {}, merged=merged, skip_unmatched=skip_unmatched)
    naming = " and ".join(_mask_naming(item.merged for item in items if item.merged is not None))
    source = {"dataset": "shenzhen", "layout": f"CHNCXR images + {naming} merged lung masks",
              "images": str(Path(images).resolve()), "masks": str(Path(masks).resolve())}
    return write_prepared(items, out, classes=classes, source=source, size=size, resize=resize,
                          threshold_masks=threshold_masks, skipped=skipped, overwrite=overwrite,
                          show_progress=show_progress, workers=workers)


def prepare_folder(
    images: str | os.PathLike,
    masks: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] | Mapping[str, str] | None = None,
    class_name: str | None = None,
    mask_suffix: str | None = None,
    spacing_mm: float | None = None,
    size: int | None = 512,
    resize: str = "longest",
    threshold_masks: bool = False,
    skip_unmatched: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    workers: int = 4,
) -> Path:
    """Prepare any folder of images with masks matched by file stem, one class per mask folder.

    Mask layouts (``masks`` is the folder given):

    - one folder per class, ``masks/<class>/<id>.<ext>`` (the shared data pack's layout). A class may have any
      name (``lung``, ``lungs``, ``tumour``); the organ names are normalised (``left lung`` / ``Left-Lung`` ->
      ``left_lung``), other names are kept as they are. ``lungs`` is read by
      :func:`segmentation.data.dataset.load_dataset` as both lungs in one mask, any other name as its own folder.
    - one class, the mask files directly in ``masks`` (``masks/<id>.<ext>``), named by ``class_name``.

    Masks named ``<id><suffix>.<ext>`` (``<id>_mask.png``, the Shenzhen / Kaggle convention) match their image
    with ``mask_suffix``. Images may be PNG/GIF/JPEG/TIFF/BMP or DICOM (``.dcm``, needs pydicom; pixel spacing
    read from the file).

    Args:
        images: image folder.
        masks: the mask folder (either layout), or None for images only.
        out: output folder.
        classes: the class folders to take (default: every one), each ``"folder"`` or ``"folder=class"`` to take
            ``masks/folder/`` as class ``class`` (``"lung=lungs"``), or a ``{folder: class}`` mapping. Folders
            are found by their normalised name (``"left_lung"`` takes ``masks/left lung/``).
        class_name: the class of a flat mask folder (default :data:`DEFAULT_CLASS_NAME`, ``"mask"``).
        mask_suffix: the end of a mask's file stem to drop to get its image's id (``"_mask"``); masks without
            it are matched by their whole stem.
        spacing_mm: pixel spacing of the source images when the files do not record it.
        size, resize, threshold_masks, skip_unmatched, overwrite, show_progress, workers: see
            :func:`write_prepared`.

    Returns:
        ``out``.

    Raises:
        DataError: for a mask folder in neither layout, a missing class folder, a class name that cannot be a
            folder name, ``classes`` with a flat folder or ``class_name`` with class folders, unmatched files
            (naming ``--mask-suffix`` when a common suffix would match them), plus everything
            :func:`write_prepared` raises.
        ValueError: for ``spacing_mm <= 0``.
    """
    check_output(out, overwrite)
    if spacing_mm is not None and spacing_mm <= 0:
        raise ValueError(f"expected spacing_mm > 0, got {spacing_mm}")
    if masks is None and (class_name is not None or mask_suffix is not None):
        raise DataError("expected --masks with --class-name or --mask-suffix (they describe the masks), got no "
                        "--masks; pass the mask folder or drop them")
    if mask_suffix is not None and (not mask_suffix.strip() or any(c in mask_suffix for c in "/\\")):
        raise DataError(f"expected --mask-suffix to be the end of a file stem such as '_mask', got {mask_suffix!r}")
    image_files = _images_in(images, "images folder (--images)")
    tables: dict[str, dict[str, Path]] = {}
    layout = "folder (images/ only)"
    if masks is not None:
        masks = Path(masks)
        tables, layout = _folder_masks(masks, classes, class_name, _suffix_key(mask_suffix))
    items, skipped = match_items(image_files, tables, skip_unmatched=skip_unmatched,
                                 hint=suffix_hint(image_files, tables))
    source = {"dataset": Path(images).resolve().parent.name, "layout": layout,
              "images": str(Path(images).resolve()), "masks": str(masks.resolve()) if masks is not None else None,
              "mask_suffix": mask_suffix}
    return write_prepared(items, out, classes=tuple(tables), source=source, size=size, resize=resize,
                          spacing_mm=spacing_mm, threshold_masks=threshold_masks, skipped=skipped,
                          overwrite=overwrite, show_progress=show_progress, workers=workers)


_MASK_LAYOUTS = ("one folder per class holding masks named like their images (masks/<class>/<id>.png, e.g. "
                 "masks/lung/<id>.png), or for one class the mask files themselves (masks/<id>.png, class named by "
                 "--class-name; --mask-suffix _mask for <id>_mask.png)")


def _suffix_key(suffix: str | None) -> Callable[[Path], str]:
    """A mask file's id: its stem without ``suffix`` (compared case-insensitively) when it ends with it."""
    def key(path: Path) -> str:
        ident = formats.image_id(path)
        if suffix and len(ident) > len(suffix) and ident.lower().endswith(suffix.lower()):
            return ident[: -len(suffix)]
        return ident
    return key


def _class_choices(classes: Sequence[str] | Mapping[str, str]) -> list[tuple[str, str]]:
    """``["lung=lungs", "heart"]`` or ``{"lung": "lungs"}`` -> ``[("lung", "lungs"), ("heart", "heart")]``."""
    if isinstance(classes, Mapping):
        return [(str(folder), str(name)) for folder, name in classes.items()]
    if isinstance(classes, str):
        classes = (classes,)
    choices = []
    for entry in classes:
        folder, _, name = entry.partition("=")
        if not folder.strip() or ("=" in entry and not name.strip()):
            raise DataError(f"expected --classes entries 'folder' or 'folder=class' (e.g. lung=lungs), got {entry!r}")
        choices.append((folder.strip(), name.strip() or folder.strip()))
    if not choices:
        raise DataError("expected at least one class in --classes, got none; name mask folders, or omit --classes "
                        "to take every one")
    return choices


def _folder_masks(masks: Path, classes: Sequence[str] | Mapping[str, str] | None, class_name: str | None,
                  key: Callable[[Path], str]) -> tuple[dict[str, dict[str, Path]], str]:
    """``({class: {id: mask file}}, layout)`` of a ``prepare_folder`` mask folder in either layout."""
    if not masks.is_dir():
        raise DataError(f"{masks}: no such masks folder; check --masks")
    files = formats.list_files(masks)
    folders = sorted((p for p in masks.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: (formats.normalize_class_name(p.name), p.name))
    if files and folders:
        raise DataError(f"{masks}: holds both mask files ({files[0].name}, ...) and folders "
                        f"({', '.join(p.name for p in folders)}); expected {_MASK_LAYOUTS}: move the files into a "
                        "class folder, or the folders out")
    if not files and not folders:
        raise DataError(f"{masks}: no mask files and no class folders; expected {_MASK_LAYOUTS}: point --masks at "
                        "such a folder")
    if files:
        if classes is not None:
            raise DataError(f"{masks}: holds mask files directly (one class), so there are no class folders for "
                            "--classes to choose; name the class with --class-name instead")
        name = formats.clean_class_name(class_name if class_name is not None else DEFAULT_CLASS_NAME)
        return {name: formats.index_by_id(files, key)}, "folder (images/ + masks/ holding one class's masks)"
    if class_name is not None:
        raise DataError(f"{masks}: holds class folders ({', '.join(p.name for p in folders)}), and --class-name "
                        "names the class of a flat mask folder; choose and rename folders with --classes "
                        "folder=class instead")
    present: dict[str, list[Path]] = {}
    for folder in folders:
        present.setdefault(formats.normalize_class_name(folder.name), []).append(folder)
    choices = _class_choices(classes) if classes is not None else [(p.name, p.name) for p in folders]
    tables: dict[str, dict[str, Path]] = {}
    for folder_name, name in choices:
        norm = formats.normalize_class_name(folder_name)
        if norm not in present:
            raise DataError(f"{masks / folder_name}: no mask folder {folder_name!r} (present: "
                            f"{', '.join(p.name for p in folders)}); add it or choose other --classes")
        if len(present[norm]) > 1:
            first, second = present[norm][:2]
            raise DataError(f"{second}: the same class ({norm!r}) as {first}; merge or rename one of the two")
        folder = present[norm][0]
        cls = formats.clean_class_name(name)
        if cls in tables:
            raise DataError(f"expected each class once, got {cls!r} twice; choose other --classes")
        mask_files = formats.list_files(folder)
        if not mask_files:
            raise DataError(f"{folder}: no mask files in class folder {folder.name!r}; expected {_MASK_LAYOUTS}: "
                            "remove the folder or choose other --classes")
        tables[cls] = formats.index_by_id(mask_files, key)
    return tables, "folder (images/ + masks/<class>/)"
