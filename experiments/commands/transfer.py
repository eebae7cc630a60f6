"""`cxr-transfer transfer`: train one adapted model M_A(G_BA(.)), and apply it to a folder of new images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from experiments.commands.experiment import _print_config, build_config, shared_options
from runtime.preflight import check_writable


@click.group(name="transfer")
def transfer() -> None:
    """Adapt a source segmenter to a target dataset through an unpaired translator (Oliveira & dos Santos 2018).

    \b
    Examples:
      cxr-transfer transfer train --source data/jsrt --target data/montgomery --fraction 0 --out runs/adapt
      cxr-transfer transfer predict --model runs/adapt/cells/transfer/f0.0000/s0-<hash> --images new_xrays/ --out masks/
    """


@transfer.command(name="train")
@click.option("--fraction", type=click.FloatRange(0, 1), default=None,
              help="share of target training labels the method may use  [default: 0]")
@click.option("--seed", type=click.IntRange(0), default=None, help="[default: 0]")
@shared_options
def train(fraction: float | None, seed: int | None, **opts: Any) -> None:
    """Train one adapted model: M_A pretrained on the source, then the alternating transfer method.

    The run folder (printed at the end) holds translator.pt and segmenter.pt for `transfer predict`, TensorBoard
    logs under tb/, checkpoints (resumed when the command is run again) and metrics.json on the target test split.

    \b
    Examples:
      cxr-transfer transfer train --source data/jsrt --target data/montgomery --size 128 --preset tiny
      cxr-transfer transfer train --source A --target B --fraction 0.05 --config settings.json --dry-run
    """
    config = build_config("transfer", fraction, seed, opts)
    if opts["dry_run"]:
        _print_config(config)
        return
    from transfer.cell import cell_dir
    from transfer.sweep import run_sweep

    rows = run_sweep(config, ["transfer"], [config.fraction], [config.seed], folds=[config.fold], log=click.echo)
    row = rows[0]
    click.echo(f"target test jaccard {100 * row['jaccard']:.2f} +- {100 * row['jaccard_std']:.2f} "
               f"(selected iteration {row.get('best_iteration')}, rule {row.get('selection')})")
    click.echo(f"adapted model: {cell_dir(config)}")


@transfer.command(name="predict")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="run folder of `transfer train` (holding translator.pt and segmenter.pt).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), required=True,
              help="folder of new target images (PNG, JPEG, TIFF...).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="output folder: <class>/<stem>.png masks and overlays.png.")
@click.option("--device", default="auto", show_default=True)
def predict(model_dir: str, images: str, out: str, device: str) -> None:
    """Segment new target images with an adapted model, M_A(G_BA(b)), at their own size.

    The prediction views averaged (TransferConfig.predict_views) are read from the run folder's config.json when
    there is one; snapshot averaging is not available here (only the selected weights are saved).

    \b
    Example:
      cxr-transfer transfer predict --model runs/adapt/cells/transfer/f0.0000/s0-<hash> --images xrays/ --out masks/
    """
    import json

    import numpy as np
    import torch

    from runtime.device import resolve_device
    from segmentation.data.io import IMAGE_SUFFIXES, DataError, read_image, write_png
    from segmentation.data.preprocessing import normalize
    from segmentation.training import load_segmenter, probabilities_to_masks, resize_images
    from transfer.prediction import predict_views
    from transfer.report import write_overlays
    from transfer.methods.transfer import ADAPTED_SEGMENTER, ADAPTED_TRANSLATOR
    from translation import load_translator

    folder = Path(model_dir)
    try:
        check_writable(out, "--out")
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    for name in (ADAPTED_TRANSLATOR, ADAPTED_SEGMENTER):
        if not (folder / name).is_file():
            raise click.ClickException(f"{folder / name} is missing; pass the run folder printed by "
                                       "`cxr-transfer transfer train` (it holds translator.pt and segmenter.pt)")
    views: tuple[str, ...] = ("translated",)
    if (folder / "config.json").is_file():
        views = tuple(json.loads((folder / "config.json").read_text()).get("transfer", {}).get("predict_views",
                                                                                                 views))
    try:
        dev = resolve_device(device)
        translator, _ = load_translator(folder / ADAPTED_TRANSLATOR, map_location=dev)
        segmenter, config, _ = load_segmenter(folder / ADAPTED_SEGMENTER, map_location=dev)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None
    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise click.ClickException(f"no image ({', '.join(IMAGE_SUFFIXES)}) in {images}; pass a folder of images")
    shown_images, shown_masks = [], []
    for path in paths:
        try:
            array = read_image(path)
        except DataError as err:
            raise click.ClickException(str(err)) from None
        scale = 65535.0 if array.dtype == np.uint16 else 255.0
        image = torch.from_numpy(array.astype(np.float32) / scale)[None, None]
        x = resize_images(image, config.size).to(dev)
        probs = predict_views(translator, segmenter, x, lambda t: normalize(t, config.normalization), views)
        probs = resize_images(probs.cpu(), tuple(image.shape[-2:])).clamp(0, 1)
        masks = probabilities_to_masks(probs, config)
        for k, name in enumerate(config.classes):
            write_png(Path(out) / name / f"{path.stem}.png", masks[0, k].numpy().astype(np.uint8) * 255)
        if len(shown_images) < 8:
            shown_images.append(resize_images(image, 256))
            shown_masks.append(resize_images(masks.float(), 256) > 0.5)
    write_overlays(torch.cat(shown_images), torch.cat(shown_masks), config.classes, Path(out) / "overlays.png",
                   titles=[p.stem for p in paths[:8]])
    click.echo(f"{len(paths)} images segmented into {out} (classes {', '.join(config.classes)})")
