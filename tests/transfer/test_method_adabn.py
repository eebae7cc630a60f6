"""adabn: M_A with BatchNorm statistics re-estimated on the target images, run through the sweep."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.phantoms import make_phantoms
from segmentation.data.preprocessing import normalize
from segmentation.models import create_segmenter
from segmentation.training import SegmentationConfig, load_segmenter
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods import adabn
from transfer.methods.base import method_options
from transfer.protocol import TargetView
from transfer.sweep import run_sweep

from method_settings import LEARN_METHOD, TINY_METHOD

TINY = dict(TINY_METHOD, transfer=TransferConfig(batch_size=2))
LEARN = dict(LEARN_METHOD, transfer=TransferConfig(batch_size=8))




def _config() -> SegmentationConfig:
    return SegmentationConfig(model="unet", model_kwargs={"depth": 2, "base_channels": 4}, size=32, device="cpu")


def test_batch_norm_statistics_become_the_target_images_own():
    torch.manual_seed(0)
    model = create_segmenter("unet", in_channels=1, out_channels=1, depth=2, base_channels=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = make_phantoms(8, 32, "b", 3).images
    adapted = adabn.adapt_batch_norm(model, images, _config(), batch_size=4)
    conv = next(m for m in adapted.modules() if isinstance(m, torch.nn.Conv2d))
    norm = adabn.batch_norm_layers(adapted)[0]
    with torch.no_grad():
        features = conv(normalize(images, "per_image"))  # the first BatchNorm's input
    halves = features.split(4)
    # momentum=None: the average of the two batches' statistics (equal batches: the mean over all 8 images)
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    expected_var = torch.stack([h.var(dim=(0, 2, 3), unbiased=True) for h in halves]).mean(0)
    assert torch.allclose(norm.running_var, expected_var, rtol=1e-4, atol=1e-6)
    assert int(norm.num_batches_tracked) == 2 and norm.momentum == 0.1 and not adapted.training
    after = adapted.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if "running" not in k and "num_batches" not in k)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # M_A itself is untouched


def test_a_segmenter_without_batch_norm_is_refused_in_one_line(folders, tmp_path):
    base = ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(tmp_path), **{
        **TINY, "segmenter_kwargs": {"depth": 2, "base_channels": 4, "norm": "instance"}})
    with pytest.raises(ValueError, match=r"expected a segmenter with BatchNorm layers for adabn, got 'unet' .*"
                                         r"norm='batch'.*'histmatch'") as error:
        run_sweep(base, ("adabn",), (0.0,), (0,), log=lambda m: None)
    assert "\n" not in str(error.value)


def test_options_are_typed_and_checked():
    exp = ExperimentConfig(method_options={"adabn": {"batch_size": 4}})
    assert method_options(exp, "adabn", adabn.AdaBNOptions).batch_size == 4
    with pytest.raises(ValueError, match="expected batch_size >= 1, got 0"):
        adabn.AdaBNOptions(batch_size=0)
    with pytest.raises(ValueError, match=r"unknown AdaBNOptions field\(s\) \['beta'\]"):
        method_options(ExperimentConfig(method_options={"adabn": {"beta": 1}}), "adabn", adabn.AdaBNOptions)
    assert "method_options.adabn" in adabn.METHOD.options and adabn.METHOD.fraction_free


def test_runs_in_a_sweep_once_per_seed_without_reading_a_target_label(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(TargetView, "labelled", lambda self: pytest.fail("adabn read target labels"))
    base = ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(tmp_path), **TINY)
    (row,) = run_sweep(base, ("adabn",), (0.0, 0.5), (0,), log=lambda m: None)
    assert row["method"] == "adabn" and row["fraction"] == 0.0 and row["n_labelled"] == 0
    assert row["adabn_images"] == 9 and row["adabn_layers"] == 10 and 0 <= row["jaccard"] <= 1


def test_on_held_out_domain_b_it_re_estimates_statistics_without_collapsing(learning_folders, tmp_path):
    """Measured (seed 0, 300 source iterations, 12 held-out b test images): source-only Jaccard 0.558 / Dice 0.678,
    adabn 0.549 / 0.668. AdaBN does not beat source-only on these phantoms: over seeds 0-5 it won once (mean
    Jaccard change -0.04), because what hurts M_A on domain b is its wider field of view and bright collimator
    borders (b's grey levels alone cost M_A almost nothing), which change the feature statistics for reasons of
    content that AdaBN then normalises away. So this asserts what holds: the statistics move to the target's and
    the Dice stays within 0.1 of source-only (it stayed within 0.08 at every seed)."""
    base = ExperimentConfig(source=str(learning_folders / "a40"), target=str(learning_folders / "b60"),
                            out=str(tmp_path), **LEARN)
    rows = {r["method"]: r for r in run_sweep(base, ("source_only", "adabn"), (0.0,), (0,), log=lambda m: None)}
    source, adapted = rows["source_only"], rows["adabn"]
    assert adapted["dice"] > source["dice"] - 0.1 and adapted["dice"] > 0.55
    m_a, config, _ = load_segmenter(tmp_path / "source" / "s0" / "segmenter.pt")
    target = make_phantoms(36, 32, "b", 1).images
    first = adabn.batch_norm_layers(adabn.adapt_batch_norm(m_a, target, config))[0]
    shift = (first.running_mean - adabn.batch_norm_layers(m_a)[0].running_mean).abs().max()
    assert float(shift) > 1e-3
