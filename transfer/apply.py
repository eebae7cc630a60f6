"""Apply an adapted model (a transfer cell's ``translator.pt`` + ``segmenter.pt``) to a folder of new target images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime.device import resolve_device
from segmentation.config import SegmentationConfig
from segmentation.data.io import IMAGE_SUFFIXES, read_image, to_unit, write_png
from segmentation.data.preprocessing import normalize, resize_images
from segmentation.inference import load_segmenter, probabilities_to_masks
from segmentation.postprocess import gate_dark
from transfer.methods.transfer import ADAPTED_SEGMENTER, ADAPTED_TRANSLATOR
from transfer.prediction import predict_views
from transfer.report import write_overlays
from translation import load_translator


def load_adapted(folder: str | os.PathLike, device: str = "auto"
                 ) -> tuple[nn.Module, nn.Module, SegmentationConfig, tuple[str, ...]]:
    """The adapted translator and segmenter of a transfer cell folder, its segmentation config and prediction views.

    Raises:
        FileNotFoundError: when the folder lacks ``translator.pt`` or ``segmenter.pt`` (names the file).
        ValueError: for a file that is not a translator / segmenter file (from the loaders).
    """
    folder = Path(folder)
    for name in (ADAPTED_TRANSLATOR, ADAPTED_SEGMENTER):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; pass the cell folder printed by `cxr-transfer "
                                    "transfer train` (it holds translator.pt and segmenter.pt)")
    views: tuple[str, ...] = ("translated",)
    if (folder / "config.json").is_file():
        views = tuple(json.loads((folder / "config.json").read_text()).get("transfer", {}).get("predict_views",
                                                                                                 views))
    dev = resolve_device(device)
    translator, _ = load_translator(folder / ADAPTED_TRANSLATOR, map_location=dev)
    segmenter, config, _ = load_segmenter(folder / ADAPTED_SEGMENTER, map_location=dev)
    return translator, segmenter, config, views


def predict_folder(model_dir: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                   device: str = "auto") -> list[Path]:
    """Segment every image of ``images`` at its own size with an adapted model: ``out/<class>/<stem>.png`` masks and
    ``out/overlays.png`` (the first 8). The views averaged are the cell's ``predict_views``.

    Returns:
        The images segmented.

    Raises:
        FileNotFoundError / ValueError / segmentation.data.io.DataError: a missing or unreadable model file, no image in the folder, an
            unreadable image (each names the file).
    """
    translator, segmenter, config, views = load_adapted(model_dir, device)
    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in {images}; pass a folder of images")
    dev = next(segmenter.parameters()).device
    shown_images, shown_masks = [], []
    for path in paths:
        array = read_image(path)
        image = torch.from_numpy(to_unit(array))[None, None]
        x = resize_images(image, config.size).to(dev)
        probs = predict_views(translator, segmenter, x, lambda t: normalize(t, config.normalization), views)
        probs = resize_images(probs.cpu(), tuple(image.shape[-2:])).clamp(0, 1)
        probs = gate_dark(probs, image, config.dark_gate, config.mode)  # the gate the cell was scored with
        masks = probabilities_to_masks(probs, config)
        for k, name in enumerate(config.classes):
            write_png(Path(out) / name / f"{path.stem}.png", masks[0, k].numpy().astype(np.uint8) * 255)
        if len(shown_images) < 8:
            shown_images.append(resize_images(image, 256))
            shown_masks.append(resize_images(masks.float(), 256) > 0.5)
    write_overlays(torch.cat(shown_images), torch.cat(shown_masks), config.classes, Path(out) / "overlays.png",
                   titles=[p.stem for p in paths[:8]])
    return paths


__all__ = ["load_adapted", "predict_folder"]
