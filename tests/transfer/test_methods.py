"""The method registry: a new method is one function and one entry; cells are keyed by their configuration."""

from __future__ import annotations

import json

import pytest
import torch

from segmentation.config import SegmentationConfig
from segmentation.data.dataset import CXRData, load_dataset
from transfer.cell import cell_dir, cell_identity, cell_key, run_cell
from transfer.config import DARK_GATE, ExperimentConfig, TransferConfig
from transfer.methods import METHODS, CellContext, Method, MethodOutput, get_method
from transfer.methods.base import score
from transfer.report import write_report
from transfer.results import read_results
from transfer.sweep import run_sweep

TINY = dict(size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, translator_preset="tiny",
            source_iterations=2, finetune_iterations=1, device="cpu",
            transfer=TransferConfig(iterations=2, warmup_iterations=1, steps_per_epoch=2, batch_size=2))



def _base(folders, out) -> ExperimentConfig:
    return ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(out), **TINY)


def _constant(ctx: CellContext) -> MethodOutput:
    """A toy method: every pixel foreground with probability 0.7 (it sees the context, never the test split)."""
    assert ctx.target.label_reads == 0 and ctx.target_val is not None
    labelled = ctx.labelled
    predict = lambda images: torch.full((len(images), len(ctx.exp.classes), *images.shape[-2:]), 0.7)  # noqa: E731
    return MethodOutput(predict=predict, config=ctx.seg_config,
                        logs={"n_seen": 0 if labelled is None else len(labelled)})


def test_a_toy_method_added_to_the_registry_runs_in_a_sweep(folders, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "constant", Method("constant", _constant, "everything is lung"))
    # without the dark gate (tested below), the constant mask's Jaccard is known exactly
    rows = run_sweep(_base(folders, tmp_path / "sweep").replace(dark_gate=0.0), ("constant", "source_only"), (0.0, 0.5),
                     (0,), log=lambda m: None)
    toy = sorted((r for r in rows if r["method"] == "constant"), key=lambda r: r["fraction"])
    assert [r["fraction"] for r in toy] == [0.0, 0.5] and toy[0]["n_seen"] == 0 and toy[1]["n_seen"] >= 1
    # the constant mask covers the image: its Jaccard is the lung share of each test image
    masks = load_dataset(folders / "b", size=32).subset(json.loads((tmp_path / "sweep" / "splits.json").read_text())
                                                         ["test"]).masks
    assert toy[0]["jaccard"] == pytest.approx(float(masks.mean(dim=(1, 2, 3)).mean()), abs=1e-6)
    assert "constant" in write_report(tmp_path / "sweep")["markdown"].read_text()


def test_the_dark_gate_scores_every_predictor_without_the_padding_and_keys_only_when_set(folders, tmp_path):
    images = torch.full((2, 1, 16, 16), 0.5)
    images[..., 12:] = 0.0  # black padding
    masks = torch.zeros(2, 1, 16, 16)
    masks[..., 2:10, 2:6] = 1.0  # 32 lung pixels inside the 192-pixel field
    data = CXRData(images=images, masks=masks, ids=["x", "y"], classes=("lungs",))
    config = SegmentationConfig(classes=("lungs",), size=16)
    everywhere = lambda x: torch.full((len(x), 1, *x.shape[-2:]), 0.9)  # noqa: E731
    assert [r["jaccard/lungs"] for r in score(everywhere, config, data)] == pytest.approx([32 / 256] * 2)
    gated = score(everywhere, config.replace(dark_gate=0.02), data)
    assert [r["jaccard/lungs"] for r in gated] == pytest.approx([32 / 192] * 2)
    base = _base(folders, tmp_path)
    assert base.dark_gate == DARK_GATE > 0 and cell_identity(base)["dark_gate"] == DARK_GATE
    off = base.replace(dark_gate=0.0)
    assert "dark_gate" not in cell_identity(off)  # the cells measured before the gate (all without it) keep their keys
    assert cell_key(off) != cell_key(base)
    with pytest.raises(ValueError, match=r"expected 0 <= dark_gate < 1, got 1.5"):
        base.replace(dark_gate=1.5)


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"expected a method in \[.*'finetune'.*\], got 'nope'"):
        get_method("nope")


def test_a_changed_configuration_does_not_reuse_a_finished_cell(folders, tmp_path):
    base = _base(folders, tmp_path / "sweep").replace(method="finetune", fraction=0.5)
    first = run_sweep(base, ("finetune",), (0.5,), (0,), log=lambda m: None)
    again = run_sweep(base, ("finetune",), (0.5,), (0,), log=lambda m: None)
    assert [r["key"] for r in again] == [r["key"] for r in first]  # same settings: read back
    changed = base.replace(finetune_lr=base.finetune_lr * 3)
    assert cell_key(changed) != cell_key(base) and cell_dir(changed) != cell_dir(base)
    # a setting finetune does not read (the transfer loop's) leaves its cell alone
    assert cell_key(base.replace(transfer=base.transfer.replace(iterations=7))) == cell_key(base)
    run_sweep(changed, ("finetune",), (0.5,), (0,), log=lambda m: None)
    rows = read_results(tmp_path / "sweep" / "results.jsonl")
    assert len(rows) == 2 and len({r["identity"] for r in rows}) == 2
    assert json.loads((cell_dir(changed) / "identity.json").read_text())["finetune_lr"] == changed.finetune_lr
    with pytest.raises(ValueError, match="expected one configuration per cell"):
        write_report(tmp_path / "sweep")
    paths = write_report(tmp_path / "sweep", identities=[rows[1]["identity"]])
    assert paths["markdown"].is_file()


def test_a_method_that_needs_labels_is_refused_at_fraction_zero(folders, tmp_path):
    with pytest.raises(ValueError, match="expected fraction > 0 for method 'scratch'"):
        run_cell(_base(folders, tmp_path).replace(method="scratch", fraction=0.0))


def test_paper_preset_runs_end_to_end(folders, tmp_path):
    paper = TransferConfig.preset("paper", iterations=2)
    assert paper.predict_views == ("translated",) and paper.ema_decay == 0 and paper.weight_pseudo == 0
    assert paper.augment == "none" and paper.selection == "paper_target_val" and paper.loss == "bce"
    (row,) = run_sweep(_base(folders, tmp_path / "sweep"), ("paper",), (0.0,), (0,), log=lambda m: None)
    assert row["method"] == "paper" and row["selection"] == "paper_target_val" and 0 <= row["jaccard"] <= 1
    assert row["views"]["paper"] == pytest.approx(row["jaccard"])  # its prediction is the paper's view
    with pytest.raises(ValueError, match="expected a preset in"):
        TransferConfig.preset("fancy")


def test_the_ten_line_example_of_the_architecture_page_adds_a_working_method(folders, tmp_path, monkeypatch):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md").read_text()
    code = text.split("Adding a method, in ten lines", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    namespace: dict = {}
    exec(compile(code, "ARCHITECTURE.md", "exec"), namespace)  # noqa: S102 - the documented example, run as written
    monkeypatch.setitem(METHODS, "mine", namespace["METHOD"])
    (row,) = run_sweep(_base(folders, tmp_path / "sweep"), ("mine",), (0.5,), (0,), log=lambda m: None)
    assert row["method"] == "mine" and row["n_labelled"] >= 1 and 0 <= row["jaccard"] <= 1
