"""benchmarks/adaptft_stages_validation.py refuses, in one line, a folder that cannot hold what it scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "adaptft_stages_validation.py"


def _run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, cwd=REPO)


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "sweep_config.json not found" in proc.stderr


def test_a_sweep_without_adaptft_cells_is_refused(tmp_path):
    (tmp_path / "sweep_config.json").write_text("{}")
    (tmp_path / "folds_k5.json").write_text("{}")
    (tmp_path / "results.jsonl").write_text(json.dumps({"method": "finetune", "fraction": 0.05}) + "\n")
    proc = _run(tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no finished adaptft cell" in proc.stderr
