"""Training, evaluation, inference and save/load of segmenters (segmentation.training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from runtime import load_checkpoint, load_config, save_config
from segmentation.data.dataset import CXRData, load_dataset
from segmentation.data.phantoms import make_phantoms
from segmentation.training import (
    SegmentationConfig,
    build_segmenter,
    cross_validate,
    evaluate_segmenter,
    load_segmenter,
    predict_masks,
    predict_probabilities,
    save_segmenter,
    summarize_rows,
    train_segmenter,
)

@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast as two on an idle machine and far faster on a busy one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CLASSES = ("lungs", "heart")
TINY = {"depth": 2, "base_channels": 8}


def lungs_and_heart(data: CXRData) -> CXRData:
    """Phantom organs merged into the ("lungs", "heart") classes."""
    m = data.masks
    masks = torch.stack([torch.maximum(m[:, 0], m[:, 1]), m[:, 2]], dim=1)
    return CXRData(data.images, masks, data.ids, CLASSES, data.spacing_mm)


def tiny_config(**changes) -> SegmentationConfig:
    base = dict(model="unet", model_kwargs=TINY, classes=CLASSES, size=32, epochs=3, batch_size=4, lr=3e-3,
                progress=False, postprocess=False)
    base.update(changes)
    return SegmentationConfig(**base)


def prior_jaccard(train: CXRData, test: CXRData) -> torch.Tensor:
    """Per-class Jaccard of the best image-independent guess: the pixel-wise majority mask of the training set."""
    prior = (train.masks.mean(0, keepdim=True) > 0.5).expand_as(test.masks)
    target = test.masks > 0.5
    inter = (prior & target).flatten(2).sum(-1).float()
    union = (prior | target).flatten(2).sum(-1).float().clamp_min(1)
    return (inter / union).mean(0)


class Threshold(nn.Module):
    """A toy segmenter: logit = weight * (x - 0.5) + bias, so without normalisation pixels above 0.5 are foreground."""

    def __init__(self, channels: int = 1, bias: float = 0.0, weight: float = 50.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 1)
        nn.init.constant_(self.conv.weight, weight)
        nn.init.constant_(self.conv.bias, -weight * 0.5 + bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 0}, "expected epochs >= 1, got 0"),
    ({"batch_size": 0}, "expected batch_size >= 1, got 0"),
    ({"lr": 0.0}, "expected lr > 0, got 0.0"),
    ({"mode": "softmax"}, "expected mode in"),
    ({"normalization": "zscore"}, "expected normalization in"),
    ({"threshold": 1.0}, r"expected threshold in \(0, 1\), got 1.0"),
    ({"classes": ()}, "expected at least one class"),
    ({"classes": ("lungs", "lungs")}, "expected distinct classes"),
    ({"patience": 0}, "expected patience >= 1 or None, got 0"),
    ({"scheduler": "step"}, "expected scheduler in"),
    ({"scheduler": "plateau"}, "expected a patience with scheduler='plateau'"),
    ({"mode": "multiclass", "mixup_alpha": 0.4}, "expected mixup_alpha = 0 with mode 'multiclass'"),
    ({"model_kwargs": {"out_channels": 3}}, "expected model_kwargs without in_channels/out_channels"),
    ({"dark_gate": 1.0}, r"expected dark_gate in \[0, 1\), got 1.0"),
])
def test_config_rejects_bad_arguments(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(mode="multiclass", norm_stats=(0.5, 0.25))
    save_config(config, tmp_path / "config.json")
    assert load_config(SegmentationConfig, tmp_path / "config.json") == config
    assert config.out_channels == 3 and tiny_config().out_channels == 2


def test_predict_masks_hand_computed_and_any_size():
    config = tiny_config(classes=("lungs",), normalization="none", size=32)
    images = torch.zeros(3, 1, 40, 24)
    images[:, :, :, 12:] = 1.0
    masks = predict_masks(Threshold(), images, config, batch_size=2)
    assert masks.shape == (3, 1, 40, 24) and masks.dtype == torch.bool
    assert masks[..., 14:].all() and not masks[..., :10].any()  # away from the resampled edge
    with pytest.raises(ValueError, match=r"expected images as a tensor \[N, 1, H, W\], got \(3, 40, 24\)"):
        predict_masks(Threshold(), images[:, 0], config)


def test_the_dark_gate_removes_the_padding_from_predictions_and_travels_with_the_model(tmp_path):
    config = tiny_config(classes=("lungs",), normalization="none", size=16, dark_gate=0.02)
    images = torch.full((2, 1, 32, 32), 0.6)
    images[..., :8] = 0.0  # black film padding, which the model calls foreground
    confident = Threshold(bias=5.0, weight=0.0)  # foreground everywhere
    gated = predict_probabilities(confident, images, config)
    assert not gated[..., :8].any() and (gated[..., 8:] > 0.99).all()
    assert (predict_probabilities(confident, images, config.replace(dark_gate=0.0))[..., :8] > 0.99).all()
    model = build_segmenter(config)
    _, loaded, _ = load_segmenter(save_segmenter(model, tmp_path / "model.pt", config, {}))
    assert loaded.dark_gate == 0.02


def test_ensemble_averages_probabilities_then_thresholds():
    config = tiny_config(classes=("lungs",), normalization="none", size=8)
    x = torch.full((1, 1, 8, 8), 0.5)  # logit = bias exactly
    confident, unsure, negative = Threshold(bias=math.log(9.0)), Threshold(bias=math.log(3 / 7)), Threshold(bias=-3.0)
    # sigmoid: 0.9 and 0.3 average to 0.6 > 0.5; 0.9 and 0.047 average to 0.474 < 0.5.
    probs = predict_probabilities([confident, unsure], x, config)
    assert torch.allclose(probs, torch.full_like(probs, 0.6), atol=1e-5)
    assert predict_masks([confident, unsure], x, config).all()
    assert not predict_masks([confident, negative], x, config).any()
    with pytest.raises(ValueError, match="expected a segmenter or a non-empty list of segmenters"):
        predict_masks([], x, config)


def test_multiclass_masks_are_exclusive():
    config = tiny_config(classes=("lungs",), mode="multiclass", normalization="none", size=8)
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0

    class TwoWay(nn.Module):
        def forward(self, x):  # background logit for dark pixels, class 1 for bright ones
            return torch.cat([1 - 2 * x, 2 * x - 1], dim=1) * 10

    masks = predict_masks(TwoWay(), x, config)
    assert masks.shape == (1, 1, 8, 8) and masks[..., 5:].all() and not masks[..., :3].any()


def test_tiny_unet_learns_phantoms():
    torch.manual_seed(0)
    train = lungs_and_heart(make_phantoms(24, 32, seed=0))
    val = lungs_and_heart(make_phantoms(8, 32, seed=1))
    test = lungs_and_heart(make_phantoms(16, 32, seed=2))
    config = tiny_config(epochs=15, lr=1e-2)
    model = build_segmenter(config)
    result = train_segmenter(model, train, val, config)
    rows = evaluate_segmenter(model, test, config.replace(postprocess=True))
    assert len(rows) == 16 and rows[0]["id"] == test.ids[0]
    summary = summarize_rows(rows)
    prior = prior_jaccard(train, test)
    # Bars: the majority-vote prior mask (no image information) scores 0.78 (lungs) and 0.72 (heart) on these
    # phantoms; 15 epochs reach about 0.92 / 0.81. A model must beat the prior clearly (+0.07 / +0.04, several
    # per-image standard errors) and reach absolute bars a few points under what it reaches, for seed noise.
    assert summary["jaccard/lungs"]["mean"] > max(0.86, float(prior[0]) + 0.07)
    assert summary["jaccard/heart"]["mean"] > max(0.76, float(prior[1]) + 0.04)
    assert result.best_val_dice == max(h["val_dice"] for h in result.history if "val_dice" in h)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def _resume_config(**changes) -> SegmentationConfig:
    return tiny_config(classes=("lungs",), epochs=4, batch_size=2, steps_per_epoch=3, scheduler="cosine",
                       model_kwargs={**TINY, "dropout": 0.2}, augment=True, augment_kwargs={"seed": 5},
                       mixup_alpha=0.2, checkpoint_every=2, **changes)


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    data = lungs_and_heart(make_phantoms(8, 32, seed=3))
    data = CXRData(data.images, data.masks[:, :1], data.ids, ("lungs",))
    train, val = data.subset(range(6)), data.subset([6, 7])
    config = _resume_config()

    torch.manual_seed(1)
    reference = build_segmenter(config)
    train_segmenter(reference, train, val, config, run_dir=tmp_path / "straight")

    torch.manual_seed(1)
    model = build_segmenter(config)
    calls = {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += module.training
        if calls["n"] == 2 * 3 + 2:  # second training step of the third epoch; the last checkpoint is epoch 2's
            raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(model, train, val, config, run_dir=tmp_path / "cut")
    handle.remove()
    with pytest.raises(ValueError, match="already holds a run"):
        train_segmenter(build_segmenter(config), train, val, config, run_dir=tmp_path / "cut")

    torch.manual_seed(99)  # a different initialisation: every weight must come from the checkpoint
    resumed = build_segmenter(config)
    result = train_segmenter(resumed, train, val, config, run_dir=tmp_path / "cut", resume=True)
    assert len(result.history) == 4
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # the best weights, returned in the model
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for name, a in straight["model"].items():
        assert torch.equal(a, cut["model"][name]), name  # the last epoch's weights
    assert straight["history"][-1]["train_loss"] == cut["history"][-1]["train_loss"]
    with pytest.raises(ValueError, match=r"different \['lr'\]"):
        train_segmenter(resumed, train, val, config.replace(lr=1e-2), run_dir=tmp_path / "cut", resume=True)


def test_early_stopping_keeps_the_best_checkpoint(tmp_path):
    phantoms = lungs_and_heart(make_phantoms(12, 32, seed=4))
    data = CXRData(phantoms.images, phantoms.masks[:, :1], phantoms.ids, ("lungs",))
    train = data.subset(range(8))
    # Validation labels are the complement of the lungs: the better the model learns, the worse its validation
    # Dice, so the best epoch comes early and early stopping must end the run `patience` epochs later.
    val = data.subset(range(8, 12))
    val = CXRData(val.images, 1 - val.masks, val.ids, val.classes)
    config = tiny_config(classes=("lungs",), epochs=12, patience=2)
    torch.manual_seed(0)
    model = build_segmenter(config)
    result = train_segmenter(model, train, val, config, run_dir=tmp_path)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 12
    assert result.best_val_dice == max(h["val_dice"] for h in result.history)
    loaded, loaded_config, metadata = load_segmenter(result.best_checkpoint)
    assert metadata["epoch"] == result.best_epoch and loaded_config == result.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    for name in ("config.json", "history.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tb").iterdir())
    again = train_segmenter(build_segmenter(config), train, val, config, run_dir=tmp_path, resume=True)
    assert again.stopped_early and len(again.history) == len(result.history)  # a finished run stays finished
    assert all(torch.equal(a, b) for a, b in zip(again.best_state.values(), result.best_state.values()))


def test_save_and_load_segmenter_predict_the_same(tmp_path):
    config = tiny_config(normalization="dataset", norm_stats=(0.4, 0.2))
    model = build_segmenter(config)
    path = save_segmenter(model, tmp_path / "model.pt", config, {"note": "x"})
    loaded, loaded_config, metadata = load_segmenter(path)
    images = make_phantoms(2, 32).images
    assert loaded_config == config and metadata == {"note": "x"}
    assert torch.equal(predict_probabilities(model, images, config), predict_probabilities(loaded, images, config))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a segmenter file"):
        load_segmenter(tmp_path / "other.pt")


def test_training_rejects_mismatched_data():
    data = lungs_and_heart(make_phantoms(2, 32))
    with pytest.raises(ValueError, match=r"expected training classes \('lungs',\)"):
        train_segmenter(build_segmenter(tiny_config(classes=("lungs",))), data, None, tiny_config(classes=("lungs",)))
    with pytest.raises(ValueError, match="expected training masks, got none"):
        train_segmenter(build_segmenter(tiny_config()), data.without_masks(), None, tiny_config())


def test_cross_validation_holds_out_every_image_once(tmp_path):
    data = lungs_and_heart(make_phantoms(6, 32, seed=5))
    config = tiny_config(epochs=1)
    result = cross_validate(data, config, k=3, val_fraction=0.25, run_dir=tmp_path)
    assert sorted(r["id"] for r in result.rows) == sorted(data.ids)
    assert [r["fold"] for r in result.fold_means] == [0, 1, 2]
    assert result.summary["jaccard/lungs"]["n"] == 3
    assert (tmp_path / "cv_rows.csv").is_file() and (tmp_path / "fold_2" / "checkpoints" / "best.pt").is_file()
    with pytest.raises(ValueError, match=r"expected 2 <= k <= 6"):
        cross_validate(data, config, k=7)


@pytest.mark.realdata
def test_unet_learns_a_handful_of_real_jsrt_images(real_data, tmp_path):
    source = Path(real_data) / "jsrt"
    ids = sorted(p.stem for p in (source / "images").glob("*.png"))[::12][:20]  # 20 images spread over the set
    folder = tmp_path / "jsrt"  # symbolic links, so that load_dataset reads only these
    for sub in ("images", "masks/left_lung", "masks/right_lung"):
        (folder / sub).mkdir(parents=True)
        for i in ids:
            (folder / sub / f"{i}.png").symlink_to(source / sub / f"{i}.png")
    data = load_dataset(folder, classes=("lungs",), size=64)
    train, val, test = data.subset(range(12)), data.subset(range(12, 14)), data.subset(range(14, 20))
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 3, "base_channels": 8}, classes=("lungs",),
                                size=64, epochs=25, batch_size=4, lr=3e-3, progress=False)
    torch.manual_seed(0)
    model = build_segmenter(config)
    train_segmenter(model, train, val, config)
    jaccard = summarize_rows(evaluate_segmenter(model, test, config))["jaccard/lungs"]["mean"]
    prior = float(prior_jaccard(train, test)[0])
    # The mean-shape prior already overlaps lungs well (~0.7) since radiographs are roughly aligned; a U-Net
    # that reads the images gets ~0.85 on 6 held-out images after 12 training images at 64x64.
    assert jaccard > max(0.8, prior + 0.05), (jaccard, prior)


def test_multiclass_training_with_dataset_normalisation_and_augmentation(tmp_path):
    data = lungs_and_heart(make_phantoms(6, 32, seed=6))
    config = tiny_config(mode="multiclass", loss="ce", normalization="dataset", augment=True, epochs=2,
                         scheduler="plateau", patience=2)
    torch.manual_seed(0)
    model = build_segmenter(config)
    result = train_segmenter(model, data.subset(range(4)), data.subset([4, 5]), config, run_dir=tmp_path)
    mean, std = result.config.norm_stats
    assert mean == pytest.approx(float(data.images[:4].mean()), rel=1e-4) and std > 0  # from training images only
    loaded, loaded_config, _ = load_segmenter(result.best_checkpoint)
    assert loaded_config.norm_stats == result.config.norm_stats
    masks = predict_masks(loaded, data.images[4:], loaded_config)
    assert masks.shape == (2, 2, 32, 32) and not (masks[:, 0] & masks[:, 1]).any()  # exclusive labels


def _ddp_worker(rank: int, world: int, port: int, data_dir: str, run_dir: str) -> None:
    import os

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from segmentation.training import train_from_folder

    config = tiny_config(classes=("lungs",), epochs=2, batch_size=2, device="cpu")
    train_from_folder(data_dir, config, run_dir, fractions=(0.6, 0.2, 0.2))


def test_train_from_folder_under_two_ddp_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from segmentation.data.phantoms import write_phantom_dataset

    data = write_phantom_dataset(tmp_path / "data", n=10, size=32, seed=7)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data), str(tmp_path / "run")), nprocs=2, join=True)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # each rank took 3 of the 6 training images per epoch
    _, config, _ = load_segmenter(tmp_path / "run" / "model.pt")
    assert config.classes == ("lungs",)
    assert (tmp_path / "run" / "test_metrics.csv").is_file()
