"""`cxr-transfer experiment`: one cell, a resumable sweep of cells, and the report of a sweep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import click

from transfer.config import METHODS, PAPER_FRACTIONS, SELECTION_RULES, ExperimentConfig, TransferConfig
from runtime.distributed import launched_by_torchrun


def _csv_floats(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0,0.05,0.1, got {value!r}") from None
    bad = [v for v in out if not 0 <= v <= 1]
    if bad or not out:
        raise click.BadParameter(f"expected fractions in [0, 1] like 0,0.05,0.1, got {value!r}")
    return out


def _csv_ints(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated seeds like 0,1,2, got {value!r}") from None
    if not out or any(v < 0 for v in out):
        raise click.BadParameter(f"expected non-negative seeds like 0,1,2, got {value!r}")
    return out


def _csv_methods(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    out = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [m for m in out if m not in METHODS]
    if bad or not out:
        raise click.BadParameter(f"expected methods among {','.join(METHODS)}, got {value!r}")
    return out


def _json_dict(_ctx: click.Context, _param: click.Parameter, value: str) -> dict:
    try:
        out = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"expected a JSON object like '{{\"depth\": 4}}', got {value!r} ({err})") from None
    if not isinstance(out, dict):
        raise click.BadParameter(f"expected a JSON object, got {value!r}")
    return out


def shared_options(func: Callable) -> Callable:
    """Options common to `experiment run`, `experiment sweep` and `transfer train`."""
    options = [
        click.option("--source", type=click.Path(exists=True, file_okay=False), required=True,
                     help="prepared source dataset folder (e.g. JSRT)."),
        click.option("--target", type=click.Path(exists=True, file_okay=False), required=True,
                     help="prepared target dataset folder (e.g. Montgomery)."),
        click.option("--out", type=click.Path(file_okay=False), default="runs/sweep", show_default=True,
                     help="sweep root: every cell, cache, TensorBoard log and results.jsonl go below it."),
        click.option("--classes", default="lungs", show_default=True, help="comma-separated classes."),
        click.option("--source-classes", default="", show_default=True,
                     help="comma-separated classes of the source segmenter when it has more than the target is "
                          "scored on (e.g. lungs,heart,clavicles); their predictions on target test images are drawn "
                          "in overlays.png of the source_only and transfer cells and in the report."),
        click.option("--size", type=click.IntRange(8), default=256, show_default=True, help="image side in pixels."),
        click.option("--segmenter", default="unet", show_default=True, help="segmentation.models name."),
        click.option("--segmenter-kwargs", default="{}", callback=_json_dict, help="JSON keywords of the segmenter."),
        click.option("--translator", default="cyclegan", show_default=True, help="translation name."),
        click.option("--preset", type=click.Choice(["default", "tiny"]), default="default", show_default=True,
                     help="translator preset."),
        click.option("--translator-kwargs", default="{}", callback=_json_dict,
                     help="JSON keywords of the translator."),
        click.option("--iterations", type=click.IntRange(0), default=TransferConfig.iterations, show_default=True,
                     help="transfer iterations after the warm-up."),
        click.option("--warmup", type=click.IntRange(0), default=TransferConfig.warmup_iterations,
                     show_default=True, help="unsupervised translator warm-up iterations (cached per seed)."),
        click.option("--steps-per-epoch", type=click.IntRange(1), default=TransferConfig.steps_per_epoch,
                     show_default=True, help="iterations between selection, checkpoint and evaluation."),
        click.option("--batch-size", type=click.IntRange(1), default=TransferConfig.batch_size, show_default=True),
        click.option("--selection", type=click.Choice(SELECTION_RULES), default=TransferConfig.selection,
                     show_default=True, help="model selection rule (paper_target_val uses all target val labels)."),
        click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=TransferConfig.ema_decay,
                     show_default=True, help="EMA of generator and segmenter weights (0 disables it)."),
        click.option("--pseudo-weight", type=click.FloatRange(0), default=TransferConfig.weight_pseudo,
                     show_default=True, help="self-training on confident target pseudo-labels (0 disables it)."),
        click.option("--augment", type=click.Choice(["none", "labelled", "all"]), default=TransferConfig.augment,
                     show_default=True, help="augmentation in the supervised step: labelled pairs, or also the "
                                             "self-training images with their pseudo-labels ('none': the paper)."),
        click.option("--transfer-kwargs", default="{}", callback=_json_dict,
                     help="JSON of further TransferConfig fields, e.g. '{\"predict_views\": [\"translated\", "
                          "\"direct\"], \"weight_pseudo\": 0}' (overrides the options above)."),
        click.option("--source-iterations", type=click.IntRange(1), default=ExperimentConfig.source_iterations,
                     show_default=True, help="steps of the source segmenter M_A (trained once per seed)."),
        click.option("--finetune-iterations", type=click.IntRange(1), default=ExperimentConfig.finetune_iterations,
                     show_default=True, help="steps of fine-tuning and from-scratch training."),
        click.option("--split-seed", type=click.IntRange(0), default=0, show_default=True,
                     help="seed of the target 60/20/20 split (fixed across seeds)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1..."),
        click.option("--dry-run", is_flag=True, help="print the resolved configuration and exit."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_config(method: str, fraction: float, seed: int, opts: dict[str, Any]) -> ExperimentConfig:
    """The frozen configuration of a cell from CLI options (errors become ``click.BadParameter``)."""
    try:
        transfer = TransferConfig(iterations=opts["iterations"], warmup_iterations=opts["warmup"],
                                  steps_per_epoch=opts["steps_per_epoch"], batch_size=opts["batch_size"],
                                  selection=opts["selection"], ema_decay=opts["ema_decay"],
                                  weight_pseudo=opts["pseudo_weight"],
                                  augment=opts.get("augment", TransferConfig.augment), seed=seed)
        extra = dict(opts.get("transfer_kwargs") or {})
        unknown = sorted(set(extra) - {f.name for f in dataclasses.fields(TransferConfig)})
        if unknown:
            raise ValueError(f"expected --transfer-kwargs keys among TransferConfig fields, got unknown {unknown}")
        transfer = transfer.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()})
        return ExperimentConfig(method=method, fraction=fraction, seed=seed, source=opts["source"],
                                target=opts["target"], out=opts["out"],
                                classes=tuple(c.strip() for c in opts["classes"].split(",") if c.strip()),
                                source_classes=tuple(c.strip() for c in (opts.get("source_classes") or "").split(",")
                                                     if c.strip()),
                                size=opts["size"], segmenter=opts["segmenter"],
                                segmenter_kwargs=opts["segmenter_kwargs"], translator=opts["translator"],
                                translator_preset=opts["preset"], translator_kwargs=opts["translator_kwargs"],
                                source_iterations=opts["source_iterations"],
                                finetune_iterations=opts["finetune_iterations"], split_seed=opts["split_seed"],
                                device=opts["device"], transfer=transfer)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _print_config(config: ExperimentConfig, extra: dict[str, Any] | None = None) -> None:
    from runtime.config import config_to_dict

    click.echo(json.dumps({**config_to_dict(config), **(extra or {})}, indent=2))


@click.group(name="experiment")
def experiment() -> None:
    """Label-fraction experiments: one cell, a sweep, and its report.

    \b
    Examples:
      cxr-transfer experiment run --method transfer --fraction 0.05 --seed 0 \\
          --source data/jsrt --target data/montgomery
      cxr-transfer experiment sweep --source data/jsrt --target data/montgomery --seeds 0,1,2 --jobs 4
      cxr-transfer experiment report --runs runs/sweep
      tensorboard --logdir runs/sweep
    """


@experiment.command(name="run")
@click.option("--method", type=click.Choice(METHODS), required=True, help="transfer or a baseline.")
@click.option("--fraction", type=click.FloatRange(0, 1), required=True, help="share of target training labels.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@shared_options
def run(method: str, fraction: float, seed: int, **opts: Any) -> None:
    """Run one cell (method, label fraction, seed) and print its result.

    \b
    Examples:
      cxr-transfer experiment run --method transfer --fraction 0 --source data/jsrt --target data/montgomery
      cxr-transfer experiment run --method finetune --fraction 0.05 --seed 1 --source A --target B --dry-run
    """
    config = build_config(method, fraction, seed, opts)
    if opts["dry_run"]:
        _print_config(config)
        return
    _refuse_torchrun("run")
    from transfer.sweep import run_sweep

    rows = run_sweep(config, [method], [fraction], [seed], log=click.echo)
    for row in rows:
        click.echo(f"{row['key']}: jaccard {100 * row['jaccard']:.2f} +- {100 * row['jaccard_std']:.2f}, "
                   f"dice {100 * row['dice']:.2f} ({row['seconds']:.1f} s)")


@experiment.command(name="sweep")
@click.option("--methods", default="transfer,finetune,scratch,source_only,histmatch", callback=_csv_methods,
              show_default=True, help="comma-separated methods.")
@click.option("--fractions", default=",".join(f"{f:g}" for f in PAPER_FRACTIONS), callback=_csv_floats,
              show_default=True, help="comma-separated label fractions.")
@click.option("--seeds", default="0", callback=_csv_ints, show_default=True, help="comma-separated seeds.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="cells at once (subprocesses; several fit on one GPU).")
@shared_options
def sweep(methods: tuple[str, ...], fractions: tuple[float, ...], seeds: tuple[int, ...], jobs: int,
          **opts: Any) -> None:
    """Run every unfinished cell of methods x fractions x seeds; a killed sweep resumes where it stopped.

    \b
    Examples:
      cxr-transfer experiment sweep --source data/jsrt --target data/montgomery --seeds 0,1,2 --jobs 4
      cxr-transfer experiment sweep --source A --target B --size 128 --preset tiny --fractions 0,0.05,1
    """
    base = build_config(methods[0], 0.0 if methods[0] != "scratch" else max(fractions), seeds[0], opts)
    if opts["dry_run"]:
        _print_config(base, {"methods": list(methods), "fractions": list(fractions), "seeds": list(seeds),
                             "jobs": jobs})
        return
    _refuse_torchrun("sweep")
    import time

    from transfer.report import write_report
    from transfer.sweep import run_sweep

    start = time.perf_counter()
    rows = run_sweep(base, methods, fractions, seeds, jobs=jobs, log=click.echo)
    click.echo(f"sweep finished: {len(rows)} cells in {time.perf_counter() - start:.1f} s")
    paths = write_report(base.out)
    click.echo(Path(paths["markdown"]).read_text())


def _refuse_torchrun(command: str) -> None:
    """Cells are not yet split across ranks: under torchrun every rank would train and write the same cell."""
    if launched_by_torchrun():
        raise click.ClickException(f"experiment {command} does not run under torchrun yet (every rank would write the "
                                   "same cell); start it as one process, and use experiment sweep --jobs N to run "
                                   "cells side by side")


@experiment.command(name="report")
@click.option("--runs", type=click.Path(exists=True, file_okay=False), required=True,
              help="sweep root holding results.jsonl.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="output folder [RUNS/report].")
def report(runs: str, out: str | None) -> None:
    """Write Table II (Markdown + CSV), Wilcoxon tests and the Jaccard-vs-fraction plot of a sweep.

    \b
    Example:
      cxr-transfer experiment report --runs runs/sweep
    """
    from transfer.report import write_report

    try:
        paths = write_report(runs, out)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    click.echo(Path(paths["markdown"]).read_text())
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
