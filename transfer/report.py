"""Tables, plots and tests of a sweep, in the layout of Oliveira & dos Santos (2018), Table II and Fig. 8.

:func:`write_report` reads ``results.jsonl`` and writes:

* ``table.md`` / ``table.csv``: mean +- std Jaccard (and Dice), in %, per label fraction (rows) and method (columns),
  over test images whose scores are first averaged over seeds (with cross-validation every target image is a test
  image once per seed); a spread table with the bootstrap 95% CI over images, the sd over seeds and over folds
  (separately) and the failures (images below 70 Jaccard); fraction-free methods are repeated on every row;
* ``table.md`` also shows, when the transfer cells recorded them, their Jaccard under other prediction views (the
  paper's M_A(G_BA(b)), the adapted M_A(b) alone, with its flip) beside the default view average.
* ``wilcoxon.csv``: two-sided Wilcoxon signed-rank tests of ``transfer`` against every other method per fraction,
  paired over images (seed-averaged scores);
* ``table.md`` opens with what to use at each label fraction (the best mean Jaccard, its paired margins and p-values
  over the runner-up, fine-tuning and source-only, its failures; ``recommendations.csv``) and ends with what single
  components add (translation: ``transfer`` against ``selftrain``, the same loop without a translator);
* ``jaccard_vs_fraction.png``: Jaccard against label fraction with 95% confidence intervals per method;
* ``overlays/<method>_<fraction>_<seed>.png``: the ``overlays.png`` of each cell whose source segmenter had more
  classes than the target is scored on (``ExperimentConfig.source_classes``), e.g. heart and clavicles predicted on
  Montgomery test images, also linked from ``table.md``.

:func:`write_overlays` draws target images with predicted contours (e.g. heart and clavicles on Montgomery, for
which no ground truth exists).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from torch import Tensor

from runtime.io import atomic_path, atomic_write_text
from segmentation.metrics import summarize, wilcoxon_test
from transfer.methods import METHODS as REGISTRY
from transfer.results import RESULTS, read_results



def _methods() -> tuple[str, ...]:
    """Report order: the registry's (read at call time, so a method added to it is reported)."""
    return tuple(REGISTRY)


def _fraction_free() -> tuple[str, ...]:
    return tuple(name for name, method in REGISTRY.items() if method.fraction_free)

REFERENCE = "transfer"


FAILURE = 0.70  # an image whose Jaccard (averaged over seeds) is below this counts as a failure
BOOTSTRAP = 2000


def per_image(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """Each test image's ``metric`` averaged over the seeds of ``rows`` (the unit of every statistic here: images
    are the independent samples; seeds are repeated measurements of the same image, not new samples)."""
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per = row.get("per_image", {})
        for image_id, value in zip(per.get("id", []), per.get(metric, [])):
            values[image_id].append(float(value))
    return {k: float(np.mean(v)) for k, v in values.items()}


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images (seeded, so a report is reproducible)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _spread(rows: Sequence[Mapping[str, Any]], key: str, metric: str) -> float:
    """Standard deviation, over the values of ``key`` (seed or fold), of the mean ``metric`` of their cells."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        groups[row.get(key, 0)].extend(float(v) for v in row.get("per_image", {}).get(metric, []))
    means = [float(np.mean(v)) for v in groups.values() if v]
    return float(np.std(means, ddof=1)) if len(means) > 1 else math.nan


def summarize_results(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (method, fraction) over test images (each image's score averaged over seeds): mean, std
    and bootstrap 95% CI over images, the spread over seeds and over folds (separately), failures (images below
    :data:`FAILURE` Jaccard), counts and mean cell seconds.

    Fraction-free methods (no target label) are repeated at every fraction present in ``rows``.
    """
    fractions = sorted({float(r["fraction"]) for r in rows if r["method"] not in _fraction_free()} | {0.0})
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], float(r["fraction"]))].append(r)
    out = []
    methods = [m for m in _methods() if any(r["method"] == m for r in rows)]
    for fraction in fractions:
        for method in methods:
            cell_rows = groups.get((method, 0.0 if method in _fraction_free() else fraction), [])
            if not cell_rows:
                continue
            entry: dict[str, Any] = {"method": method, "fraction": fraction,
                                     "n_seeds": len({int(r["seed"]) for r in cell_rows}),
                                     "n_folds": len({int(r.get("fold", 0)) for r in cell_rows}),
                                     "n_labelled": cell_rows[0].get("n_labelled", 0) if method not in _fraction_free()
                                     else 0}
            for metric in ("jaccard", "dice"):
                values = list(per_image(cell_rows, metric).values()) or [float(r[metric]) for r in cell_rows]
                s = summarize(values)
                low, high = bootstrap_ci(values)
                entry.update({f"{metric}_mean": s["mean"], f"{metric}_std": s["std"], f"{metric}_ci_low": low,
                              f"{metric}_ci_high": high, f"{metric}_seed_sd": _spread(cell_rows, "seed", metric),
                              f"{metric}_fold_sd": _spread(cell_rows, "fold", metric), "n_images": int(s["n"])})
            entry["failures"] = int(sum(v < FAILURE for v in per_image(cell_rows, "jaccard").values()))
            entry["seconds_mean"] = float(np.mean([float(r.get("seconds", math.nan)) for r in cell_rows]))
            out.append(entry)
    return out


def spread_table(summary: Sequence[Mapping[str, Any]], metric: str = "jaccard") -> str:
    """Per (fraction, method): bootstrap 95% CI over images, sd over seeds, sd over folds, failures, in %."""
    lines = ["| labels | method | mean | 95% CI (images) | sd over seeds | sd over folds | failures (< 70) | images |",
             "|---|---|---|---|---|---|---|---|"]

    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.2f}"

    for s in sorted(summary, key=lambda s: (s["fraction"], _methods().index(s["method"]))):
        lines.append(f"| {100 * s['fraction']:g}% | {s['method']} | {pct(s[f'{metric}_mean'])} | "
                     f"{pct(s[f'{metric}_ci_low'])} .. {pct(s[f'{metric}_ci_high'])} | {pct(s[f'{metric}_seed_sd'])} "
                     f"| {pct(s[f'{metric}_fold_sd'])} | {s['failures']} | {s['n_images']} |")
    return "\n".join(lines)


def markdown_table(summary: Sequence[Mapping[str, Any]], metric: str = "jaccard") -> str:
    """Table II layout: one row per label fraction, one column per method, ``mean +- std`` in %."""
    methods = [m for m in _methods() if any(s["method"] == m for s in summary)]
    fractions = sorted({s["fraction"] for s in summary})
    index = {(s["method"], s["fraction"]): s for s in summary}
    lines = ["| labels | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for f in fractions:
        cells = []
        for m in methods:
            s = index.get((m, f))
            if s is None:
                cells.append("-")
            else:
                std = s[f"{metric}_std"]
                cells.append(f"{100 * s[f'{metric}_mean']:.2f} +- {100 * std:.2f}" if not math.isnan(std)
                             else f"{100 * s[f'{metric}_mean']:.2f}")
        lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wilcoxon_rows(rows: Sequence[Mapping[str, Any]], reference: str = REFERENCE,
                  metric: str = "jaccard") -> list[dict[str, Any]]:
    """Two-sided Wilcoxon signed-rank tests of ``reference`` against each other method per fraction, paired over
    test images (each image's score averaged over seeds first)."""
    by_cell: dict[tuple[str, float], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cell[(r["method"], float(r["fraction"]))].append(r)
    out = []
    for (method, fraction), ref_rows in sorted(by_cell.items()):
        if method != reference:
            continue
        ref = per_image(ref_rows, metric)
        for other in _methods():
            if other == reference:
                continue
            other_rows = by_cell.get((other, 0.0 if other in _fraction_free() else fraction))
            if not other_rows:
                continue
            oth = per_image(other_rows, metric)
            keys = sorted(set(ref) & set(oth))
            if not keys:
                continue
            test = wilcoxon_test([ref[k] for k in keys], [oth[k] for k in keys])
            out.append({"fraction": fraction, "method": reference, "versus": other, **test})
    return out


SIGNIFICANT = 0.01  # the p-value below which the report calls a margin a gain (issue 12's bar)
#: (method, its control): what the method adds over the same computation without one component
ATTRIBUTION = (("transfer", "selftrain", "translation (transfer vs the same loop without a translator)"),
               ("paper", "source_only", "the paper's method over the source model"))


def paired(rows: Sequence[Mapping[str, Any]], a: str, b: str, fraction: float,
           metric: str = "jaccard", b_fraction: float | None = None) -> dict[str, float] | None:
    """Method ``a`` against ``b`` at ``fraction`` (``b`` at ``b_fraction`` when given), paired over the test images
    both scored (seed-averaged): the mean difference, the Wilcoxon p-value and the number of images; None when they
    share no image."""
    def cell(method: str, at: float) -> dict[str, float]:
        f = 0.0 if method in _fraction_free() else at
        return per_image([r for r in rows if r["method"] == method and float(r["fraction"]) == f], metric)

    x, y = cell(a, fraction), cell(b, fraction if b_fraction is None else b_fraction)
    keys = sorted(set(x) & set(y))
    if not keys:
        return None
    test = wilcoxon_test([x[k] for k in keys], [y[k] for k in keys])
    return {"difference": float(np.mean([x[k] - y[k] for k in keys])), "p_value": test["p_value"],
            "n": float(len(keys))}


def recommendations(rows: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per label fraction: the method with the best mean Jaccard (with the methods that made the very same
    predictions, e.g. ``semisup`` when it kept fine-tuning in every fold), its margin (mean paired difference, points)
    and Wilcoxon p-value over the next different method, fine-tuning and source-only, its failures, and a sentence
    saying what to use. A margin counts as a gain only below :data:`SIGNIFICANT`.

    Only the methods scored on as many test images as the most complete one compete: a method with fewer (a sweep
    still running) is named in ``incomplete`` and in the sentence, not ranked, since its mean is over other images.
    With labels, the best method is also set against the best one with no labels when that one uses target images
    (``label_free_*``; the label-free baselines already compete on every row): a user with labels may still run it."""
    out = []
    label_free = None
    for fraction in sorted({float(e["fraction"]) for e in summary}):
        at = [e for e in summary if float(e["fraction"]) == fraction]
        full = max(e["n_images"] for e in at)
        entries = sorted((e for e in at if e["n_images"] == full), key=lambda e: -e["jaccard_mean"])
        unfinished = [e for e in at if e["n_images"] < full]
        ranked = [e["method"] for e in entries]
        best = ranked[0]
        entry: dict[str, Any] = {"fraction": fraction, "best": best, "jaccard_mean": entries[0]["jaccard_mean"],
                                 "failures": entries[0]["failures"]}
        tests = {other: paired(rows, best, other, fraction) for other in ranked[1:]}
        same = [m for m, t in tests.items() if t is not None and t["difference"] == 0 and t["p_value"] == 1.0]
        if fraction == 0:  # fine-tuning with no label is the source model
            same = [m for m in same if m != "finetune"]
        entry["same_as"] = ",".join(same)
        different = [m for m in ranked[1:] if m not in same and tests[m] is not None and
                     not (fraction == 0 and m == "finetune")]
        versus = different[:1] + [m for m in ("finetune", "source_only") if m in different[1:]]
        parts = []
        for other in versus:
            test = tests[other]
            key = "next" if other == versus[0] else other
            entry.update({f"{key}_method": other, f"{key}_difference": test["difference"],
                          f"{key}_p": test["p_value"]})
            parts.append(f"{100 * test['difference']:+.2f} over {other} (p = {test['p_value']:.2g})")
        labels = "no labels" if fraction == 0 else f"{100 * fraction:g}% labels"
        name = best + (f" (the same predictions as {', '.join(same)})" if same else "")
        sentence = f"with {labels} use {name}: " + ", ".join(parts) if parts else f"with {labels} use {name}"
        if parts and entry["next_p"] >= SIGNIFICANT:
            sentence += f"; not a significant gain over {entry['next_method']} (p >= {SIGNIFICANT})"
        if fraction == 0 and best not in _fraction_free():
            label_free = best
        elif label_free is not None and best != label_free:
            test = paired(rows, best, label_free, fraction, b_fraction=0.0)
            if test is not None:
                entry.update({"label_free_method": label_free, "label_free_difference": test["difference"],
                              "label_free_p": test["p_value"]})
                sentence += f"; {100 * test['difference']:+.2f} over {label_free} with no labels " \
                            f"(p = {test['p_value']:.2g})"
                if test["difference"] < 0:  # the labels do not pay: say so first
                    sentence = f"with {labels} use {label_free} without them (the labels do not pay); else " + \
                        "use " + sentence[len(f"with {labels} use "):]
        sentence += f"; {entry.get('failures', 0)} failed image(s)"
        entry["incomplete"] = ",".join(f"{e['method']}:{e['n_images']}" for e in unfinished)
        if unfinished:
            sentence += "; not compared (scored on fewer test images): " + ", ".join(
                f"{e['method']} ({e['n_images']} of {full})" for e in unfinished)
        entry["sentence"] = sentence + "."
        out.append(entry)
    return out


def attribution_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What one component adds, per fraction where both cells exist (:data:`ATTRIBUTION`), paired over images."""
    out = []
    fractions = sorted({float(r["fraction"]) for r in rows})
    for method, control, what in ATTRIBUTION:
        for fraction in fractions:
            if not any(r["method"] == method and float(r["fraction"]) == fraction for r in rows):
                continue
            test = paired(rows, method, control, fraction)
            if test is not None:
                out.append({"fraction": fraction, "method": method, "control": control, "what": what, **test})
    return out


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))  # rows may differ in their optional columns
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


MARKERS = "osD^v<>ph*X"


def plot_styles(methods: Sequence[str]) -> dict[str, tuple[tuple[float, float, float, float], str]]:
    """A colour (of matplotlib's 20-colour qualitative map) and a marker per method, no two methods alike in both: the
    default colour cycle repeats after ten, and a full registry has more methods than that."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return {m: (tuple(cmap(i % 20)), MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def plot_fractions(summary: Sequence[Mapping[str, Any]], path: str | os.PathLike, metric: str = "jaccard") -> Path:
    """PNG of ``metric`` (%) against label fraction (symlog axis, 0 included) with 95% CIs per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in _methods() if any(s["method"] == m for s in summary)]
    styles = plot_styles(methods)
    fig, ax = plt.subplots(figsize=(7.6, 4.2), dpi=120)
    for method in methods:
        pts = sorted((s for s in summary if s["method"] == method), key=lambda s: s["fraction"])
        x = np.array([100 * s["fraction"] for s in pts])
        y = np.array([100 * s[f"{metric}_mean"] for s in pts])
        lo = np.array([100 * s[f"{metric}_ci_low"] for s in pts])
        hi = np.array([100 * s[f"{metric}_ci_high"] for s in pts])
        err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0)
        style = "--" if method in _fraction_free() else "-"
        colour, marker = styles[method]
        ax.errorbar(x, y, yerr=err, label=method, color=colour, marker=marker, linestyle=style, capsize=3)
    ax.set_xscale("symlog", linthresh=1.0)
    ticks = sorted({100 * s["fraction"] for s in summary})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlabel("target labels used (% of the target training split)")
    ax.set_ylabel(f"{metric.capitalize()} (%) on the target test split")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def select_identities(rows: Sequence[Mapping[str, Any]], identities: Sequence[str] | None = None
                      ) -> list[Mapping[str, Any]]:
    """The rows to pool: all of them when every (method, fraction, seed) has one configuration, else the rows whose
    ``identity`` is in ``identities``.

    Raises:
        ValueError: when a (method, fraction, seed) holds cells of different configurations and ``identities`` does
            not choose one of each (the message lists them).
    """
    if identities:
        rows = [r for r in rows if r.get("identity") in set(identities)]
    seen: dict[tuple[str, float, int, int], set[str]] = defaultdict(set)
    for r in rows:
        seen[(r["method"], float(r["fraction"]), int(r["seed"]), int(r.get("fold", 0)))].add(str(r.get("identity")))
    mixed = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    if mixed:
        (method, fraction, seed, fold), ids = next(iter(sorted(mixed.items())))
        raise ValueError(f"expected one configuration per cell, got {len(mixed)} cell(s) run with several, e.g. "
                         f"{method} at {fraction:g} seed {seed} fold {fold}: {', '.join(ids)} (see identity.json in "
                         "their cell folders); pass --identity for the ones to report")
    return list(rows)


def write_report(runs: str | os.PathLike, out: str | os.PathLike | None = None,
                 identities: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the table (Markdown + CSV), the Wilcoxon tests and the plot of a sweep folder.

    Args:
        runs: the sweep root (holding ``results.jsonl``).
        out: output folder (default: ``runs/report``).
        identities: cell configuration hashes to report (needed when a cell was run with several configurations).

    Returns:
        Paths of the written files by kind.

    Raises:
        FileNotFoundError: when ``runs`` has no ``results.jsonl`` (run ``cxr-transfer experiment sweep`` first).
        ValueError: when cells of different configurations would be pooled (see :func:`select_identities`).
    """
    runs = Path(runs)
    rows = read_results(runs / RESULTS)
    if not rows:
        raise FileNotFoundError(f"no results in {runs / RESULTS}; run `cxr-transfer experiment sweep --out {runs}` "
                                "first, or point --runs at a sweep folder")
    rows = select_identities(rows, identities)
    out = Path(out) if out is not None else runs / "report"
    summary = summarize_results(rows)
    tests = wilcoxon_rows(rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    text = [f"# Sweep report: {runs}", "",
            f"{len(rows)} cells, seeds {seeds}, folds {sorted({int(r.get('fold', 0)) for r in rows})}. Mean +- std "
            "over test images (each image's score averaged over seeds first), in %.",
            "source_only and histmatch use no target label; their values are repeated on every row.", "",
            "## Jaccard", "", markdown_table(summary, "jaccard"), "", "## Dice", "", markdown_table(summary, "dice"),
            "", "## Spread (Jaccard): bootstrap CI over images, sd over seeds and over folds, failures", "",
            spread_table(summary, "jaccard"),
            "", "## Wilcoxon signed-rank tests (transfer vs each method, Jaccard, paired over images)", "",
            "| labels | versus | median difference | p-value | n |", "|---|---|---|---|---|"]
    text += [f"| {100 * t['fraction']:g}% | {t['versus']} | {100 * t['median_difference']:+.2f} | "
             f"{t['p_value']:.3g} | {int(t['n'])} |" for t in tests]
    advice = recommendations(rows, summary)
    text = text[:2] + ["## Which method to use", ""] + [f"- {a['sentence']}" for a in advice] + [
        "", f"Best mean Jaccard per fraction; margins are mean paired differences over the test images (points), "
        f"p-values two-sided Wilcoxon; a margin with p >= {SIGNIFICANT} is not called a gain.", ""] + text[2:]
    attribution = attribution_rows(rows)
    if attribution:
        text += ["", "## Attribution: what one component adds (paired over images)", "",
                 "| labels | component | method - control | mean difference | p-value | n |", "|---|---|---|---|---|---|"]
        text += [f"| {100 * a['fraction']:g}% | {a['what']} | {a['method']} - {a['control']} | "
                 f"{100 * a['difference']:+.2f} | {a['p_value']:.3g} | {int(a['n'])} |" for a in attribution]
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "wilcoxon": out / "wilcoxon.csv",
             "recommendations": out / "recommendations.csv", "plot": out / "jaccard_vs_fraction.png"}
    text += view_table(rows)
    cells = [(r["method"], f"f{float(r['fraction']):.4f}", f"s{int(r['seed'])}", r.get("identity")) for r in rows]
    overlays = [(m, f, s, runs / "cells" / m / f / f"{s}-{i}" / "overlays.png") for m, f, s, i in sorted(cells)]
    overlays = [o for o in overlays if o[3].is_file()]
    for method, fraction, seed, path in overlays:  # qualitative PNGs of classes without target ground truth
        target = out / "overlays" / f"{method}_{fraction}_{seed}.png"
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(path.read_bytes())
        paths[f"overlays/{method}_{fraction}_{seed}"] = target
    if overlays:
        text += ["", "## Qualitative predictions on target test images (classes without target ground truth)", ""]
        text += [f"![{k[9:]}](overlays/{p.name})" for k, p in paths.items() if k.startswith("overlays/")]
    atomic_write_text(paths["markdown"], "\n".join(text) + "\n")
    atomic_write_text(paths["csv"], _csv(summary))
    atomic_write_text(paths["wilcoxon"], _csv(tests))
    atomic_write_text(paths["recommendations"], _csv(advice))
    plot_fractions(summary, paths["plot"])
    return paths


def view_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines: the transfer cells' mean test Jaccard under other prediction views (the ``views`` of each
    cell's result, written by the sweep), mean over seeds per fraction; empty when no cell has them."""
    cells = [r for r in rows if r.get("method") == "transfer" and isinstance(r.get("views"), Mapping)]
    if not cells:
        return []
    names = list(dict.fromkeys(k for r in cells for k in r["views"]))
    lines = ["", "## Transfer by prediction view (Jaccard %, mean over images and seeds; nothing selected by it)", "",
             "| labels | default views | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    def mean(values: list[float]) -> str:
        return f"{100 * sum(values) / len(values):.2f}" if values else "-"

    for fraction in sorted({float(r["fraction"]) for r in cells}):
        group = [r for r in cells if float(r["fraction"]) == fraction]
        lines.append(f"| {100 * fraction:g}% | {mean([float(r['jaccard']) for r in group])} | " + " | ".join(
            mean([float(r["views"][n]) for r in group if n in r["views"]]) for n in names) + " |")
    val = [r for r in cells if isinstance(r.get("val_views"), Mapping)]
    if val:  # the same views on the target validation labels: where a view default may honestly be chosen
        val_names = list(dict.fromkeys(k for r in val for k in r["val_views"]))
        lines += ["", "The same views on the target validation images (mean over folds and seeds): a view default is "
                  "chosen here, not on the test images above.", "",
                  "| labels | " + " | ".join(val_names) + " |", "|---" * (len(val_names) + 1) + "|"]
        for fraction in sorted({float(r["fraction"]) for r in val}):
            group = [r for r in val if float(r["fraction"]) == fraction]
            lines.append(f"| {100 * fraction:g}% | " + " | ".join(
                mean([float(r["val_views"][n]) for r in group if n in r["val_views"]]) for n in val_names) + " |")
    return lines


COLOURS = ((0.2, 0.6, 1.0), (1.0, 0.3, 0.2), (0.2, 0.9, 0.3), (1.0, 0.85, 0.1), (0.8, 0.3, 1.0))


def write_overlays(images: Tensor, masks: Tensor, classes: Sequence[str], path: str | os.PathLike,
                   titles: Sequence[str] | None = None, columns: int = 4) -> Path:
    """A PNG grid of images with the predicted masks' outlines, one colour per class.

    Args:
        images: ``[N, 1, H, W]`` in ``[0, 1]``.
        masks: bool ``[N, K, H, W]`` (e.g. M_A(G_BA(b)) > 0 for heart and clavicles on target images).
        classes: the K class names (legend).
        path: the PNG, written atomically.
        titles: one caption per image (e.g. ids).
        columns: images per row.

    Raises:
        ValueError: if shapes disagree or there are more classes than colours.
    """
    if images.ndim != 4 or masks.ndim != 4 or images.shape[0] != masks.shape[0] or masks.shape[1] != len(classes):
        raise ValueError(f"expected images [N,1,H,W] and masks [N,{len(classes)},H,W], got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}")
    if len(classes) > len(COLOURS):
        raise ValueError(f"expected at most {len(COLOURS)} classes, got {len(classes)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = images.shape[0]
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), dpi=110, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k, 0].float().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        for c in range(len(classes)):
            m = masks[k, c].float().cpu().numpy()
            if m.any() and not m.all():
                ax.contour(m, levels=[0.5], colors=[COLOURS[c]], linewidths=1.0)
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=7)
    fig.legend([Line2D([0], [0], color=COLOURS[c]) for c in range(len(classes))], list(classes), loc="lower center",
               ncol=len(classes), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
