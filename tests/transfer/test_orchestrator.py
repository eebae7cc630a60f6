"""The orchestrator: exact resume, warm-up reuse, EMA, and learning on two phantom domains."""

from __future__ import annotations

import copy

import pytest
import torch

from transfer.config import TransferConfig
from transfer.orchestrator import EMA, ForeverIterator, TransferOrchestrator


def _data(n=6, size=8):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, 1, size, size, generator=g)
    b = torch.rand(n, 1, size, size, generator=g) ** 2
    return a, (a > 0.5).float(), b, (b[:2], (b[:2] > 0.25).float())


def _orch(toys, config, run_dir=None):
    Translator, Segmenter, loss, norm = toys
    torch.manual_seed(1)
    return TransferOrchestrator(Translator(), Segmenter(), config, loss_fn=loss, normalize=norm, run_dir=run_dir)


CONFIG = TransferConfig(iterations=6, warmup_iterations=2, steps_per_epoch=3, batch_size=2, ema_decay=0.5,
                        weight_pseudo=0.5, pseudo_start=0.3, log_every=1)


def _weights(orch):
    return {**{f"t.{k}": v for k, v in orch.translator.state_dict().items()},
            **{f"s.{k}": v for k, v in orch.segmenter.state_dict().items()},
            **{f"e.{k}": v for k, v in orch.ema_segmenter.module.state_dict().items()}}


def test_resume_is_exact(toys, tmp_path, monkeypatch):
    a, ya, b, labelled = _data()
    full = _orch(toys, CONFIG, tmp_path / "full")
    full.fit(a, ya, b, labelled)

    killed = _orch(toys, CONFIG, tmp_path / "killed")
    real = TransferOrchestrator.iteration

    def dying(self):
        if self.iteration_count == 4:
            raise KeyboardInterrupt  # killed after the checkpoint at iteration 3
        return real(self)

    monkeypatch.setattr(TransferOrchestrator, "iteration", dying)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(a, ya, b, labelled)
    monkeypatch.setattr(TransferOrchestrator, "iteration", real)
    assert (tmp_path / "killed" / "checkpoints" / "iter_0000003.pt").is_file()

    resumed = _orch(toys, CONFIG, tmp_path / "killed")
    result = resumed.fit(a, ya, b, labelled, resume=True)
    assert result.iterations == 6
    w_full, w_res = _weights(full), _weights(resumed)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full), "resumed weights differ from an uninterrupted run"
    assert [h["iteration"] for h in resumed.history] == [3.0, 6.0]
    assert list((tmp_path / "full" / "tb").glob("events.out.tfevents.*")), "no TensorBoard log"


def test_cached_warmup_gives_the_same_run(toys, tmp_path):
    a, ya, b, labelled = _data()
    first = _orch(toys, CONFIG)
    first.fit(a, ya, b, labelled, warmup_cache=tmp_path / "warm.pt", warmup_key="k")
    second = _orch(toys, CONFIG)
    info = second.warm_up(a, b, cache=tmp_path / "warm.pt", key="k")
    assert info["cached"] is True
    second = _orch(toys, CONFIG)
    second.fit(a, ya, b, labelled, warmup_cache=tmp_path / "warm.pt", warmup_key="k")
    w1, w2 = _weights(first), _weights(second)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    other = _orch(toys, CONFIG)
    assert other.warm_up(a, b, cache=tmp_path / "warm.pt", key="another dataset")["cached"] is False


def test_selection_keeps_best_scoring_weights(toys):
    a, ya, b, _ = _data()
    scores = iter([0.9, 0.1])  # the first evaluation (iteration 3) is the best
    orch = _orch(toys, CONFIG)
    result = orch.fit(a, ya, b, None, selector=lambda t, s: {"score": next(scores)})
    assert result.best_iteration == 3 and result.best_score == pytest.approx(0.9)
    best = orch.best["state"]["segmenter"]
    assert all(torch.equal(best[k], v) for k, v in orch.ema_segmenter.module.state_dict().items())


def test_ema_hand_computed():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # effective decay min(0.5, 1/10) = 0.1 -> 0.9
    assert ema.module.weight.item() == pytest.approx(0.9)
    ema.update(model)  # min(0.5, 2/11) -> 0.9 * 2/11 + 9/11
    assert ema.module.weight.item() == pytest.approx(0.9 * 2 / 11 + 9 / 11)
    with pytest.raises(ValueError, match="expected 0 <= decay < 1, got 1"):
        EMA(model, decay=1)


def test_forever_iterator_covers_each_pass_and_resumes():
    x = torch.arange(5).float()[:, None]
    it = ForeverIterator(x, batch_size=2, seed=0)
    first_pass = torch.cat([next(it)[0] for _ in range(2)]).flatten().tolist()
    assert len(set(first_pass)) == 4  # a pass never repeats an item
    state = copy.deepcopy(it.state_dict())
    expected = [next(it)[0] for _ in range(5)]
    it.load_state_dict(state)
    assert all(torch.equal(e, next(it)[0]) for e in expected)
    with pytest.raises(ValueError, match="expected non-empty tensors of one length"):
        ForeverIterator(x, x[:3], batch_size=2)
    assert len(next(ForeverIterator(x, batch_size=50))[0]) == 5  # capped at the data size


def test_config_bad_arguments():
    with pytest.raises(ValueError, match="expected batch_size >= 1, got 0"):
        TransferConfig(batch_size=0)
    with pytest.raises(ValueError, match="expected selection in"):
        TransferConfig(selection="oracle")
