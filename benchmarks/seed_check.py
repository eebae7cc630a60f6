"""Do a table's verdicts hold for another seed? Paired comparisons per seed and with each image averaged over seeds.

A seed changes M_A, the labelled subset of every fraction and every method's own randomness, so a margin measured
with one seed may be that seed's. For each pair of methods at a fraction this prints, for every seed alone and for
the seeds together (each image's score averaged over seeds first, as ``experiment report`` does), the methods' mean
Jaccard (failures < 70 in brackets) and the mean paired difference with its Wilcoxon p over the test images both
scored (the images column says when the methods' means are over different images: a sweep still running). Only
seeds that hold both methods of a comparison are used for it.

Usage: python benchmarks/seed_check.py RESULTS.jsonl [MORE.jsonl ...] [--pair FRACTION:A-B ...]
(default pairs: issue 12's comparisons at 0, 1.25, 5, 20 and 100%). Cells of one method, fraction and seed with
several configurations are refused; pass the files that hold one of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transfer.methods import METHODS
from transfer.report import paired, select_identities, summarize_results
from transfer.results import read_results

PAIRS = ("0:selftrain-source_only", "0:selftrain-augsource", "0.0125:adaptft-finetune", "0.0125:selftrain-finetune",
         "0.05:adaptft-finetune", "0.05:selftrain-finetune", "0.05:adaptft-selftrain", "0.2:adaptft-finetune",
         "1:adaptft-finetune")
FRACTION_FREE = tuple(name for name, method in METHODS.items() if method.fraction_free)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--pair", action="append", metavar="FRACTION:A-B")
    args = parser.parse_args(argv)
    rows = []
    for path in args.results:
        if not path.is_file():
            print(f"error: {path} not found; pass results.jsonl files of experiment sweep", file=sys.stderr)
            return 2
        rows += read_results(path)
    try:
        rows = select_identities(rows)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pairs = []
    for item in args.pair or PAIRS:
        at, _, names = item.partition(":")
        a, _, b = names.partition("-")
        try:
            pairs.append((float(at), a, b))
        except ValueError:
            a = ""
        if not (a and b):
            print(f"error: --pair {item!r}: expected FRACTION:A-B, e.g. 0.05:adaptft-finetune", file=sys.stderr)
            return 2
    print("| labels | A - B | seeds | A | B | A - B | p | images |")
    print("|---|---|---|---|---|---|---|---|")
    for fraction, a, b in pairs:

        def seeds_of(method: str) -> set[int]:
            f = 0.0 if method in FRACTION_FREE else fraction
            return {int(r["seed"]) for r in rows if r["method"] == method and float(r["fraction"]) == f}

        seeds = sorted(seeds_of(a) & seeds_of(b))
        for group in [[s] for s in seeds] + ([seeds] if len(seeds) > 1 else []):
            chosen = [r for r in rows if int(r["seed"]) in group and r["method"] in (a, b)]
            summary = {e["method"]: e for e in summarize_results(chosen)
                       if float(e["fraction"]) == (0.0 if e["method"] in FRACTION_FREE else fraction)}
            test = paired(chosen, a, b, fraction)
            if test is None or a not in summary or b not in summary:
                continue
            label = ",".join(str(s) for s in group) + (" (averaged)" if len(group) > 1 else "")
            cells = [f"{100 * summary[m]['jaccard_mean']:.2f} ({summary[m]['failures']})" for m in (a, b)]
            counts = {summary[m]["n_images"] for m in (a, b)} | {int(test["n"])}
            images = str(int(test["n"])) if len(counts) == 1 else f"{int(test['n'])} paired of {sorted(counts)}"
            print(f"| {100 * fraction:g}% | {a} - {b} | {label} | {cells[0]} | {cells[1]} | "
                  f"{100 * test['difference']:+.2f} | {test['p_value']:.2g} | {images} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
