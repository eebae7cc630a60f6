import random

import numpy as np
import pytest
import torch

from runtime import get_rng_state, latest_checkpoint, load_checkpoint, save_checkpoint, seed_everything, set_rng_state


def test_latest_checkpoint_picks_largest_step(tmp_path):
    for step in (5, 100, 20):
        save_checkpoint(tmp_path / f"step_{step:06d}.pt", {"step": step})
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 100
    assert latest_checkpoint(tmp_path / "missing") is None


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "step_1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="step_1.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        load_checkpoint(tmp_path / "nope.pt")


def test_rng_state_restores_every_generator():
    seed_everything(3)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_negative_seed_is_rejected():
    with pytest.raises(ValueError, match="expected seed >= 0, got -1"):
        seed_everything(-1)
