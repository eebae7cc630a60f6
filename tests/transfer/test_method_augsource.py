"""augsource: a source segmenter trained with strong appearance randomisation, run through the sweep."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.augmentation import AppearanceAugmenter
from segmentation.data.dataset import CXRData
from segmentation.data.phantoms import make_phantoms
from segmentation.training import SegmentationConfig, build_segmenter, train_segmenter
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods import augsource
from transfer.methods.base import method_options
from transfer.protocol import TargetView
from transfer.sweep import run_sweep

from method_settings import LEARN_METHOD, TINY_METHOD

TINY = dict(TINY_METHOD, transfer=TransferConfig(batch_size=2))
LEARN = dict(LEARN_METHOD, transfer=TransferConfig(batch_size=8))




def test_appearance_augmenter_keeps_shape_and_range_and_repeats_with_its_seed():
    images = make_phantoms(4, 32, "a", 0).images
    out = AppearanceAugmenter(seed=3, p=1.0)(images)
    assert out.shape == images.shape and out.dtype == images.dtype and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert torch.equal(out, AppearanceAugmenter(seed=3, p=1.0)(images))
    assert not torch.allclose(out, AppearanceAugmenter(seed=4, p=1.0)(images))
    assert not torch.allclose(out, images, atol=0.02)
    assert torch.equal(AppearanceAugmenter(p=0.0)(images), images)  # nothing drawn is applied
    same = AppearanceAugmenter(p=1.0)
    assert torch.equal(same(images, torch.Generator().manual_seed(5)), same(images, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": (2.0, 0.5)}, r"expected gamma = \(min, max\) with 0.001 <= min <= max"),
    ({"resolution": (0.5, 2.0)}, r"expected resolution = \(min, max\) with 1 <= min"),
    ({"noise": -0.1}, "expected noise >= 0, got -0.1"),
    ({"p": 1.5}, r"expected p in \[0, 1\], got 1.5"),
])
def test_bad_ranges_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AppearanceAugmenter(**kwargs)
    with pytest.raises(ValueError, match=message):
        augsource.AugSourceOptions(**kwargs)


def test_options_are_typed_and_json_lists_become_ranges():
    exp = ExperimentConfig(method_options={"augsource": {"gamma": [0.7, 1.4], "p": 0.8}})
    options = method_options(exp, "augsource", augsource.AugSourceOptions)
    assert options.gamma == (0.7, 1.4) and options.augmenter().p == 0.8
    assert augsource.METHOD.options == ("method_options.augsource", "source_iterations", "source_lr")


def _lungs(n: int, seed: int) -> CXRData:
    data = make_phantoms(n, 32, "a", seed)
    return CXRData(images=data.images, masks=data.masks[:, :2].amax(1, keepdim=True), ids=data.ids,
                   classes=("lungs",))


def test_training_with_appearance_resumes_exactly_and_leaves_a_plain_segmenter(tmp_path):
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 2, "base_channels": 4}, size=32, epochs=2,
                                steps_per_epoch=2, batch_size=2, augment=True, seed=1, device="cpu", progress=False,
                                overlays=0)
    train = _lungs(6, 0)

    def trained(run_dir, epochs: int) -> torch.nn.Module:
        torch.manual_seed(config.seed)
        model = build_segmenter(config)
        augsource.train_with_appearance(model, train, None, config.replace(epochs=epochs),
                                        AppearanceAugmenter(p=1.0), run_dir=run_dir)
        return model

    straight = trained(tmp_path / "straight", 2)
    trained(tmp_path / "resumed", 1)
    resumed = trained(tmp_path / "resumed", 2)  # the second epoch, from the first one's checkpoint
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    assert not straight._forward_pre_hooks  # the hook is gone: prediction sees the images as they are
    torch.manual_seed(config.seed)
    plain = build_segmenter(config)
    augsource.train_with_appearance(plain, train, None, config, torch.nn.Identity())
    # the hook's round trip (normalised input -> grey levels -> normalised input) changes nothing but rounding
    torch.manual_seed(config.seed)
    reference = build_segmenter(config)
    train_segmenter(reference, train, None, config)
    assert all(torch.allclose(v, reference.state_dict()[k], atol=1e-4) for k, v in plain.state_dict().items())


def test_runs_in_a_sweep_once_per_seed_without_reading_a_target_label(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(TargetView, "labelled", lambda self: pytest.fail("augsource read target labels"))
    base = ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(tmp_path), **TINY)
    (row,) = run_sweep(base, ("augsource",), (0.0, 0.5), (0,), log=lambda m: None)
    assert row["method"] == "augsource" and row["fraction"] == 0.0 and row["n_labelled"] == 0
    assert 0 <= row["jaccard"] <= 1
    assert next(tmp_path.glob("cells/augsource/*/*/segment/checkpoints/last.pt")).is_file()  # in the cell folder


def test_beats_source_only_on_held_out_domain_b(learning_folders, tmp_path):
    """Measured (seed 0, 300 source iterations, 12 held-out b test images neither model saw): source-only Jaccard
    0.558 / Dice 0.678, augsource 0.641 / 0.746 (+0.083 Jaccard). Over seeds 0-5 augsource won at every seed
    (+0.01 to +0.19 Jaccard, mean +0.09). Since the decoded cache stores 16-bit grey levels (2026-12-02), seed 0's
    source-only model trains to 0.601 (augsource still 0.641, +0.040): the Jaccard margin asserted is half that gain,
    the Dice margin halved with it."""
    base = ExperimentConfig(source=str(learning_folders / "a40"), target=str(learning_folders / "b60"),
                            out=str(tmp_path), **LEARN)
    rows = {r["method"]: r for r in run_sweep(base, ("source_only", "augsource"), (0.0,), (0,), log=lambda m: None)}
    assert rows["augsource"]["jaccard"] > rows["source_only"]["jaccard"] + 0.02, rows
    assert rows["augsource"]["dice"] > rows["source_only"]["dice"] + 0.015, rows
