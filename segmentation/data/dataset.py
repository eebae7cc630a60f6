"""Prepared chest X-ray datasets loaded whole into tensors, with classes chosen by name.

A prepared dataset folder (written by ``segmentation.data.prepare`` or by
:func:`segmentation.data.phantoms.write_phantom_dataset`) looks like::

    root/
        images/<id>.png                 8- or 16-bit grey, as displayed (bone bright, lung dark)
        masks/<organ>/<id>.png          0 / 255, same size as the image
        dataset.json                    optional: classes, source, sizes, pixel spacing

The datasets of the transfer study (JSRT: 247 images, Montgomery: 138) are small, so
:func:`load_dataset` reads a folder once into ``float32`` tensors that can live on the GPU for the
whole run instead of re-reading files every epoch (Oliveira & dos Santos, "Deep transfer learning
for segmentation of anatomical structures in chest radiographs", SIBGRAPI 2018).

Masks are multi-label (organs overlap in the SCR annotations: the clavicles lie over the lungs).
:func:`to_exclusive` builds the one-label-per-pixel encoding of Novikov et al., "Fully
convolutional architectures for multi-class segmentation in chest radiographs", IEEE TMI 2018.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from runtime.store import DiskArray, is_stored, take_rows
from runtime.preflight import check_disk, check_memory, dataset_bytes
from segmentation.data.cache import CHUNK, Source, cache_bytes, cache_root, open_cache, read_all
from segmentation.data.io import DataError, read_image, to_unit
from segmentation.data.preprocessing import resize_images, resize_masks

ORGANS: tuple[str, ...] = ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")
"""The five SCR organs; left and right are the patient's (``left_lung`` is on the image's right)."""

CLASS_GROUPS: dict[str, tuple[str, ...]] = {
    "lungs": ("left_lung", "right_lung"),
    "heart": ("heart",),
    "clavicles": ("left_clavicle", "right_clavicle"),
    **{organ: (organ,) for organ in ORGANS},
}
"""Class name -> the organ mask folders whose union is that class."""

_SPACING_KEYS = ("pixel_spacing_mm", "spacing_mm", "pixel_spacing")


@dataclass
class CXRData:
    """A whole dataset as tensors.

    Attributes:
        images: ``float32 [N, 1, H, W]`` grey levels in ``[0, 1]`` as displayed.
        masks: ``float32 [N, C, H, W]`` in ``{0, 1}``, one channel per entry of ``classes``
            (multi-label: channels may overlap), or ``None`` for unlabelled data.
        ids: image identifiers (file stems), ``len(ids) == N``.
        classes: class names, ``len(classes) == C``.
        spacing_mm: pixel spacing of each image *at the loaded size* in millimetres (``None``
            where unknown), or ``None`` when unknown for all.

    Raises:
        ValueError: if the shapes, ids, classes or spacings disagree.
    """

    images: Tensor | DiskArray
    masks: Tensor | DiskArray | None
    ids: list[str]
    classes: tuple[str, ...]
    spacing_mm: list[float | None] | None = None

    def __post_init__(self) -> None:
        self.ids = list(self.ids)
        self.classes = tuple(self.classes)
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise ValueError(f"expected images of shape [N, 1, H, W], got {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if len(self.ids) != n:
            raise ValueError(f"expected {n} ids (one per image), got {len(self.ids)}")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("expected unique ids, got duplicates; rename the duplicated images")
        if self.masks is not None:
            expected = (n, len(self.classes), *self.images.shape[2:])
            if tuple(self.masks.shape) != expected:
                raise ValueError(
                    f"expected masks of shape {list(expected)} (N, len(classes), H, W), got {list(self.masks.shape)}"
                )
        if self.spacing_mm is not None:
            self.spacing_mm = list(self.spacing_mm)
            if len(self.spacing_mm) != n:
                raise ValueError(f"expected {n} pixel spacings (one per image), got {len(self.spacing_mm)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def indices(self, ids: Sequence[str]) -> list[int]:
        """Positions of ``ids`` in this dataset.

        Raises:
            KeyError: naming the first id that is not in the dataset.
        """
        position = {image_id: i for i, image_id in enumerate(self.ids)}
        missing = [image_id for image_id in ids if image_id not in position]
        if missing:
            raise KeyError(f"expected ids of this dataset, got unknown id {missing[0]!r} ({len(missing)} unknown)")
        return [position[image_id] for image_id in ids]

    def subset(self, ids_or_indices: Sequence[str] | Sequence[int] | Tensor) -> CXRData:
        """Return the images with the given ids (strings) or positions (ints), in that order.

        Args:
            ids_or_indices: image ids, integer positions, or a 1-D integer / bool tensor.

        Returns:
            A new :class:`CXRData` (tensors indexed, so copies, on the same device).

        Raises:
            KeyError: for an unknown id.
            IndexError: for a position out of range.
        """
        if isinstance(ids_or_indices, Tensor):
            index = ids_or_indices
            if index.dtype == torch.bool:
                index = index.nonzero().flatten()
            index = index.to(torch.long).flatten().tolist()
        else:
            items = list(ids_or_indices)
            if items and all(isinstance(item, str) for item in items):
                index = self.indices(items)
            else:
                index = [int(item) for item in items]
        n = len(self)
        bad = [i for i in index if not -n <= i < n]
        if bad:
            raise IndexError(f"expected positions in [0, {n}), got {bad[0]}")
        index = [i % n if n else i for i in index]
        positions = torch.tensor(index, dtype=torch.long)
        return CXRData(
            images=take_rows(self.images, positions),
            masks=None if self.masks is None else take_rows(self.masks, positions),
            ids=[self.ids[i] for i in index],
            classes=self.classes,
            spacing_mm=None if self.spacing_mm is None else [self.spacing_mm[i] for i in index],
        )

    def to(self, device: torch.device | str) -> CXRData:
        """Return a copy with images and masks on ``device`` (a streamed dataset stays on disk)."""
        return replace(
            self,
            images=self.images if is_stored(self.images) else self.images.to(device),
            masks=None if self.masks is None or is_stored(self.masks) else self.masks.to(device),
        )

    @property
    def streamed(self) -> bool:
        """True when the images stay on disk and are read per batch (:class:`runtime.store.DiskArray`)."""
        return is_stored(self.images)

    def without_masks(self) -> CXRData:
        """Return the same images without masks (the unlabelled view of a dataset)."""
        return replace(self, masks=None)


def resolve_classes(classes: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Map class names to the organ folders each one unites.

    Args:
        classes: names from :data:`CLASS_GROUPS` (``"lungs"``, ``"heart"``, ``"clavicles"`` or single organs).

    Returns:
        One tuple of organ names per class.

    Raises:
        ValueError: for an empty list, a repeated name, or an unknown name (the message lists the valid ones).
    """
    if isinstance(classes, str):
        classes = (classes,)
    classes = tuple(classes)
    if not classes:
        raise ValueError("expected at least one class name, got none; e.g. classes=('lungs',)")
    for name in classes:
        if name not in CLASS_GROUPS:
            raise ValueError(f"expected a class name in {sorted(CLASS_GROUPS)}, got {name!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"expected distinct class names, got {list(classes)}")
    return tuple(CLASS_GROUPS[name] for name in classes)


def _check_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"expected size >= 1 (an int or (H, W)) or None to keep the stored size, got {size}")
    return size  # type: ignore[return-value]


def _read_metadata(root: Path) -> dict[str, Any]:
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable dataset.json ({err}); fix or delete it (it is optional)") from err
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}; fix or delete it")
    return meta


def _spacing_of(entry: Any) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from a dataset.json value: a number, ``[row, col]``, or an object holding one."""
    if isinstance(entry, dict):
        for key in _SPACING_KEYS:
            if key in entry:
                return _spacing_of(entry[key])
        return None
    if entry is None:
        return None
    if isinstance(entry, (list, tuple)):
        values = [float(v) for v in entry if v is not None]
        if len(values) == 1:
            return values[0], values[0]
        return (values[0], values[1]) if len(values) >= 2 else None
    return float(entry), float(entry)


def _stored_spacings(meta: dict[str, Any], ids: list[str]) -> list[tuple[float, float] | None] | None:
    """Pixel spacing ``(row, col)`` in mm of each stored image, from dataset.json, or None when it says nothing."""
    try:
        default = _spacing_of(meta)
        per_image: dict[str, Any] = {}
        images_meta = meta.get("images")
        if isinstance(images_meta, dict):
            per_image = images_meta
        elif isinstance(images_meta, list):
            per_image = {str(entry.get("id")): entry for entry in images_meta if isinstance(entry, dict)}
        spacings = []
        for image_id in ids:
            entry = per_image.get(image_id)
            value = _spacing_of(entry) if entry is not None else None
            spacings.append(value if value is not None else default)
    except (TypeError, ValueError) as err:
        raise DataError(f"dataset.json: unreadable pixel spacing ({err}); fix or delete it (it is optional)") from err
    return None if all(s is None for s in spacings) else spacings


def load_dataset(
    root: str | os.PathLike,
    classes: Sequence[str] = ("lungs",),
    size: int | tuple[int, int] | None = 256,
    masks: bool = True,
    stream: bool | None = None,
    show_progress: bool = True,
) -> CXRData:
    """Read a prepared dataset folder, through its decoded cache, into tensors or disk arrays.

    The images and masks are decoded once at ``size`` into a cache (:mod:`segmentation.data.cache`) that later
    calls reuse. A dataset that fits in memory is then read whole into tensors; a larger one (or ``stream=True``)
    stays on disk as :class:`runtime.store.DiskArray` rows, read per batch by the loops. Both give the same values.

    Images are scaled to ``[0, 1]`` by their bit depth (``/255`` or ``/65535``) and resized with an
    anti-aliased bilinear filter; masks are resized label-safe (:func:`resize_masks`). A class that
    unites several organs (``"lungs"``) is the union of their masks.

    ``dataset.json`` is optional. When it gives a pixel spacing in millimetres (a number, or
    ``[row, column]``), either for all images (top-level ``"pixel_spacing_mm"``) or per image
    (``"images": [{"id": "<id>", "pixel_spacing_mm": ...}, ...]`` as ``prepare`` writes it, or
    ``"images": {"<id>": {...}}``), it is taken as the spacing of the stored PNG, rescaled to the
    loaded size, and averaged over rows and columns (one number per image).

    Args:
        root: the dataset folder (holding ``images/`` and ``masks/``).
        classes: class names from :data:`CLASS_GROUPS`, one mask channel each, in this order.
        size: output size, an int (square) or ``(H, W)``; ``None`` keeps the stored size (then all
            images must share it).
        masks: when False, masks are not read (``CXRData.masks`` is ``None``), for unlabelled data.
        stream: True keeps the data on disk, False reads it into memory, None decides by size (:func:`_streamed`).
        show_progress: a progress bar while the cache is built.

    Returns:
        :class:`CXRData` on the CPU (or on disk), ids sorted.

    Raises:
        DataError: for a missing folder, no images, an image without a mask (or a mask without an
            image), a mask of another size than its image, or an unreadable file; the message names
            the file and the fix.
        ValueError: for an unknown class name or a bad ``size``.

    Shape:
        images ``[N, 1, H, W]``, masks ``[N, len(classes), H, W]``.
    """
    root = Path(root)
    classes = (classes,) if isinstance(classes, str) else tuple(classes)
    # A class stored as its own mask folder (``prepare --classes lungs`` writes masks/lungs/, a new dataset may
    # have masks/tumour/) is read as it is; other names are united from their organ folders.
    stored = {name for name in classes if (root / "masks" / name).is_dir()}
    groups = resolve_classes([name for name in classes if name not in stored] or ["lungs"])
    groups_by_name = dict(zip([name for name in classes if name not in stored], groups))
    groups = tuple((name,) if name in stored else groups_by_name[name] for name in classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"expected distinct class names, got {list(classes)}")
    out_size = _check_size(size)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder; check the path or run `cxr-transfer prepare` first")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: missing images folder; expected a prepared dataset (images/<id>.png)")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{image_dir}: no PNG images; expected images/<id>.png (run `cxr-transfer prepare`)")
    ids = [p.stem for p in paths]

    organs = sorted({organ for group in groups for organ in group}) if masks else []
    organ_files: dict[str, dict[str, Path]] = {}
    for organ in organs:
        folder = root / "masks" / organ
        if not folder.is_dir():
            mask_root = root / "masks"
            present = sorted(p.name for p in mask_root.iterdir() if p.is_dir()) if mask_root.is_dir() else []
            raise DataError(
                f"{folder}: missing mask folder for organ {organ!r} (present: {present}); "
                "choose classes this dataset has, or load with masks=False"
            )
        files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")}
        missing = [i for i in ids if i not in files]
        if missing:
            raise DataError(
                f"{image_dir / (missing[0] + '.png')}: image without a mask in {folder} "
                f"({len(missing)} missing); add the mask or remove the image"
            )
        extra = sorted(set(files) - set(ids))
        if extra:
            raise DataError(
                f"{files[extra[0]]}: mask without an image in {image_dir} ({len(extra)} such); "
                "add the image or remove the mask"
            )
        organ_files[organ] = files

    source = Source(root=root, ids=ids, image_files=paths,
                    mask_files={organ: [organ_files[organ][i] for i in ids] for organ in organs},
                    groups=groups if masks else (), classes=tuple(classes) if masks else (), size=out_size)

    def decode(i: int) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
        path, image_id = paths[i], ids[i]
        array = read_image(path)
        image = torch.from_numpy(to_unit(array))[None, None]
        target = out_size or (array.shape[0], array.shape[1])
        mask_array = None
        if masks:
            organ_masks: dict[str, np.ndarray] = {}
            for organ in organs:
                mask_path = organ_files[organ][image_id]
                mask = read_image(mask_path)  # as read_mask(strict=False): foreground above half range
                if mask.shape != array.shape:
                    raise DataError(
                        f"{mask_path}: mask of size {mask.shape} for an image of size {array.shape} ({path}); "
                        "re-prepare the dataset so masks match their images"
                    )
                organ_masks[organ] = mask > (65535 if mask.dtype == np.uint16 else 255) // 2
            channels = np.stack([np.logical_or.reduce([organ_masks[o] for o in group]) for group in groups])
            mask_array = resize_masks(torch.from_numpy(channels.astype(np.float32))[None], target)[0].numpy()
        return resize_images(image, target)[0, 0].numpy(), mask_array, (array.shape[0], array.shape[1])

    def size_of_first() -> tuple[int, int]:
        shape = read_image(paths[0]).shape
        return int(shape[0]), int(shape[1])

    try:
        cached = open_cache(source, decode, size_of_first, show_progress=show_progress)
    except ValueError as err:
        raise DataError(str(err)) from err
    if _streamed(stream, len(ids), cached.images.shape[2:], len(classes) if masks else 0):
        images, mask_data = cached.images, cached.masks
    else:
        images = torch.from_numpy(read_all(cached.images))
        mask_data = torch.from_numpy(read_all(cached.masks)) if cached.masks is not None else None

    stored_sizes = cached.stored_sizes
    spacings = _stored_spacings(_read_metadata(root), ids)
    if spacings is not None:
        final = images.shape[2:]
        # one number per image at the loaded size: the mean of the row and column spacings
        spacings = [
            None if s is None else 0.5 * (s[0] * h / final[0] + s[1] * w / final[1])
            for s, (h, w) in zip(spacings, stored_sizes)
        ]
    return CXRData(images=images, masks=mask_data, ids=ids, classes=tuple(classes), spacing_mm=spacings)


def check_loadable(n: int, size: int, channels: int, what: str, fix: str) -> None:
    """Refuse, before anything is read, a load that cannot fit: in memory (the whole set, or one cache chunk when it
    is streamed) and on the cache's disk.

    Raises:
        ValueError: one line naming ``what``, the bytes needed and ``fix``.
    """
    streamed = will_stream(n, size, channels)
    check_memory(dataset_bytes(min(n, CHUNK) if streamed else n, size, 1 + channels), what, fix)
    check_disk(cache_bytes(n, (size, size), channels), cache_root(), f"the decoded cache of {what}",
               f"{fix} or set CXR_CACHE to a larger disk")


def will_stream(n: int, size: int | Sequence[int], channels: int = 0) -> bool:
    """Whether :func:`load_dataset` would keep ``n`` images (and ``channels`` mask classes) at ``size`` on disk."""
    size = (size, size) if isinstance(size, int) else size
    return _streamed(None, n, size, channels)


def _streamed(stream: bool | None, n: int, size: Sequence[int], channels: int) -> bool:
    """Whether a dataset stays on disk: ``stream`` if given, else ``$CXR_STREAM`` (1 / 0 / auto), else auto.

    Auto keeps a dataset in memory while its ``float32`` images and masks fit in ``$CXR_IN_MEMORY_MB`` (default
    2048 MB: a few thousand images at 256 px) and streams it otherwise.
    """
    if stream is not None:
        return bool(stream)
    env = os.environ.get("CXR_STREAM", "auto").strip().lower()
    if env in ("1", "true", "yes"):
        return True
    if env in ("0", "false", "no"):
        return False
    if env != "auto":
        raise ValueError(f"expected CXR_STREAM to be 1, 0 or auto, got {env!r}")
    limit_mb = float(os.environ.get("CXR_IN_MEMORY_MB", "2048"))
    return n * (1 + channels) * int(size[0]) * int(size[1]) * 4 > limit_mb * 2**20


def to_exclusive(masks: Tensor) -> Tensor:
    """Multi-label masks to one label per pixel (Novikov et al. 2018).

    0 is background and ``k`` (1-based) is channel ``k - 1``. Where channels overlap, the later
    channel wins, so with the usual order ``("lungs", "heart", "clavicles")`` a clavicle over a lung
    is labelled clavicle and the heart overlapping a lung is labelled heart.

    Args:
        masks: ``{0, 1}`` masks (float or bool), values above 0.5 are foreground.

    Returns:
        ``int64`` label map.

    Raises:
        ValueError: if ``masks`` is not 4-D.

    Shape:
        ``[N, C, H, W] -> [N, H, W]``.
    """
    if masks.ndim != 4:
        raise ValueError(f"expected masks of shape [N, C, H, W], got {tuple(masks.shape)}")
    labels = torch.zeros(masks.shape[0], *masks.shape[2:], dtype=torch.long, device=masks.device)
    for k in range(masks.shape[1]):
        labels = torch.where(masks[:, k] > 0.5, torch.full_like(labels, k + 1), labels)
    return labels


def from_exclusive(labels: Tensor, num_classes: int) -> Tensor:
    """One-label-per-pixel map back to ``{0, 1}`` float masks, one channel per class (background dropped).

    Args:
        labels: ``int64`` labels in ``[0, num_classes]`` (0 = background).
        num_classes: number of foreground classes ``C``.

    Returns:
        ``float32`` masks; channels never overlap.

    Raises:
        ValueError: if ``num_classes < 1``, ``labels`` is not 3-D, or a label is outside ``[0, num_classes]``.

    Shape:
        ``[N, H, W] -> [N, C, H, W]``.
    """
    if num_classes < 1:
        raise ValueError(f"expected num_classes >= 1, got {num_classes}")
    if labels.ndim != 3:
        raise ValueError(f"expected labels of shape [N, H, W], got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(
            f"expected labels in [0, {num_classes}], got {int(labels.min())}..{int(labels.max())}; "
            "check num_classes"
        )
    classes = torch.arange(1, num_classes + 1, device=labels.device).view(1, -1, 1, 1)
    return (labels.unsqueeze(1) == classes).float()
