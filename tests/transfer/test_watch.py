"""TensorBoard shows whether the GAN converges: held-out KID, histogram distance, grids, one line per evaluation."""

from __future__ import annotations

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segmentation.data.phantoms import write_phantom_dataset
from transfer.config import ExperimentConfig, TransferConfig
from transfer.sweep import run_sweep
from translation import create_translator
from translation.monitor import TranslationMonitor


def _tags(folder) -> dict[str, list[str]]:
    tags: dict[str, set[str]] = {"scalars": set(), "images": set()}
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        tags["scalars"] |= set(acc.Tags()["scalars"])
        tags["images"] |= set(acc.Tags()["images"])
    return {k: sorted(v) for k, v in tags.items()}


def test_a_transfer_cell_logs_kid_histograms_grids_and_segmentation(tmp_path, capsys):
    write_phantom_dataset(tmp_path / "a", 10, 32, "a", 0)
    write_phantom_dataset(tmp_path / "b", 15, 32, "b", 1)
    base = ExperimentConfig(source=str(tmp_path / "a"), target=str(tmp_path / "b"), out=str(tmp_path / "sweep"),
                            size=32, segmenter_kwargs={"depth": 2, "base_channels": 4}, translator_preset="tiny",
                            source_iterations=2, finetune_iterations=1, device="cpu",
                            transfer=TransferConfig(iterations=4, warmup_iterations=2, steps_per_epoch=2,
                                                    batch_size=2))
    run_sweep(base, ("transfer",), (0.5,), (0,), log=lambda m: None)
    tags = _tags(tmp_path / "sweep")
    for tag in ("warmup/monitor/kid/b2a", "warmup/monitor/hist/a2b", "transfer/monitor/kid/a2b",
                "transfer/monitor/hist/b2a", "transfer/discriminative/loss", "selection/score"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    for tag in ("warmup/monitor/images/b_translated_cycled", "transfer/monitor/images/a_translated",
                "transfer/images/segmentation"):
        assert tag in tags["images"], (tag, tags["images"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("warmup ", "transfer "))]
    assert any(line.startswith("transfer 4/4") and "kid/b2a" in line and "score" in line for line in lines), lines


def test_monitoring_changes_nothing_the_run_computes():
    torch.manual_seed(0)
    translator = create_translator("cyclegan", preset="tiny")
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    monitor = TranslationMonitor(images[:3], images[3:], kid_size=32, kid_subsets=4)
    before = {k: v.clone() for k, v in translator.state_dict().items() if torch.is_tensor(v)}
    rng = torch.get_rng_state()
    first = monitor.evaluate(translator)
    assert torch.equal(rng, torch.get_rng_state()), "the monitor drew from the global RNG"
    assert all(torch.equal(before[k], v) for k, v in translator.state_dict().items() if torch.is_tensor(v))
    assert monitor.evaluate(translator) == first and translator.training
    assert set(first) >= {"kid/a2b", "kid/b2a", "hist/a2b", "hist/b2a", "cycle_l1/a2b"}
    grids = monitor.grids(translator)
    assert grids["images/b_translated_cycled"].shape[0] == 3 and float(grids["images/a_translated"].max()) <= 1
