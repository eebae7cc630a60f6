"""benchmarks/compare_results.py on hand-made results files: the paired difference, its Wilcoxon p and failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IDS = [f"img{i}" for i in range(6)]


def _write(path: Path, cells: dict[tuple[str, float], list[float]]) -> Path:
    rows = [{"key": f"{m}|{f:.4f}|0", "method": m, "fraction": f, "seed": 0, "jaccard": sum(v) / len(v),
             "per_image": {"id": IDS, "jaccard": v}} for (m, f), v in cells.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_gain_of_a_component_is_paired_over_images(tmp_path):
    plain = [0.68, 0.80, 0.85, 0.90, 0.75, 0.80]  # the first image fails (< 0.70) without the component only
    gain = (0.06, 0.02, 0.03, 0.04, 0.05, 0.01)  # six positive differences of distinct sizes
    a = _write(tmp_path / "a.jsonl", {("selftrain", 0.0): [v + d for v, d in zip(plain, gain)],
                                      ("finetune", 0.05): list(plain), ("only_in_a", 0.0): list(plain)})
    b = _write(tmp_path / "b.jsonl", {("selftrain", 0.0): list(plain), ("finetune", 0.05): list(plain)})
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_results.py"), str(a), str(b), "--json",
                           str(out)], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    selftrain, finetune = json.loads(out.read_text())  # sorted by fraction; the cell only A holds is left out
    assert selftrain["method"] == "selftrain" and selftrain["difference"] == pytest.approx(0.035)
    assert selftrain["p_value"] == pytest.approx(2 / 64)  # the exact two-sided Wilcoxon p
    assert selftrain["failures_a"] == 0 and selftrain["failures_b"] == 1 and selftrain["n"] == 6
    assert finetune["difference"] == 0 and finetune["p_value"] == 1.0
    assert "| 0% | selftrain | 6 |" in proc.stdout and "+3.50" in proc.stdout


def test_files_without_a_common_cell_are_one_line_errors(tmp_path):
    a = _write(tmp_path / "a.jsonl", {("selftrain", 0.0): [0.8] * 6})
    b = _write(tmp_path / "b.jsonl", {("finetune", 0.05): [0.8] * 6})
    for args, message in (([a, b], "share no (method, fraction) cell"), ([a, tmp_path / "none.jsonl"], "not found")):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_results.py"), *map(str, args)],
                              cwd=REPO, capture_output=True, text=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
