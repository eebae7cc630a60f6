"""Cross-validation over the whole target set, no test image before the final evaluation, statistics over images."""

from __future__ import annotations

import dataclasses

import pytest

from segmentation.data.dataset import CXRData
from segmentation.data.phantoms import write_phantom_dataset
from transfer.config import ExperimentConfig, TransferConfig
from transfer.protocol import fold_splits, labelled_ids
from transfer.report import bootstrap_ci, per_image, summarize_results, wilcoxon_rows, write_report
from transfer.sweep import run_sweep

IDS = [f"img{i:03d}" for i in range(23)]


def test_every_image_is_a_test_image_exactly_once_and_parts_are_disjoint(tmp_path):
    folds = [fold_splits(IDS, 5, k, seed=3, path=tmp_path / "folds.json") for k in range(5)]
    tested = sorted(i for f in folds for i in f["test"])
    assert tested == sorted(IDS)
    for f in folds:
        parts = [set(f["train"]), set(f["val"]), set(f["test"])]
        assert sum(map(len, parts)) == len(IDS) and not (parts[0] & parts[1] or parts[0] & parts[2]
                                                          or parts[1] & parts[2])
        assert len(f["val"]) == round((len(IDS) - len(f["test"])) * 0.25)
        small, large = labelled_ids(f["train"], 0.1, 0), labelled_ids(f["train"], 0.5, 0)
        assert set(small) <= set(large) <= set(f["train"])  # nested fractions inside the fold's train part
    assert fold_splits(IDS, 5, 2, seed=3, path=tmp_path / "folds.json") == folds[2]  # read back, same split
    again = fold_splits(IDS, 5, 2, seed=99, path=tmp_path / "folds.json")  # the saved test parts win over a seed
    assert again["test"] == folds[2]["test"]
    with pytest.raises(ValueError, match="expected 0 <= fold < 5, got 5"):
        fold_splits(IDS, 5, 5)
    with pytest.raises(ValueError, match="delete it to redraw"):
        fold_splits(IDS[:-1], 5, 0, path=tmp_path / "folds.json")


def test_statistics_average_seeds_per_image_before_comparing():
    rows = [{"method": m, "fraction": 0.0, "seed": s, "fold": 0,
             "per_image": {"id": ["a", "b", "c"], "jaccard": list(v), "dice": list(v)}}
            for m, s, v in (("transfer", 0, (0.9, 0.8, 0.5)), ("transfer", 1, (0.7, 0.8, 0.7)),
                            ("source_only", 0, (0.6, 0.6, 0.6)), ("source_only", 1, (0.6, 0.6, 0.6)))]
    assert per_image(rows[:2], "jaccard") == pytest.approx({"a": 0.8, "b": 0.8, "c": 0.6})
    (transfer,) = [s for s in summarize_results(rows) if s["method"] == "transfer"]
    assert transfer["n_images"] == 3 and transfer["n_seeds"] == 2  # 3 images, not 6 pooled samples
    assert transfer["jaccard_mean"] == pytest.approx(2.2 / 3) and transfer["failures"] == 1  # image c: 0.6 < 0.7
    assert transfer["jaccard_seed_sd"] == pytest.approx(0.0)  # both seeds average 0.7333
    low, high = transfer["jaccard_ci_low"], transfer["jaccard_ci_high"]
    assert 0.6 - 1e-9 <= low <= transfer["jaccard_mean"] <= high <= 0.8 + 1e-9  # within the image values
    (test,) = wilcoxon_rows(rows)
    assert test["versus"] == "source_only" and test["n"] == 3
    assert bootstrap_ci([0.5]) != bootstrap_ci([0.5, 0.6])


def test_a_cross_validated_sweep_never_reads_a_test_image_before_its_evaluation(tmp_path, monkeypatch):
    write_phantom_dataset(tmp_path / "a", 10, 32, "a", 0)
    write_phantom_dataset(tmp_path / "b", 12, 32, "b", 1)
    base = ExperimentConfig(source=str(tmp_path / "a"), target=str(tmp_path / "b"), out=str(tmp_path / "sweep"),
                            size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, translator_preset="tiny",
                            source_iterations=2, finetune_iterations=1, device="cpu", folds=3,
                            transfer=TransferConfig(iterations=2, warmup_iterations=1, steps_per_epoch=2,
                                                    batch_size=2))
    state = {"test": set(), "inside": False, "early": []}
    real_subset = CXRData.subset

    def watched(self, ids_or_indices):  # every subset taken while a method runs must hold no test image
        out = real_subset(self, ids_or_indices)
        if state["inside"] and set(out.ids) & state["test"]:
            state["early"].append(sorted(set(out.ids) & state["test"]))
        return out

    import transfer.cell as cell_module

    real_splits, real_get = cell_module.cell_splits, cell_module.get_method

    def splits(exp, ids, save=True):
        out = real_splits(exp, ids, save)
        state["test"] = set(out["test"])
        return out

    def get_method(name):
        method = real_get(name)

        def run(ctx):
            state["inside"] = True
            try:
                return method.run(ctx)
            finally:
                state["inside"] = False

        return dataclasses.replace(method, run=run)

    monkeypatch.setattr(CXRData, "subset", watched)
    monkeypatch.setattr(cell_module, "cell_splits", splits)
    monkeypatch.setattr(cell_module, "get_method", get_method)
    rows = run_sweep(base, ("transfer", "finetune", "source_only"), (0.0, 0.5), (0,), log=lambda m: None)
    assert not state["early"], f"a cell took its test split before the final evaluation: {state['early'][:1]}"
    assert len(rows) == 3 * (2 + 2 + 1)  # 3 folds x (transfer 2 fractions, finetune 2, source_only 1)
    source_only = [r for r in rows if r["method"] == "source_only"]
    tested = sorted(i for r in source_only for i in r["per_image"]["id"])
    assert len(tested) == 12 and len(set(tested)) == 12  # every target image tested exactly once
    summary = {(s["method"], s["fraction"]): s for s in summarize_results(rows)}
    assert summary[("finetune", 0.5)]["n_folds"] == 3 and summary[("finetune", 0.5)]["n_images"] == 12
    text = write_report(base.out)["markdown"].read_text()
    assert "sd over folds" in text and "folds [0, 1, 2]" in text
