"""benchmarks/gpu_check.sh on the CPU: the smoke stage that a GPU machine runs, at its tiny DEVICE=cpu setting.

One run of the whole stage (about a minute on 2 cores): every path passes, summary.json names each of them with its
seconds, and results.tar.gz holds the logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE_PATHS = {"environment", "data", "resume_segment", "resume_translate", "resume_transfer", "guard_nan",
               "sweep_source_classes", "segment_predict", "translate_apply", "autocast_channels_last"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    env = {**os.environ, "DEVICE": "cpu"}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "smoke", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc, out


@pytest.mark.slow
def test_cpu_smoke_passes_every_path(smoke):
    proc, out = smoke
    summary = json.loads((out / "summary.json").read_text())
    failed = {name: p["message"] for name, p in summary["paths"].items() if p["status"] != "PASS"}
    assert not failed, f"{failed}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert set(summary["paths"]) >= SMOKE_PATHS
    assert summary["stage"] == "smoke" and summary["ok"] and summary["device"] == "cpu"
    assert summary["torch"] and summary["device_name"].startswith("cpu")
    assert all(p["seconds"] >= 0 for p in summary["paths"].values())
    assert "bit-identical" in summary["paths"]["resume_segment"]["message"]


@pytest.mark.slow
def test_cpu_smoke_leaves_only_the_archive_and_the_summary(smoke):
    _, out = smoke
    assert sorted(p.name for p in out.iterdir()) == ["results.tar.gz", "summary.json"]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert "work/paths.tsv" in names and "work/logs/resume_segment.log" in names
    assert not [n for n in names if n.endswith(".pt")]
    assert (out / "results.tar.gz").stat().st_size < 16 * 2**20


def test_cpu_figures_time_the_transfer_iteration(tmp_path):
    """The figures stage's transfer-iteration path (bench_iteration.py through the real orchestrator), alone, at its
    tiny CPU setting: it passes and names seconds per iteration and images per second."""
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "ONLY": "transfer_iteration"}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "figures", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    summary = json.loads((out / "summary.json").read_text())
    path = summary["paths"]["transfer_iteration"]
    assert path["status"] == "PASS" and proc.returncode == 0, (path, proc.stdout[-3000:])
    assert "s/it" in path["message"] and "images/s" in path["message"], path["message"]
    assert set(summary["paths"]) == {"environment", "transfer_iteration"}  # ONLY ran this path alone
