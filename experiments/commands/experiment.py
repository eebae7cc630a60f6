"""`cxr-transfer experiment`: one cell, a resumable sweep of cells, and the report of a sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from runtime.config import config_from_dict
from runtime.distributed import close_distributed, is_main_process
from transfer.config import PAPER_FRACTIONS, ExperimentConfig, TransferConfig, without_removed
from transfer.methods import METHODS, get_method


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


def _read_config_file(path: Path) -> dict[str, Any]:
    """The ExperimentConfig fields of a JSON or YAML file (a cell's config.json is one)."""
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # optional: YAML configs need PyYAML, JSON ones nothing
        except ImportError:
            raise click.BadParameter(f"{path}: YAML needs PyYAML (pip install pyyaml), or write the file as JSON",
                                     param_hint="--config") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"{path} is not valid JSON ({err})", param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"expected a mapping of ExperimentConfig fields in {path}, got "
                                 f"{type(data).__name__}", param_hint="--config")
    return data


#: the command-line options that set a field (option name -> dotted ExperimentConfig field)
COMMON = {"method": "method", "fraction": "fraction", "seed": "seed", "source": "source", "target": "target",
          "out": "out", "classes": "classes", "size": "size", "preset": "translator_preset",
          "iterations": "transfer.iterations", "warmup": "transfer.warmup_iterations",
          "batch_size": "transfer.batch_size", "device": "device", "folds": "folds", "fold": "fold",
          "compile": "compile"}


def shared_options(func: Callable) -> Callable:
    """Options common to `experiment run`, `experiment sweep` and `transfer train`: a --config file for every
    field, plus the few set most often. A field is set in one place: given in both, the command refuses."""
    options = [
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="JSON or YAML of ExperimentConfig fields (a cell's config.json works), "
                                        "e.g. {\"segmenter_kwargs\": {\"depth\": 3}, \"transfer\": "
                                        "{\"weight_pseudo\": 0}}."),
        click.option("--source", type=click.Path(exists=True, file_okay=False), default=None,
                     help="prepared source dataset folder (e.g. JSRT)."),
        click.option("--target", type=click.Path(exists=True, file_okay=False), default=None,
                     help="prepared target dataset folder."),
        click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="sweep root (cells, caches, TensorBoard, results.jsonl)  [default: runs/sweep]"),
        click.option("--classes", default=None, help="comma-separated target classes  [default: lungs]"),
        click.option("--size", type=click.IntRange(8), default=None, help="image side in pixels  [default: 256]"),
        click.option("--preset", type=click.Choice(["default", "tiny"]), default=None,
                     help="translator preset  [default: default]"),
        click.option("--iterations", type=click.IntRange(0), default=None,
                     help=f"transfer iterations after the warm-up  [default: {TransferConfig.iterations}]"),
        click.option("--warmup", type=click.IntRange(0), default=None,
                     help=f"translator warm-up iterations  [default: {TransferConfig.warmup_iterations}]"),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help=f"images per step  [default: {TransferConfig.batch_size}]"),
        click.option("--device", default=None, help="auto, cpu, cuda, cuda:1...  [default: auto]"),
        click.option("--folds", type=click.IntRange(0), default=None,
                     help="k-fold cross-validation over the whole target set (0: one 60/20/20 split)  [default: 0]"),
        click.option("--compile", "compile", flag_value=True, default=None,
                     help="torch.compile the loop's networks."),
        click.option("--dry-run", is_flag=True, help="print the resolved configuration and exit."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_config(method: str | None, fraction: float | None, seed: int | None, opts: dict[str, Any]
                 ) -> ExperimentConfig:
    """The frozen configuration of a cell: the ``--config`` file, then the options given on the command line.

    Raises:
        click.BadParameter: for a field set both in the file and by an option, an unknown field, a bad value, or
            missing --source / --target.
    """
    data = _read_config_file(opts["config_file"]) if opts.get("config_file") else {}
    given = {"method": method, "fraction": fraction, "seed": seed, **{k: opts.get(k) for k in COMMON
                                                                         if k not in ("method", "fraction", "seed")}}
    if given.get("folds") is not None and given["folds"] == 1:
        raise click.BadParameter("expected --folds 0 (one split) or >= 2, got 1", param_hint="--folds")
    for option, value in given.items():
        if value is None:
            continue
        field = COMMON[option]
        if option == "classes":
            value = [c.strip() for c in value.split(",") if c.strip()]
        holder = data
        *parents, name = field.split(".")
        for parent in parents:
            holder = holder.setdefault(parent, {})
        if name in holder and holder[name] != value and (list(holder[name]) if isinstance(holder[name], (list, tuple))
                                                         else holder[name]) != value:
            raise click.BadParameter(f"{field} is set both in {opts['config_file']} ({holder[name]!r}) and by "
                                     f"--{option.replace('_', '-')} ({value!r}); keep one", param_hint="--config")
        holder[name] = value
    for required in ("source", "target"):
        if not data.get(required):
            raise click.BadParameter(f"expected a {required} dataset folder, got none; pass --{required} DIR or "
                                     f"set \"{required}\" in --config", param_hint=f"--{required}")
    data.setdefault("out", "runs/sweep")
    try:
        config = config_from_dict(ExperimentConfig, without_removed(data))  # a pre-clean-up config.json too
        config = config.replace(transfer=config.transfer.replace(seed=config.seed))
        method_spec = get_method(config.method)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="--config") from None
    if method_spec.needs_labels and config.fraction == 0:
        raise click.BadParameter(f"expected --fraction > 0 for {config.method}: it needs target labels, "
                                 "so it is undefined at 0", param_hint="--fraction")
    return config


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
@click.option("--method", type=click.Choice(list(METHODS)), required=True,
              help="a registered method: " + ", ".join(METHODS) + ".")
@click.option("--fraction", type=click.FloatRange(0, 1), required=True, help="share of target training labels.")
@click.option("--seed", type=click.IntRange(0), default=None, help="seed of models, subsets, iterators  [default: 0]")
@click.option("--fold", type=click.IntRange(0), default=None, help="the fold to run, with --folds  [default: 0]")
@shared_options
def run(method: str, fraction: float, seed: int | None, fold: int | None, **opts: Any) -> None:
    """Run one cell (method, label fraction, seed) and print its result.

    \b
    Examples:
      cxr-transfer experiment run --method transfer --fraction 0 --source data/jsrt --target data/montgomery
      cxr-transfer experiment run --method finetune --fraction 0.05 --seed 1 --source A --target B --dry-run
      cxr-transfer experiment run --method transfer --fraction 0.05 --config my.json   # any other field in a file
    """
    config = build_config(method, fraction, seed, {**opts, "fold": fold})
    if opts["dry_run"]:
        _print_config(config)
        return
    from transfer.sweep import run_sweep

    rows = run_sweep(config, [config.method], [config.fraction], [config.seed], folds=[config.fold],
                     log=click.echo)
    if not _leave_ranks():
        return
    for row in rows:
        click.echo(f"{row['key']}: jaccard {100 * row['jaccard']:.2f} +- {100 * row['jaccard_std']:.2f}, "
                   f"dice {100 * row['dice']:.2f} ({row['seconds']:.1f} s)")


@experiment.command(name="sweep")
@click.option("--methods", default="transfer,finetune,scratch,source_only,histmatch", callback=_csv_methods,
              show_default=True, help="comma-separated methods of the registry (" + ", ".join(METHODS) + ").")
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
      cxr-transfer experiment sweep --source A --target B --folds 5 --seeds 0,1,2    # every target image tested once
      torchrun --nproc_per_node 4 -m experiments experiment sweep --source A --target B --methods finetune,scratch
    """
    base = build_config(None, None, None, opts)  # the grid sets method, fraction and seed of each cell
    if opts["dry_run"]:
        _print_config(base, {"methods": list(methods), "fractions": list(fractions), "seeds": list(seeds),
                             "jobs": jobs})
        return
    import time

    from transfer.report import write_report
    from transfer.sweep import run_sweep

    start = time.perf_counter()
    rows = run_sweep(base, methods, fractions, seeds, jobs=jobs, log=click.echo)
    if not _leave_ranks():
        return
    click.echo(f"sweep finished: {len(rows)} cells in {time.perf_counter() - start:.1f} s")
    paths = write_report(base.out)
    click.echo(Path(paths["markdown"]).read_text())


def _leave_ranks() -> bool:
    """Leave the process group (when there is one); True on the rank that reports (rank 0, or the only process)."""
    main = is_main_process()
    close_distributed()
    return main


@experiment.command(name="report")
@click.option("--runs", type=click.Path(exists=True, file_okay=False), required=True,
              help="sweep root holding results.jsonl.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="output folder [RUNS/report].")
@click.option("--identity", "identities", multiple=True,
              help="configuration hash of the cells to report (repeat; needed when a cell ran with several).")
def report(runs: str, out: str | None, identities: tuple[str, ...]) -> None:
    """Write Table II (Markdown + CSV), Wilcoxon tests and the Jaccard-vs-fraction plot of a sweep.

    \b
    Example:
      cxr-transfer experiment report --runs runs/sweep
    """
    from transfer.report import write_report

    try:
        paths = write_report(runs, out, identities=identities or None)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(Path(paths["markdown"]).read_text())
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
