"""The sweep grid, atomic result appends, and resuming a killed sweep without recomputing finished cells."""

from __future__ import annotations

import json

import pytest

from transfer.cell import cell_dir, cell_key, run_cell
from transfer.config import ExperimentConfig
from transfer.results import append_result, read_results
from transfer.sweep import grid, run_sweep

METHODS = ("transfer", "finetune", "scratch", "source_only")
FRACTIONS = (0.0, 0.05, 0.1)


def _fake_result(exp: ExperimentConfig) -> dict:
    return {"key": cell_key(exp), "method": exp.method, "fraction": exp.fraction, "seed": exp.seed,
            "jaccard": 0.5 + exp.fraction, "dice": 0.6, "per_image": {"id": ["x"], "jaccard": [0.5], "dice": [0.6]}}


def test_grid_skips_undefined_and_fraction_free_repeats(tmp_path):
    base = ExperimentConfig(out=str(tmp_path))
    cells = grid(base, METHODS, FRACTIONS, seeds=(0, 1))
    keys = [cell_key(c) for c in cells]
    assert not any(k.startswith("scratch|0.0000|0|") for k in keys)  # undefined at 0%
    assert sum(k.startswith("source_only") for k in keys) == 2  # once per seed
    # per seed: transfer 3 + finetune 3 + scratch 2 + source_only 1
    assert len(cells) == 2 * 9 and len(set(keys)) == len(keys)


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    base = ExperimentConfig(out=str(tmp_path))
    calls: list[str] = []

    def dying(exp):
        if len(calls) == 4:
            raise KeyboardInterrupt  # the sweep is killed while the fifth cell runs
        calls.append(cell_key(exp))
        return _fake_result(exp)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=dying, log=lambda m: None)
    first = list(calls)
    assert len(read_results(tmp_path / "results.jsonl")) == 4

    calls.clear()
    rows = run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=lambda e: (calls.append(cell_key(e)), _fake_result(e))[1],
                     log=lambda m: None)
    assert set(calls).isdisjoint(first), "finished cells were recomputed"
    assert len(calls) == 9 - 4
    assert sorted(r["key"] for r in rows) == sorted(cell_key(c) for c in grid(base, METHODS, FRACTIONS, (0,)))

    calls.clear()
    run_sweep(base, METHODS, FRACTIONS, seeds=(0,), runner=lambda e: (calls.append(cell_key(e)), _fake_result(e))[1],
              log=lambda m: None)
    assert calls == []


def test_finished_cell_is_read_back_not_recomputed(tmp_path):
    # metrics.json written but the sweep killed before appending: run_cell returns it without touching data.
    exp = ExperimentConfig(out=str(tmp_path), method="finetune", fraction=0.1, source="/nonexistent",
                           target="/nonexistent")
    done = cell_dir(exp) / "metrics.json"
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


def test_select_classes_keeps_the_right_channels():
    import torch

    from segmentation.models import create_segmenter
    from transfer.baselines import select_classes

    torch.manual_seed(0)
    full = create_segmenter("unet", in_channels=1, out_channels=3, depth=2, base_channels=4).eval()
    x = torch.rand(2, 1, 16, 16)
    heart_lungs = select_classes(full, [1, 0]).eval()
    assert heart_lungs(x).shape == (2, 2, 16, 16)
    assert torch.allclose(heart_lungs(x), full(x)[:, [1, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="channel indices in"):
        select_classes(full, [3])
    with pytest.raises(ValueError, match="to include every target class"):
        ExperimentConfig(classes=("lungs",), source_classes=("heart",))


def test_source_with_more_classes_scores_target_classes_and_draws_overlays(tmp_path):
    # M_A segments lungs, heart and clavicles on domain A; domain B is scored on lungs only (as Montgomery), and the
    # source_only and transfer cells draw all three classes on target test images, gathered by the report.
    from segmentation.data.phantoms import write_phantom_dataset
    from transfer.config import TransferConfig
    from transfer.report import write_report

    write_phantom_dataset(tmp_path / "a", 12, 32, "a", 0)
    write_phantom_dataset(tmp_path / "b", 15, 32, "b", 1)
    base = ExperimentConfig(source=str(tmp_path / "a"), target=str(tmp_path / "b"), out=str(tmp_path / "sweep"),
                            classes=("lungs",), source_classes=("lungs", "heart", "clavicles"), size=32,
                            segmenter_kwargs={"depth": 2, "base_channels": 4}, translator_preset="tiny",
                            source_iterations=2, finetune_iterations=1, device="cpu",
                            transfer=TransferConfig(iterations=2, warmup_iterations=1, steps_per_epoch=2, batch_size=2))
    rows = run_sweep(base, ("transfer", "source_only", "finetune"), (0.0, 0.3), (0,), log=lambda m: None)
    assert {(r["method"], r["fraction"]) for r in rows} == {("transfer", 0.0), ("transfer", 0.3), ("source_only", 0.0),
                                                           ("finetune", 0.0), ("finetune", 0.3)}
    assert all("jaccard/lungs" in r and "jaccard/heart" not in r for r in rows)
    labelled_cell = cell_dir(base.replace(fraction=0.3))  # the target term used only M_A's lung channel
    assert json.loads((labelled_cell / "metrics.json").read_text())["n_labelled"] >= 1
    from segmentation.training import load_segmenter

    _, saved, _ = load_segmenter(labelled_cell / "segmenter.pt")  # the adapted M_A keeps every source class
    assert saved.classes == ("lungs", "heart", "clavicles")
    for method in ("transfer", "source_only"):
        assert (cell_dir(base.replace(method=method)) / "overlays.png").is_file()
    paths = write_report(base.out)
    assert paths["overlays/transfer_f0.0000_s0"].is_file()
    assert "overlays/transfer_f0.0000_s0.png" in paths["markdown"].read_text()
    # transfer cells also score other prediction views (reported, never selected by); with the paper's single view
    # as the cell's prediction, its "paper" view score is the cell's own Jaccard
    for r in rows:
        if r["method"] == "transfer":
            assert set(r["views"]) == {"paper", "direct", "direct_flip"}
            assert set(r["val_views"]) == {"default", "paper", "direct", "direct_flip"}  # on validation labels
            assert all(0 <= v <= 1 for v in r["views"].values())
    assert "## Transfer by prediction view" in paths["markdown"].read_text()
    paper = base.replace(out=str(tmp_path / "paper"), transfer=base.transfer.replace(predict_views=("translated",)))
    (row,) = run_sweep(paper, ("transfer",), (0.0,), (0,), log=lambda m: None)
    assert row["views"]["paper"] == pytest.approx(row["jaccard"])
