"""The transfer loop reading its target images from disk (runtime.store.DiskArray) equals the in-memory loop."""

from __future__ import annotations

import pytest
import torch

from runtime.store import DiskArray, encode_grey
from transfer.config import TransferConfig
from transfer.orchestrator import ForeverIterator, TransferOrchestrator

CONFIG = TransferConfig(iterations=6, warmup_iterations=2, steps_per_epoch=3, batch_size=2, ema_decay=0.5,
                        weight_pseudo=0.5, pseudo_start=0.3, log_every=1)


def _on_disk(images, path):
    path.write_bytes(encode_grey(images).tobytes())
    return DiskArray(path, len(images), 1, images.shape[-2], images.shape[-1])


@pytest.fixture()
def data(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 1, 8, 8, generator=g)
    disk = _on_disk(torch.rand(7, 1, 8, 8, generator=g) ** 2, tmp_path / "b.u16")
    return a, (a > 0.5).float(), disk


def _orch(toys, run_dir):
    Translator, Segmenter, loss, norm = toys
    torch.manual_seed(1)
    return TransferOrchestrator(Translator(), Segmenter(), CONFIG, loss_fn=loss, normalize=norm, run_dir=run_dir)


def _weights(orch):
    return {**{f"t.{k}": v for k, v in orch.translator.state_dict().items()},
            **{f"s.{k}": v for k, v in orch.segmenter.state_dict().items()}}


def test_forever_iterator_reads_ahead_but_saves_the_consumed_state(data, monkeypatch):
    _, _, disk = data
    monkeypatch.setenv("CXR_WORKERS", "1")
    memory = ForeverIterator(disk[:], batch_size=3, seed=4)
    streamed = ForeverIterator(disk, batch_size=3, seed=4)
    for step in range(5):  # crosses two new permutations
        assert torch.equal(next(memory)[0], next(streamed)[0])
        saved, want = streamed.state_dict(), memory.state_dict()
        assert torch.equal(saved["order"], want["order"]) and saved["position"] == want["position"]
        assert torch.equal(saved["generator"], want["generator"])
    again = ForeverIterator(disk, batch_size=3, seed=99)
    again.load_state_dict(saved)
    assert all(torch.equal(next(again)[0], next(memory)[0]) for _ in range(4))


def test_fit_on_a_streamed_target_equals_in_memory_and_resumes_exactly(toys, data, tmp_path, monkeypatch):
    a, ya, disk = data
    want = _orch(toys, tmp_path / "memory")
    want.fit(a, ya, disk[:])
    monkeypatch.setenv("CXR_WORKERS", "1")
    got = _orch(toys, tmp_path / "disk")
    got.fit(a, ya, disk)
    torch.testing.assert_close(_weights(got), _weights(want), rtol=0, atol=0)

    killed = _orch(toys, tmp_path / "killed")
    real = TransferOrchestrator.iteration

    def dying(self):
        if self.iteration_count == 4:
            raise KeyboardInterrupt  # after the checkpoint at iteration 3, with batches read ahead
        return real(self)

    monkeypatch.setattr(TransferOrchestrator, "iteration", dying)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(a, ya, disk)
    monkeypatch.setattr(TransferOrchestrator, "iteration", real)
    resumed = _orch(toys, tmp_path / "killed")
    resumed.fit(a, ya, disk, resume=True)
    torch.testing.assert_close(_weights(resumed), _weights(want), rtol=0, atol=0)
