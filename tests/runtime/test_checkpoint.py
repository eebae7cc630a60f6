import ast
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime import (get_rng_state, keep_latest, latest_checkpoint, load_checkpoint, save_checkpoint, seed_everything,
                     set_rng_state)


def test_latest_checkpoint_picks_largest_step(tmp_path):
    for step in (5, 100, 20):
        save_checkpoint(tmp_path / f"step_{step:06d}.pt", {"step": step})
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 100
    assert latest_checkpoint(tmp_path / "missing") is None


def test_keep_latest_rotates_by_step_and_spares_what_it_is_told(tmp_path):
    for step in (5, 100, 20, 7):
        save_checkpoint(tmp_path / f"iter_{step:07d}.pt", {"step": step})
    (tmp_path / "step_3.suspect.pt").write_bytes(b"")
    (tmp_path / "step_1.pt").write_bytes(b"")
    (tmp_path / ".iter_0000200.pt.tmp").write_bytes(b"")  # an atomic write in progress
    assert keep_latest(tmp_path, "iter_*.pt", keep=2) == [tmp_path / "iter_0000100.pt", tmp_path / "iter_0000020.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".iter_0000200.pt.tmp", "iter_0000020.pt",
                                                          "iter_0000100.pt", "step_1.pt", "step_3.suspect.pt"]
    kept = keep_latest(tmp_path, "step_*.pt", keep=1, also_keep=[tmp_path / "step_1.pt"])  # the newest is suspect
    assert kept == [tmp_path / "step_3.suspect.pt", tmp_path / "step_1.pt"]
    assert keep_latest(tmp_path, "iter_*.pt", keep=0) == [] and not list(tmp_path.glob("iter_*.pt"))
    assert keep_latest(tmp_path / "missing", "*.pt", keep=1) == []
    with pytest.raises(ValueError, match="expected keep >= 0, got -1"):
        keep_latest(tmp_path, "*.pt", keep=-1)


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "step_1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="step_1.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
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


class _Payload:
    """Unpickling this object calls os.system: what a crafted model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def booby_trapped_file(path: Path, marker: Path) -> Path:
    """A torch file that looks like a segmenter but runs ``touch marker`` when unpickled with weights_only=False."""
    torch.save({"format": "cxr-transfer-segmenter", "state_dict": {"w": torch.ones(1)}, "metadata": _Payload(marker)},
               path)
    return path


def test_booby_trapped_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = booby_trapped_file(tmp_path / "model.pt", marker)
    with pytest.raises(ValueError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert "refusing to load" in message and "model.pt" in message and "\n" not in message
    assert not marker.exists(), "the pickle's payload ran"


def test_resumed_rng_state_is_data_only_and_restores_from_a_checkpoint(tmp_path):
    seed_everything(11)
    save_checkpoint(tmp_path / "c.pt", {"rng": get_rng_state()})
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])  # weights_only load: plain types and tensors only
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


_ROOT = Path(__file__).resolve().parents[2]


def _calls(name: str):
    for folder in ("runtime", "segmentation", "translation", "transfer", "experiments", "benchmarks"):
        for path in sorted((_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name:
                    yield path.relative_to(_ROOT), node


def test_every_torch_load_is_data_only_onto_the_cpu():
    """torch.load with weights_only=False runs code; map_location=<device> puts RNG states on a GPU (which
    torch.set_rng_state refuses). Every load in the code base is weights_only=True onto the CPU."""
    bad = []
    for path, node in _calls("load"):
        if getattr(node.func, "value", None) is None or getattr(node.func.value, "id", None) != "torch":
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        safe = (isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
                and isinstance(keywords.get("map_location"), ast.Constant) and keywords["map_location"].value == "cpu")
        if not safe:
            bad.append(f"{path}:{node.lineno}")
    assert not bad, f"torch.load without weights_only=True, map_location='cpu': {bad}"
    devices = [f"{path}:{node.lineno}" for path, node in _calls("load_checkpoint")
               if any(k.arg == "map_location" for k in node.keywords)]
    assert not devices, f"load_checkpoint with a map_location: {devices}"
