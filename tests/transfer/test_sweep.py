"""The sweep grid, atomic result appends, and resuming a killed sweep without recomputing finished cells."""

from __future__ import annotations

import json

import pytest

from transfer.baselines import cell_dir
from transfer.config import ExperimentConfig
from transfer.sweep import append_result, grid, read_results, run_cell, run_sweep

METHODS = ("transfer", "finetune", "scratch", "source_only")
FRACTIONS = (0.0, 0.05, 0.1)


def _fake_result(exp: ExperimentConfig) -> dict:
    return {"key": exp.key, "method": exp.method, "fraction": exp.fraction, "seed": exp.seed,
            "jaccard": 0.5 + exp.fraction, "dice": 0.6, "per_image": {"id": ["x"], "jaccard": [0.5], "dice": [0.6]}}


def test_grid_skips_undefined_and_fraction_free_repeats(tmp_path):
    base = ExperimentConfig(out=str(tmp_path))
    cells = grid(base, METHODS, FRACTIONS, seeds=(0, 1))
    keys = [c.key for c in cells]
    assert "scratch|0.0000|0" not in keys  # undefined at 0%
    assert sum(k.startswith("source_only") for k in keys) == 2  # once per seed
    # per seed: transfer 3 + finetune 3 + scratch 2 + source_only 1
    assert len(cells) == 2 * 9 and len(set(keys)) == len(keys)


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    base = ExperimentConfig(out=str(tmp_path))
    calls: list[str] = []

    def dying(exp):
        if len(calls) == 4:
            raise KeyboardInterrupt  # the sweep is killed while the fifth cell runs
        calls.append(exp.key)
        return _fake_result(exp)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=dying, log=lambda m: None)
    first = list(calls)
    assert len(read_results(tmp_path / "results.jsonl")) == 4

    calls.clear()
    rows = run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=lambda e: (calls.append(e.key), _fake_result(e))[1],
                     log=lambda m: None)
    assert set(calls).isdisjoint(first), "finished cells were recomputed"
    assert len(calls) == 9 - 4
    assert sorted(r["key"] for r in rows) == sorted(c.key for c in grid(base, METHODS, FRACTIONS, (0,)))

    calls.clear()
    run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=lambda e: (calls.append(e.key), _fake_result(e))[1],
              log=lambda m: None)
    assert calls == []


def test_finished_cell_is_read_back_not_recomputed(tmp_path):
    # metrics.json written but the sweep killed before appending: run_cell returns it without touching data.
    exp = ExperimentConfig(out=str(tmp_path), method="finetune", fraction=0.1, source="/nonexistent",
                           target="/nonexistent")
    done = cell_dir(tmp_path, exp) / "metrics.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps(_fake_result(exp)))
    assert run_cell(exp)["jaccard"] == pytest.approx(0.6)


def test_torn_last_line_is_ignored_and_appends_stay_valid(tmp_path):
    path = tmp_path / "results.jsonl"
    append_result(path, {"key": "a"})
    with open(path, "a") as f:
        f.write('{"key": "b", "jacc')  # a writer killed mid-line (not possible with append_result, but tolerated)
    assert [r["key"] for r in read_results(path)] == ["a"]
    append_result(path, {"key": "c"})
    assert [r["key"] for r in read_results(path)] == ["a", "c"]


def test_bad_jobs_message(tmp_path):
    with pytest.raises(ValueError, match="expected jobs >= 1, got 0"):
        run_sweep(ExperimentConfig(out=str(tmp_path)), METHODS, FRACTIONS, (0,), jobs=0, runner=_fake_result)
