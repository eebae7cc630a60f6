"""benchmarks/seed_check.py on hand-made results of two seeds: per-seed and seed-averaged paired margins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IDS = [f"img{i}" for i in range(6)]


def _rows(cells: dict[tuple[str, float, int], list[float]]) -> str:
    return "".join(json.dumps({"key": f"{m}|{f:.4f}|{s}", "identity": "x", "method": m, "fraction": f, "seed": s,
                               "fold": 0, "jaccard": sum(v) / len(v), "dice": sum(v) / len(v),
                               "per_image": {"id": IDS, "jaccard": v, "dice": v}}) + "\n"
                   for (m, f, s), v in cells.items())


def test_a_margin_of_one_seed_only_is_shown_per_seed_and_averaged(tmp_path):
    base = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90]
    up = [v + 0.02 for v in base]  # seed 0: A is 2 points above B on every image
    path = tmp_path / "results.jsonl"
    path.write_text(_rows({("adaptft", 0.05, 0): up, ("finetune", 0.05, 0): base,
                           ("adaptft", 0.05, 1): base, ("finetune", 0.05, 1): base,  # seed 1: no difference
                           ("finetune", 0.05, 2): [0.5] * 6}))  # a seed without A is left out
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "seed_check.py"), str(path),
                           "--pair", "0.05:adaptft-finetune"], capture_output=True, text=True, cwd=REPO, check=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| 5% |")]
    assert [line.split(" | ")[2] for line in lines] == ["0", "1", "0,1 (averaged)"]
    margins = [float(line.split(" | ")[5]) for line in lines]
    assert margins == [2.0, 0.0, 1.0]
    assert all(line.rstrip(" |").endswith("6") for line in lines)
