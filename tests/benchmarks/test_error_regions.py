"""benchmarks/error_regions.py: missed and extra lung land in the region of the true lungs where they are."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling sweep_folder, as when run
_spec = importlib.util.spec_from_file_location("error_regions", REPO / "benchmarks" / "error_regions.py")
error_regions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(error_regions)


def _box() -> np.ndarray:
    truth = np.zeros((20, 20), bool)
    truth[5:15, 2:18] = True  # 10 rows (2 per band) x 16 columns: 160 pixels, centre between columns 9 and 10
    return truth


def test_missed_apex_and_extra_below_the_lungs():
    truth = _box()
    pred = truth.copy()
    pred[5:7] = False  # the top band: 32 pixels missed
    pred[16, 4:12] = True  # 8 extra pixels below the box
    row = error_regions.image_errors(pred, truth)
    assert row["missed rows 1/5"] == pytest.approx(32 / 160)
    assert all(row[f"missed rows {i}/5"] == 0 for i in range(2, 6))
    assert row["extra rows outside"] == pytest.approx(8 / 160) and row["extra rows 5/5"] == 0
    assert row["area_ratio"] == pytest.approx((160 - 32 + 8) / 160)
    assert row["jaccard"] == pytest.approx(128 / 168)


def test_lateral_and_medial_thirds_of_each_lung():
    truth = _box()
    pred = truth.copy()
    pred[5:15, 2] = False  # the outer edge of the left half
    pred[5:15, 17] = False  # the outer edge of the right half
    pred[5:15, 9] = False  # next to the centre
    row = error_regions.image_errors(pred, truth)
    assert row["missed lateral third"] == pytest.approx(20 / 160)
    assert row["missed medial third"] == pytest.approx(10 / 160) and row["missed middle third"] == 0
    regions = error_regions.regions(truth)
    inside = regions["lateral third"] | regions["middle third"] | regions["medial third"]
    assert inside[5:15].all() and not inside[:5].any()  # the thirds tile the box's rows
    assert not (regions["lateral third"] & regions["medial third"]).any()


def test_a_model_pattern_without_a_fold_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "error_regions.py"), str(tmp_path),
                           "--model", "x=cells/model.pt"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "{fold}" in proc.stderr
