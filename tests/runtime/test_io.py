import json

import pytest
import torch

from runtime.io import atomic_path, atomic_save_torch, atomic_write_json


def test_atomic_write_json_roundtrip(tmp_path):
    path = atomic_write_json(tmp_path / "a" / "b.json", {"x": 1, "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1, "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    atomic_save_torch({"w": torch.ones(2)}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert torch.equal(torch.load(target)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
