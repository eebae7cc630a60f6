"""augselftrain: selftrain started from the augsource segmenter, run through the sweep."""

from __future__ import annotations

import json

import torch

from transfer.cell import cell_dir, cell_key
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods import augselftrain, augsource, selftrain
from transfer.orchestrator import TransferOrchestrator
from transfer.sweep import run_sweep

TINY = dict(size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, source_iterations=2, device="cpu",
            transfer=TransferConfig(iterations=4, steps_per_epoch=2, batch_size=2))


def _base(folders, out, **changes) -> ExperimentConfig:
    return ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(out), **TINY).replace(
        **changes)


def test_the_loop_starts_from_the_augsource_segmenter_and_reads_no_test_label(folders, tmp_path, monkeypatch):
    starts = []
    original = selftrain.self_train

    def spied(ctx, config, start, *args, **kwargs):
        starts.append({k: v.clone() for k, v in start.state_dict().items()})
        return original(ctx, config, start, *args, **kwargs)

    monkeypatch.setattr(selftrain, "self_train", spied)
    rows = run_sweep(_base(folders, tmp_path), ("augselftrain",), (0.0, 0.5), (0,), log=lambda m: None)
    zero, half = sorted(rows, key=lambda r: r["fraction"])
    assert zero["n_labelled"] == 0 and half["n_labelled"] >= 1
    for row in rows:
        assert 0 <= row["jaccard"] <= 1 and row["iterations"] == 4 and row["augsource_iterations"] >= 1
        run = cell_dir(_base(folders, tmp_path, method="augselftrain", fraction=row["fraction"]))
        assert (run / "segment" / "checkpoints" / "last.pt").is_file()  # stage 1, the augsource segmenter
        assert (run / selftrain.ADAPTED_SEGMENTER).is_file()  # stage 2, the self-trained student
        history = json.loads((run / "metrics.json").read_text())["history"]
        assert history[0]["iteration"] == 0.0  # the augsource start is scored by the selection too
    # the start is the augsource segmenter of the same seed: the appearance-randomised training, not M_A
    m_a = torch.load(next(tmp_path.glob("source/**/segmenter.pt")), weights_only=True)["state_dict"]
    assert len(starts) == 2 and all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    assert any(not torch.equal(starts[0][k], m_a[k]) for k in m_a)


def test_the_loop_randomises_its_source_images_only_with_loop_appearance(folders, tmp_path, monkeypatch):
    seen = {}
    original = selftrain.self_train

    def spied(ctx, config, start, *args, **kwargs):
        seen[ctx.exp.method_options.get("augselftrain", {}).get("loop_appearance", True)] = kwargs[
            "source_appearance"]
        return original(ctx, config, start, *args, **kwargs)

    monkeypatch.setattr(selftrain, "self_train", spied)
    for loop in (True, False):
        run_sweep(_base(folders, tmp_path / str(loop), method_options={"augselftrain": {"loop_appearance": loop}}),
                  ("augselftrain",), (0.0,), (0,), log=lambda m: None)
    assert isinstance(seen[True], augsource.AugSourceOptions().augmenter().__class__) and seen[False] is None
    # in the loop the transform changes the source images of the supervised step, and only those
    orch = TransferOrchestrator(selftrain.IdentityTranslator(), torch.nn.Conv2d(1, 1, 1),
                                TransferConfig(iterations=1, batch_size=2, augment="none", weight_pseudo=0.0),
                                train_translator=False, source_appearance=lambda x: 1 - x)
    a = torch.rand(4, 1, 8, 8)
    orch._make_iterators(a, (a > 0.5).float(), a, None, 0)
    batch = orch._supervised_batch()
    drawn = a[orch.source.order[:2]]
    assert torch.equal(batch.a, 1 - drawn) and torch.equal(batch.y_a, (drawn > 0.5).float())


def test_the_cell_identity_holds_both_stages_options(folders, tmp_path):
    base = _base(folders, tmp_path, method="augselftrain")
    assert cell_key(base.replace(method_options={"augsource": {"gamma": [0.7, 1.4]}})) != cell_key(base)
    assert cell_key(base.replace(method_options={"selftrain": {"pseudo_threshold": 0.8}})) != cell_key(base)
    assert cell_key(base.replace(transfer=base.transfer.replace(iterations=9))) != cell_key(base)
    assert cell_key(base.replace(method_options={"augselftrain": {"loop_appearance": False}})) != cell_key(base)
    assert cell_key(base.replace(method_options={"fda": {"beta": 0.1}})) == cell_key(base)
    assert set(augsource.METHOD.options) <= set(augselftrain.METHOD.options)


def test_an_interrupted_cell_resumes_to_the_uninterrupted_result(folders, tmp_path, monkeypatch):
    (whole,) = run_sweep(_base(folders, tmp_path / "whole"), ("augselftrain",), (0.5,), (0,), log=lambda m: None)
    original, calls = TransferOrchestrator.iteration, []

    def dying(self):
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the loop's checkpoint of iteration 2
        calls.append(1)
        return original(self)

    monkeypatch.setattr(TransferOrchestrator, "iteration", dying)
    try:
        run_sweep(_base(folders, tmp_path / "cut"), ("augselftrain",), (0.5,), (0,), log=lambda m: None)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(TransferOrchestrator, "iteration", original)
    (resumed,) = run_sweep(_base(folders, tmp_path / "cut"), ("augselftrain",), (0.5,), (0,), log=lambda m: None)
    assert resumed["per_image"]["jaccard"] == whole["per_image"]["jaccard"]
