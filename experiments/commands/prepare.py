"""``cxr-transfer prepare``: turn downloaded datasets in their original layouts into prepared dataset folders."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from segmentation.data.io import DataError

_DIR = click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
_OUT = click.Path(file_okay=False, dir_okay=True, path_type=Path)


def _common(command: Callable) -> Callable:
    """Options every prepare command shares."""
    options = [
        click.option("--out", "-o", type=_OUT, required=True,
                     help="Output folder (images/, masks/<class>/, dataset.json). Written atomically."),
        click.option("--size", type=click.IntRange(min=1), default=512, show_default=True,
                     help="Output size in pixels: the longer side (aspect kept), or both sides with --resize square."),
        click.option("--resize", type=click.Choice(["longest", "square"]), default="longest", show_default=True,
                     help="longest: longer side = --size, aspect kept; square: --size x --size, aspect not kept."),
        click.option("--keep-size", is_flag=True, help="Keep the source size (ignores --size)."),
        click.option("--threshold-masks", is_flag=True,
                     help="Binarise anti-aliased masks at half range instead of rejecting non-binary masks."),
        click.option("--skip-unmatched", is_flag=True,
                     help="Leave out images without masks and masks without images (listed in dataset.json) "
                          "instead of stopping."),
        click.option("--overwrite", is_flag=True, help="Replace an existing non-empty --out folder."),
        click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Threads reading, resizing and writing images (the output does not depend on it)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(function: Callable, *args, keep_size: bool, size: int, quiet: bool, **kwargs) -> None:
    try:
        out = function(*args, size=None if keep_size else size, show_progress=not quiet, **kwargs)
    except DataError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"prepared {out}")


def _classes(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


@click.group(name="prepare")
def prepare() -> None:
    """Prepare real datasets (JSRT, Montgomery, Shenzhen, any folder) for training.

    \b
    Every command writes one folder: images/<id>.png (16-bit when the source has more than 8 bits),
    masks/<class>/<id>.png (0/255) and dataset.json (classes, source, sizes, pixel spacing). Left and
    right are the patient's. A failed or interrupted run leaves nothing behind.

    \b
    Examples:
      cxr-transfer prepare jsrt --images JSRT/jsrt_images/images --masks scr/masks --out data/jsrt
      cxr-transfer prepare montgomery --root MontgomerySet --out data/montgomery
      cxr-transfer prepare montgomery --download downloads/ --out data/montgomery
      cxr-transfer prepare shenzhen --images CXR_png --masks masks --out data/shenzhen --skip-unmatched
      cxr-transfer prepare folder --images new/images --masks new/masks --out data/new --size 256
    """


@prepare.command(name="jsrt")
@click.option("--images", type=_DIR, required=True,
              help="Folder of JSRT images: raw <ID>.IMG (2048x2048, 12-bit big-endian) or <ID>.IMG.png conversions.")
@click.option("--masks", type=_DIR, default=None,
              help="SCR masks folder (organ folders 'left lung' or 'left_lung', possibly under fold1/fold2). "
                   "Omit for images only.")
@click.option("--classes", default="left_lung,right_lung,heart,left_clavicle,right_clavicle", show_default=True,
              help="Comma-separated organs to prepare.")
@_common
def jsrt(images: Path, masks: Path | None, classes: str, out: Path, **options) -> None:
    """JSRT radiographs with SCR masks (five organs, masks at half resolution).

    \b
    Examples:
      cxr-transfer prepare jsrt --images JSRT/jsrt_images/images --masks JSRT/masks/masks --out data/jsrt
      cxr-transfer prepare jsrt --images All247images --masks scratch/fold1/masks --classes left_lung,right_lung \\
          --out data/jsrt-lungs --size 256
    """
    from segmentation.data.prepare import prepare_jsrt

    _run(prepare_jsrt, images, masks, out, classes=_classes(classes), **options)


@prepare.command(name="montgomery")
@click.option("--root", type=_DIR, default=None,
              help="Dataset root: NLM layout (CXR_png + ManualMask/leftMask, rightMask) or a merged-mask "
                   "compilation (cxr or CXR_png + masks).")
@click.option("--images", type=_DIR, default=None, help="Image folder of a merged-mask layout (with --masks).")
@click.option("--masks", type=_DIR, default=None, help="Merged lung mask folder (with --images).")
@click.option("--download", "download_dir", type=_OUT, default=None,
              help="Download the NLM public archive into this folder (resumable, progress bar), extract it and "
                   "prepare it.")
@click.option("--url", default=None, help="Archive URL for --download (default: the NLM public archive).")
@click.option("--sha256", default=None, help="Expected SHA-256 of the archive for --download.")
@click.option("--classes", default="left_lung,right_lung", show_default=True,
              help="Comma-separated, among left_lung, right_lung and lungs (both lungs in one mask). Merged masks "
                   "are split into left/right by connected components (left_lung = the image's right side).")
@_common
def montgomery(root: Path | None, images: Path | None, masks: Path | None, download_dir: Path | None,
               url: str | None, sha256: str | None, classes: str, out: Path, **options) -> None:
    """Montgomery County chest X-rays with left/right lung masks.

    \b
    Examples:
      cxr-transfer prepare montgomery --root MontgomerySet --out data/montgomery
      cxr-transfer prepare montgomery --images data/cxr --masks data/masks --threshold-masks --out data/mc
      cxr-transfer prepare montgomery --download downloads/ --out data/montgomery
      cxr-transfer prepare montgomery --download downloads/ --sha256 <hex> --out data/montgomery
    """
    from segmentation.data.download import MONTGOMERY_URL, download_montgomery
    from segmentation.data.prepare import check_output, prepare_montgomery

    if download_dir is not None:
        if root is not None or images is not None or masks is not None:
            raise click.UsageError("--download replaces --root, --images and --masks; pass only one of them")
        try:
            check_output(out, options["overwrite"])
            root = download_montgomery(download_dir, url=url or MONTGOMERY_URL, sha256=sha256,
                                       show_progress=not options["quiet"])
        except DataError as err:
            raise click.ClickException(str(err)) from err
    elif url is not None or sha256 is not None:
        raise click.UsageError("--url and --sha256 go with --download")
    if root is None and (images is None or masks is None):
        raise click.UsageError("expected --root, --download, or both --images and --masks")
    _run(prepare_montgomery, out, root=root if images is None else None, images=images, masks=masks,
         classes=_classes(classes), **options)


@prepare.command(name="shenzhen")
@click.option("--images", type=_DIR, required=True, help="Folder of CHNCXR_<n>_<0|1>.png images (CXR_png).")
@click.option("--masks", type=_DIR, required=True, help="Folder of merged lung masks <id>_mask.png.")
@click.option("--classes", default="left_lung,right_lung", show_default=True,
              help="Comma-separated, among left_lung, right_lung and lungs.")
@_common
def shenzhen(images: Path, masks: Path, classes: str, out: Path, **options) -> None:
    """Shenzhen (CHNCXR) chest X-rays with merged lung masks named <id>_mask.png.

    \b
    Not every Shenzhen image has a mask in the public compilations; --skip-unmatched prepares the
    annotated ones and lists the others in dataset.json.
    \b
    Examples:
      cxr-transfer prepare shenzhen --images CXR_png --masks masks --out data/shenzhen --skip-unmatched
      cxr-transfer prepare shenzhen --images CXR_png --masks masks --classes lungs --out data/sz-merged
    """
    from segmentation.data.prepare import prepare_shenzhen

    _run(prepare_shenzhen, images, masks, out, classes=_classes(classes), **options)


@prepare.command(name="folder")
@click.option("--images", type=_DIR, required=True, help="Folder of images (PNG/GIF/JPEG/TIFF/BMP or DICOM .dcm).")
@click.option("--masks", type=_DIR, default=None,
              help="Mask folder: one folder per class (masks/<class>/<id>.png, any class name; organ names such as "
                   "'left lung' become left_lung), or for one class the mask files themselves (masks/<id>.png). "
                   "Omit for images only.")
@click.option("--classes", default=None,
              help="Comma-separated class folders to take (default: every one); folder=class renames, e.g. "
                   "lung=lungs takes masks/lung/ as class lungs (both lungs in one mask).")
@click.option("--class-name", default=None,
              help="Class of a flat mask folder (the mask files directly in --masks); mask when not given.")
@click.option("--mask-suffix", default=None,
              help="End of the mask file stems to drop to match their images, e.g. _mask for <id>_mask.png.")
@click.option("--spacing-mm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pixel spacing of the source images in mm, when the files do not record it (DICOM does).")
@_common
def folder(images: Path, masks: Path | None, classes: str | None, class_name: str | None, mask_suffix: str | None,
           spacing_mm: float | None, out: Path, **options) -> None:
    """Any dataset: a folder of images plus masks matched by file stem, per-class folders or one flat folder.

    \b
    Examples:
      cxr-transfer prepare folder --images ../shared/data/jsrt/images --masks ../shared/data/jsrt/masks \\
          --out data/jsrt256 --size 256
      cxr-transfer prepare folder --images hospital/dicom --out data/hospital     # unlabelled DICOM images
      cxr-transfer prepare folder --images new/images --masks new/masks --classes lung=lungs \\
          --spacing-mm 0.14 --out data/new                                         # masks/lung/ -> class lungs
      cxr-transfer prepare folder --images kaggle/CXR_png --masks kaggle/masks --class-name lungs \\
          --mask-suffix _mask --out data/kaggle                                    # masks/<id>_mask.png
    """
    from segmentation.data.prepare import prepare_folder

    _run(prepare_folder, images, masks, out, classes=_classes(classes), class_name=class_name,
         mask_suffix=mask_suffix, spacing_mm=spacing_mm, **options)
