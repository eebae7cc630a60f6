"""What one component adds: the same cells with it (A) against without it (B), paired over test images.

Both files are sweep ``results.jsonl`` files (e.g. docs/results/*.jsonl) whose cells differ in one setting. For each
(method, fraction) in both: images scored by both, mean Jaccard of each, the mean paired difference A - B with a
bootstrap 95% interval, the two-sided Wilcoxon p-value and the failure counts (Jaccard < 70). Per-image scores are
averaged over seeds first (images are the samples), as in ``experiment report``.

Usage: python benchmarks/compare_results.py A.jsonl B.jsonl [--label-a gated] [--label-b plain] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from segmentation.metrics import wilcoxon_test
from transfer.report import FAILURE, bootstrap_ci, per_image
from transfer.results import read_results


def compare(rows_a: list[dict], rows_b: list[dict], metric: str = "jaccard") -> list[dict]:
    """One dict per (method, fraction) that both sets of rows hold, sorted by fraction then method."""
    cells_a, cells_b = defaultdict(list), defaultdict(list)
    for rows, cells in ((rows_a, cells_a), (rows_b, cells_b)):
        for r in rows:
            cells[(r["method"], float(r["fraction"]))].append(r)
    out = []
    for key in sorted(set(cells_a) & set(cells_b), key=lambda k: (k[1], k[0])):
        a, b = per_image(cells_a[key], metric), per_image(cells_b[key], metric)
        ids = sorted(set(a) & set(b))
        if not ids:
            continue
        x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
        low, high = bootstrap_ci(x - y)
        test = wilcoxon_test(x.tolist(), y.tolist()) if np.any(x != y) else {"p_value": 1.0}
        out.append({"method": key[0], "fraction": key[1], "n": len(ids), "a": float(x.mean()), "b": float(y.mean()),
                    "difference": float((x - y).mean()), "ci": [low, high], "p_value": float(test["p_value"]),
                    "failures_a": int((x < FAILURE).sum()), "failures_b": int((y < FAILURE).sum())})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    for path in (args.a, args.b):
        if not path.is_file():
            print(f"error: {path} not found; pass two results.jsonl files", file=sys.stderr)
            return 2
    result = compare(read_results(args.a), read_results(args.b))
    if not result:
        print(f"error: {args.a} and {args.b} share no (method, fraction) cell with common images", file=sys.stderr)
        return 2
    print(f"| labels | method | images | {args.label_a} | {args.label_b} | difference [95% CI] | p | failures "
          f"{args.label_a} / {args.label_b} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result:
        print(f"| {100 * r['fraction']:g}% | {r['method']} | {r['n']} | {100 * r['a']:.2f} | {100 * r['b']:.2f} | "
              f"{100 * r['difference']:+.2f} [{100 * r['ci'][0]:+.2f}, {100 * r['ci'][1]:+.2f}] | "
              f"{r['p_value']:.2g} | {r['failures_a']} / {r['failures_b']} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
