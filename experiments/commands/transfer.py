"""`cxr-transfer transfer`: train one adapted model M_A(G_BA(.)), and apply it to a folder of new images."""

from __future__ import annotations

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
    from segmentation.data.io import DataError
    from transfer.apply import predict_folder

    try:
        check_writable(out, "--out")
        paths = predict_folder(model_dir, images, out, device=device)
    except (ValueError, FileNotFoundError, RuntimeError, DataError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{len(paths)} images segmented into {out}")
