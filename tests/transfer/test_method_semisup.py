"""semisup: fine-tuning plus self-training on the unlabelled target images, kept only when a held-out labelled
check agrees; fine-tuning exactly otherwise, selftrain at 0%."""

from __future__ import annotations

import json

import pytest
import torch

import transfer.methods
from segmentation.data.dataset import CXRData
from transfer.cell import cell_dir, cell_key
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods import selftrain, semisup
from transfer.methods.semisup import SemisupOptions, split_holdout
from transfer.sweep import run_sweep

TINY = dict(size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, translator_preset="tiny",
            source_iterations=2, finetune_iterations=2, device="cpu",
            transfer=TransferConfig(iterations=2, warmup_iterations=1, steps_per_epoch=2, batch_size=2))



@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(transfer.methods.METHODS, "selftrain", selftrain.METHOD)
    monkeypatch.setitem(transfer.methods.METHODS, "semisup", semisup.METHOD)


def _base(folders, out, **changes) -> ExperimentConfig:
    return ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(out), **TINY).replace(
        **changes)


def _quiet(message: str) -> None:
    pass


def _by(rows):
    return {(r["method"], r["fraction"]): r for r in rows}


def test_the_held_out_split_is_seeded_disjoint_and_leaves_images_to_fit():
    data = CXRData(images=torch.rand(7, 1, 8, 8), masks=torch.ones(7, 1, 8, 8), ids=[f"i{k}" for k in range(7)],
                   classes=("lungs",))
    fit, held = split_holdout(data, 0.3, seed=3)
    assert (len(fit), len(held)) == (5, 2) and not set(fit.ids) & set(held.ids)
    assert sorted(fit.ids + held.ids) == sorted(data.ids)
    assert split_holdout(data, 0.3, seed=3)[1].ids == held.ids
    assert [len(p) for p in split_holdout(data.subset([0, 1]), 0.9, seed=0)] == [1, 1]  # always one left to fit
    with pytest.raises(ValueError, match="expected at least 2 labelled images"):
        split_holdout(data.subset([0]), 0.3, seed=0)
    with pytest.raises(ValueError, match="expected choose in"):
        SemisupOptions(choose="best")
    with pytest.raises(ValueError, match="expected 0 < holdout < 1"):
        SemisupOptions(holdout=1.0)


def test_semisup_at_each_kind_of_fraction(folders, tmp_path, registered):
    rows = _by(run_sweep(_base(folders, tmp_path / "sweep"), ("finetune", "semisup", "selftrain"),
                         (0.0, 0.1, 0.5, 1.0), (0,), log=_quiet))
    zero, one, four = rows[("semisup", 0.0)], rows[("semisup", 0.1)], rows[("semisup", 0.5)]
    # 0%: selftrain itself
    assert zero["choice"] == "selftrain" and zero["jaccard"] == pytest.approx(rows[("selftrain", 0.0)]["jaccard"])
    # one labelled image: nothing to hold out, so exactly fine-tuning
    assert one["n_labelled"] == 1 and one["choice"] == "finetune" and "one labelled" in one["choice_reason"]
    assert one["per_image"]["jaccard"] == rows[("finetune", 0.1)]["per_image"]["jaccard"]
    # every training image labelled: nothing to self-train on, so exactly fine-tuning
    assert rows[("semisup", 1.0)]["choice"] == "finetune" and "nothing to self-train" in rows[("semisup", 1.0)][
        "choice_reason"]
    assert rows[("semisup", 1.0)]["per_image"]["jaccard"] == rows[("finetune", 1.0)]["per_image"]["jaccard"]
    # four: both candidates fitted on the fitting part and scored on the held-out labelled images only
    assert four["n_labelled"] == 4 and set(four["holdout_jaccard"]) == {"finetune", "semisup"}
    run = cell_dir(_base(folders, tmp_path / "sweep", method="semisup", fraction=0.5))
    labelled = json.loads((run / "splits.json").read_text())["labelled"]
    assert len(four["holdout_ids"]) == 1 and set(four["holdout_ids"]) <= set(labelled)
    assert (run / "holdout" / "segment").is_dir() and (run / "holdout" / "semisup" / "checkpoints").is_dir()
    if four["choice"] == "finetune":
        assert four["per_image"]["jaccard"] == rows[("finetune", 0.5)]["per_image"]["jaccard"]
    else:
        assert four["best_iteration"] >= 0 and four["views"]["finetune"] == pytest.approx(
            rows[("finetune", 0.5)]["jaccard"])


def test_when_the_check_keeps_fine_tuning_the_result_is_exactly_fine_tuning(folders, tmp_path, registered):
    # no held-out gain can exceed a whole Jaccard point: the check always keeps fine-tuning
    base = _base(folders, tmp_path / "sweep", method_options={"semisup": {"min_gain": 1.0}})
    rows = _by(run_sweep(base, ("finetune", "semisup"), (0.5,), (0,), log=_quiet))
    assert rows[("semisup", 0.5)]["choice"] == "finetune"
    assert rows[("semisup", 0.5)]["per_image"]["jaccard"] == rows[("finetune", 0.5)]["per_image"]["jaccard"]
    always = _by(run_sweep(base.replace(method_options={"semisup": {"choose": "semisup"}}), ("semisup",), (0.5,), (0,),
                           log=_quiet))[("semisup", 0.5)]
    assert always["choice"] == "semisup" and "holdout_jaccard" not in always
    assert not (cell_dir(base.replace(method="semisup", fraction=0.5, method_options={"semisup": {
        "choose": "semisup"}})) / "holdout").exists()


def test_the_cell_identity_holds_what_semisup_reads(folders, tmp_path, registered):
    base = _base(folders, tmp_path, method="semisup", fraction=0.5)
    for changed in (base.replace(finetune_iterations=9), base.replace(transfer=base.transfer.replace(iterations=9)),
                    base.replace(method_options={"semisup": {"holdout": 0.5}}),
                    base.replace(method_options={"selftrain": {"pseudo_threshold": 0.8}})):
        assert cell_key(changed) != cell_key(base)
    assert cell_key(base.replace(transfer=base.transfer.replace(warmup_iterations=9))) == cell_key(base)



def test_self_training_after_fine_tuning_is_not_worse_than_fine_tuning(phantom_folders, tmp_path, registered):
    # 5% labels (2 of the 48 training images), 32 px, M_A a depth-3 U-Net with 8 base channels trained 200 steps on a,
    # fine-tuning 100 steps, then 60 self-training iterations (batch 8, EMA 0.95). The candidate itself is tested
    # (choose="semisup"): the default returns either it or exactly fine-tuning (tested above), so it is not worse
    # than fine-tuning when the candidate is not. Measured through the sweep, semisup - finetune mean Jaccard on the
    # 16 held-out b test images (sd of the per-image differences 0.02-0.03, so a standard error of 0.006-0.008):
    # seed 0 (this test) +0.001 (0.793 vs 0.792; +0.005 with 100 iterations); seeds 1, 2: +0.002, +0.016. At 10%
    # labels (5 images): -0.018, +0.004, +0.001. The held-out check (default) kept fine-tuning at 5% on seeds 0-2
    # (+0.000, +0.000, +0.000) and self-training at 10% (the same -0.018, +0.004, +0.001): on phantoms at this
    # budget self-training after fine-tuning is a tie with fine-tuning, not a gain. Tolerance 0.02: about three
    # standard errors of the paired difference, and the largest loss measured in those six settings.
    base = ExperimentConfig(source=str(phantom_folders / "a"), target=str(phantom_folders / "b"),
                            out=str(tmp_path / "sweep"), size=32, segmenter_kwargs={"depth": 3, "base_channels": 8},
                            source_iterations=200, finetune_iterations=100, device="cpu", seed=0,
                            transfer=TransferConfig(iterations=60, steps_per_epoch=20, batch_size=8, ema_decay=0.95,
                                                    pseudo_start=0.3),
                            method_options={"semisup": {"choose": "semisup"}})
    rows = _by(run_sweep(base, ("finetune", "semisup"), (0.05,), (0,), log=_quiet))
    tuned, semi = rows[("finetune", 0.05)], rows[("semisup", 0.05)]
    assert semi["n_labelled"] == tuned["n_labelled"] == 2 and semi["n_test"] == 16 and semi["choice"] == "semisup"
    assert semi["views"]["finetune"] == pytest.approx(tuned["jaccard"])  # it starts from the finetune method's model
    assert semi["jaccard"] >= tuned["jaccard"] - 0.02, (semi["jaccard"], tuned["jaccard"])
