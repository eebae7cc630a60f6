"""``cxr-transfer segment``: train, cross-validate, evaluate and apply chest X-ray segmenters.

Each command builds a :class:`segmentation.training.SegmentationConfig` (or takes saved segmenter files) and
calls one function of :mod:`segmentation.training`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import click
from runtime.preflight import check_writable

_DIR = click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
_FILE = click.Path(exists=True, file_okay=True, dir_okay=False, path_type=Path)
_OUT_DIR = click.Path(file_okay=False, dir_okay=True, path_type=Path)
_OUT_FILE = click.Path(file_okay=True, dir_okay=False, path_type=Path)


def _json_dict(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"expected a JSON object such as '{{\"depth\": 4}}', got {value!r} ({err})") from err
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected a JSON object such as '{{\"depth\": 4}}', got {value!r}")
    return parsed


def _names(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter(f"expected comma-separated class names such as 'lungs,heart', got {value!r}")
    return names


def _fractions(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError as err:
        raise click.BadParameter(f"expected three numbers 'train,val,test' such as 0.6,0.2,0.2, got {value!r}") from err
    if len(parts) != 3:
        raise click.BadParameter(f"expected three numbers 'train,val,test' such as 0.6,0.2,0.2, got {value!r}")
    return parts  # type: ignore[return-value]


def _training_options(command: Callable) -> Callable:
    """Options that define a SegmentationConfig (shared by train and cv)."""
    options = [
        click.option("--model", default="unet", show_default=True,
                     help="Architecture: unet, segnet, fcn, invertednet, all_dropout, all_convolutional, "
                          "attention_unet, attention_bcdu_net, res_cr_net."),
        click.option("--model-kwargs", callback=_json_dict, default=None,
                     help='Architecture keywords as JSON, e.g. \'{"depth": 4, "base_channels": 32}\'.'),
        click.option("--classes", callback=_names, default="lungs", show_default=True,
                     help="Comma-separated classes, one output channel each: lungs, heart, clavicles or single "
                          "organs (left_lung, ...)."),
        click.option("--size", type=click.IntRange(min=8), default=256, show_default=True,
                     help="Square training size in pixels (a multiple of the architecture's divisor)."),
        click.option("--mode", type=click.Choice(["multilabel", "multiclass"]), default="multilabel",
                     show_default=True, help="Sigmoid per class (overlapping organs) or softmax (exclusive labels)."),
        click.option("--loss", default="dice_bce", show_default=True,
                     help="bce, ce, dice, weighted_dice, generalized_dice, tversky, focal_tversky, tanimoto, "
                          "dice_bce."),
        click.option("--loss-kwargs", callback=_json_dict, default=None,
                     help='Loss keywords as JSON, e.g. \'{"alpha": 0.6, "beta": 0.4, "gamma": 0.675}\'.'),
        click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Images per step (per process under torchrun)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
                     help="Adam learning rate."),
        click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True),
        click.option("--scheduler", type=click.Choice(["none", "cosine", "plateau"]), default="none",
                     show_default=True, help="Learning-rate schedule (plateau needs --patience)."),
        click.option("--augment/--no-augment", default=False, show_default=True,
                     help="Random geometry and intensity (kornia) on training batches."),
        click.option("--augment-kwargs", callback=_json_dict, default=None,
                     help='Augmenter keywords as JSON, e.g. \'{"rotation": 5, "p_elastic": 0}\'.'),
        click.option("--mixup-alpha", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="Beta(alpha, alpha) mixup of training batches; 0 disables it."),
        click.option("--normalization", type=click.Choice(["per_image", "dataset", "none"]), default="per_image",
                     show_default=True, help="Segmenter input normalisation."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of the splits, the initial weights, batch order and augmentation."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
        click.option("--amp/--no-amp", default=True, show_default=True, help="bf16 autocast on CUDA."),
        click.option("--channels-last/--no-channels-last", default=False, show_default=True,
                     help="Channels-last memory format (faster convolutions on recent GPUs)."),
        click.option("--patience", type=click.IntRange(min=1), default=None,
                     help="Stop after this many epochs without a better validation Dice."),
        click.option("--val-every", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Validate every N epochs."),
        click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
                     help="Optimizer steps per epoch (default: one pass over the training images)."),
        click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
                     show_default=True, help="Probability above which a pixel is foreground."),
        click.option("--postprocess/--no-postprocess", default=True, show_default=True,
                     help="Keep the largest components and fill holes when evaluating and predicting."),
        click.option("--eval-batch-size", type=click.IntRange(min=1), default=16, show_default=True),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Write the resume checkpoint every N epochs (raise it for fast GPU runs)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _config(options: dict[str, Any]):  # noqa: ANN202 - SegmentationConfig, imported lazily
    from segmentation.training import SegmentationConfig

    quiet = options.pop("quiet")
    try:
        return SegmentationConfig(progress=not quiet, **options)
    except ValueError as err:
        raise click.ClickException(str(err)) from err


def _fail(err: Exception) -> click.ClickException:
    return click.ClickException(str(err))


@click.group(name="segment")
def segment() -> None:
    """Train, cross-validate, evaluate and apply chest X-ray segmenters.

    \b
    Examples:
      cxr-transfer segment train --data data/jsrt --classes lungs,heart,clavicles --size 256 \\
          --epochs 150 --run-dir runs/jsrt_unet
      cxr-transfer segment cv --data data/jsrt --classes lungs --folds 5 --run-dir runs/cv
      cxr-transfer segment eval --model runs/jsrt_unet/model.pt --data data/jsrt --split test
      cxr-transfer segment predict --model runs/jsrt_unet/model.pt --images new/ --out predictions/
    """


@segment.command(name="train")
@click.option("--data", type=_DIR, required=True, help="Prepared dataset folder (images/, masks/<organ>/).")
@click.option("--run-dir", type=_OUT_DIR, required=True,
              help="Run folder: config.json, splits.json, checkpoints/, tb/, model.pt, metrics.json, test_metrics.csv.")
@click.option("--split", "fractions", callback=_fractions, default="0.6,0.2,0.2", show_default=True,
              help="Train,val,test fractions of a split seeded with --seed.")
@click.option("--splits", "splits_file", type=_FILE, default=None,
              help="A splits.json (train/val/test ids) to use instead of --split.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --run-dir exactly where it stopped.")
@click.option("--limit", type=click.IntRange(min=3), default=None, help="Use only the first N images (quick trials).")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@_training_options
def train(data: Path, run_dir: Path, fractions: tuple[float, float, float], splits_file: Path | None, resume: bool,
          limit: int | None, dry_run: bool, **options: Any) -> None:
    """Train a segmenter on a prepared dataset, then evaluate it on the test split.

    Keeps the weights with the best validation Dice (early stopping with --patience), writes the run
    folder, and prints the test table (Jaccard and Dice per class, mean +- std). Under torchrun every
    process takes its share of each batch; only rank 0 writes.

    \b
    Examples:
      cxr-transfer segment train --data data/jsrt --model unet --classes lungs,heart,clavicles \\
          --size 256 --loss dice_bce --epochs 150 --batch-size 8 --augment --seed 0 --run-dir runs/x
      cxr-transfer segment train --data data/jsrt --run-dir runs/x --resume      # after an interruption
      cxr-transfer segment train --data data/jsrt --run-dir runs/x --model invertednet --dry-run
    """
    from runtime import config_to_dict
    from segmentation.data.io import DataError
    from segmentation.training import format_summary, train_from_folder

    config = _config(options)
    if dry_run:
        click.echo(json.dumps({"data": str(data), "run_dir": str(run_dir), "split": list(fractions),
                               "splits": str(splits_file) if splits_file else None, "resume": resume,
                               "limit": limit, "config": config_to_dict(config)}, indent=2))
        return
    try:
        metrics = train_from_folder(data, config, run_dir, fractions=fractions, splits_file=splits_file,
                                    resume=resume, limit=limit)
    except (DataError, ValueError, FileNotFoundError, KeyError) as err:
        raise _fail(err) from err
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports (the group is closed by now)
        return
    click.echo(f"best epoch {metrics['best_epoch']}, validation Dice {metrics['best_val_dice']:.4f}, "
               f"{metrics['train_wall_time_s']:.1f} s of training")
    if "test_summary" in metrics:
        click.echo(format_summary(metrics["test_summary"]))
    click.echo(f"model: {Path(run_dir) / 'model.pt'}")


@segment.command(name="cv")
@click.option("--data", type=_DIR, required=True, help="Prepared dataset folder.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Number of folds k.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the training folds set aside for early stopping (the held-out fold never picks weights).")
@click.option("--run-dir", type=_OUT_DIR, default=None, help="Parent of fold_<i>/ runs, cv_rows.csv, cv_summary.json.")
@click.option("--resume", is_flag=True, help="Resume interrupted folds in --run-dir.")
@click.option("--limit", type=click.IntRange(min=3), default=None, help="Use only the first N images.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@_training_options
def cv(data: Path, folds: int, val_fraction: float, run_dir: Path | None, resume: bool, limit: int | None,
       dry_run: bool, **options: Any) -> None:
    """k-fold cross-validation: one model per fold, a mean +- std table over folds.

    \b
    Example:
      cxr-transfer segment cv --data data/jsrt --classes lungs,heart,clavicles --size 256 --folds 5 \\
          --epochs 100 --run-dir runs/cv_unet
    """
    from runtime import config_to_dict
    from segmentation.data.dataset import load_dataset
    from segmentation.data.io import DataError
    from segmentation.training import cross_validate, format_summary

    config = _config(options)
    if dry_run:
        click.echo(json.dumps({"data": str(data), "folds": folds, "val_fraction": val_fraction,
                               "run_dir": str(run_dir) if run_dir else None, "config": config_to_dict(config)},
                              indent=2))
        return
    try:
        if run_dir is not None:
            check_writable(run_dir, "--run-dir")
        dataset = load_dataset(data, classes=config.classes, size=config.size, masks=True)
        if limit is not None:
            dataset = dataset.subset(list(range(min(limit, len(dataset)))))
        result = cross_validate(dataset, config, k=folds, val_fraction=val_fraction, run_dir=run_dir, resume=resume)
    except (DataError, ValueError, FileNotFoundError, KeyError) as err:
        raise _fail(err) from err
    click.echo(f"{folds}-fold cross-validation, mean +- std over folds:")
    click.echo(format_summary(result.summary))


@segment.command(name="eval")
@click.option("--model", "models", type=_FILE, multiple=True, required=True,
              help="Segmenter file (model.pt or checkpoints/best.pt); repeat for an ensemble (probabilities averaged).")
@click.option("--data", type=_DIR, required=True, help="Prepared dataset folder with masks of the model's classes.")
@click.option("--split", default="test", show_default=True,
              help="Split to evaluate (a key of the splits file: train, val, test) or 'all'.")
@click.option("--splits", "splits_file", type=_FILE, default=None,
              help="Splits JSON (default: splits.json of the first model's run folder).")
@click.option("--out", type=_OUT_FILE, default=None, help="Per-image CSV (default: print the summary only).")
@click.option("--postprocess/--no-postprocess", default=None,
              help="Override the model's post-processing setting.")
@click.option("--surface", is_flag=True, help="Also compute surface distances (ASD, HD95; slower).")
@click.option("--device", default="auto", show_default=True)
def evaluate(models: tuple[Path, ...], data: Path, split: str, splits_file: Path | None, out: Path | None,
             postprocess: bool | None, surface: bool, device: str) -> None:
    """Evaluate saved segmenters on a prepared dataset: per-image CSV and a summary table.

    \b
    Examples:
      cxr-transfer segment eval --model runs/x/model.pt --data data/jsrt --split test --out runs/x/test.csv
      cxr-transfer segment eval --model runs/a/model.pt --model runs/b/model.pt --data data/montgomery \\
          --split all --surface
    """
    from segmentation.data.io import DataError
    from segmentation.training import evaluate_folder, format_summary

    try:
        if out is not None:
            check_writable(out.parent, "--out")
        rows, summary = evaluate_folder(models, data, split=split, splits_file=splits_file, out_csv=out,
                                        postprocess=postprocess, surface=surface, device=device)
    except (DataError, ValueError, FileNotFoundError, KeyError) as err:
        raise _fail(err) from err
    click.echo(f"{len(rows)} images ({split}), {len(models)} model(s):")
    click.echo(format_summary(summary))
    if out is not None:
        click.echo(f"per-image metrics: {out}")


@segment.command(name="predict")
@click.option("--model", "models", type=_FILE, multiple=True, required=True,
              help="Segmenter file; repeat for an ensemble (probabilities averaged, then thresholded).")
@click.option("--images", type=_DIR, required=True, help="Folder of images of any size (PNG, JPEG, TIFF, BMP, GIF).")
@click.option("--out", type=_OUT_DIR, required=True, help="Receives masks/<class>/<name>.png and overlays/<name>.png.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per batch.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Override the model's probability threshold.")
@click.option("--postprocess/--no-postprocess", default=None, help="Override the model's post-processing setting.")
@click.option("--overlays/--no-overlays", default=True, show_default=True, help="Write overlay PNGs.")
@click.option("--device", default="auto", show_default=True)
def predict(models: tuple[Path, ...], images: Path, out: Path, batch_size: int | None, threshold: float | None,
            postprocess: bool | None, overlays: bool, device: str) -> None:
    """Segment new images: one mask PNG per class at each image's own size, plus overlays.

    \b
    Examples:
      cxr-transfer segment predict --model runs/x/model.pt --images new_cxr/ --out predictions/
      cxr-transfer segment predict --model a.pt --model b.pt --model c.pt --images new_cxr/ --out ens/
    """
    from segmentation.data.io import DataError
    from segmentation.training import predict_folder

    try:
        check_writable(out, "--out")
        written = predict_folder(models, images, out, batch_size=batch_size, postprocess=postprocess,
                                 threshold=threshold, overlays=overlays, device=device)
    except (DataError, ValueError, FileNotFoundError) as err:
        raise _fail(err) from err
    click.echo(f"wrote {len(written)} masks under {out}")
