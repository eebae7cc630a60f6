"""The three steps: which parameters receive gradients, the supervised loss reaching the generators, the order."""

from __future__ import annotations

import math

import pytest
import torch

import transfer.orchestrator as orchestrator_module
from transfer.config import TransferConfig
from transfer.orchestrator import TransferOrchestrator
from runtime.distributed import frozen
from transfer.steps import (
    SupervisedBatch,
    SupervisedWeights,
    discriminative_step,
    generative_step,
    supervised_step,
)


def _has_grad(params) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


def _batch(n: int = 2, size: int = 8) -> SupervisedBatch:
    a = torch.rand(n, 1, size, size)
    b = torch.rand(n, 1, size, size)
    return SupervisedBatch(a=a, y_a=(a > 0.5).float(), b_labelled=b, y_b=(b > 0.5).float())


def test_discriminative_step_updates_only_discriminators(toys):
    Translator, _, _, _ = toys
    t = Translator()
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    before_g = [p.clone() for p in t.generator_parameters()]
    before_d = [p.clone() for p in t.discriminator_parameters()]
    opt = torch.optim.SGD(t.discriminator_parameters(), lr=0.1)
    losses = discriminative_step(t, a, b, opt)
    assert set(losses) == {"d_a", "d_b", "loss"} and losses["loss"].requires_grad is False
    assert all(_has_grad(t.discriminator_parameters()))
    assert not any(_has_grad(t.generator_parameters()))
    assert all(torch.equal(x, y) for x, y in zip(before_g, t.generator_parameters()))
    assert not any(torch.equal(x, y) for x, y in zip(before_d, t.discriminator_parameters()))
    assert all(p.requires_grad for p in t.parameters()), "frozen flags must be restored"


def test_generative_step_updates_only_generators(toys):
    Translator, _, _, _ = toys
    t = Translator()
    losses = generative_step(t, torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), None)
    assert {"adversarial", "cycle", "loss"} <= set(losses)
    assert all(_has_grad(t.generator_parameters()))
    assert not any(_has_grad(t.discriminator_parameters()))
    assert all(p.requires_grad for p in t.parameters())


def test_supervised_loss_reaches_both_generators_not_discriminators(toys):
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    losses = supervised_step(t, m, _batch(), loss, norm, ())
    assert {"source", "cycle", "target", "loss"} <= set(losses)
    g_ab, g_ba = list(t.g_ab.parameters()), list(t.g_ba.parameters())
    assert all(_has_grad(g_ab)) and all(_has_grad(g_ba)) and all(_has_grad(m.parameters()))
    assert not any(_has_grad(t.discriminator_parameters()))


def test_target_term_reaches_only_g_ba(toys):
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    supervised_step(t, m, _batch(), loss, norm, (), weights=SupervisedWeights(source=0, cycle=0, target=1, pseudo=0))
    assert all(_has_grad(t.g_ba.parameters()))
    assert not any(_has_grad(t.g_ab.parameters()))


def test_supervised_step_hand_computed_value(toys):
    # A segmenter with zero weights outputs logits 0, so BCE against any mask is ln 2 per term.
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    torch.nn.init.zeros_(m.conv.weight)
    torch.nn.init.zeros_(m.conv.bias)
    losses = supervised_step(t, m, _batch(), loss, norm, (), weights=SupervisedWeights(source=2, cycle=1, target=0))
    assert losses["source"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert losses["cycle"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert losses["loss"].item() == pytest.approx(3 * math.log(2), abs=1e-6)


def test_pseudo_term_ignores_unconfident_pixels(toys):
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    torch.nn.init.zeros_(m.conv.weight)
    torch.nn.init.zeros_(m.conv.bias)
    batch = _batch()
    batch.b_unlabelled = torch.rand(2, 1, 8, 8)
    batch.pseudo = torch.ones(2, 1, 8, 8)
    batch.pseudo_weight = torch.zeros(2, 1, 8, 8)
    batch.pseudo_weight[:, :, :2] = 1
    losses = supervised_step(t, m, batch, loss, norm, (), weights=SupervisedWeights(0, 0, 0, pseudo=1))
    assert losses["pseudo"].item() == pytest.approx(math.log(2), abs=1e-6)


def test_supervised_step_bad_arguments(toys):
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    with pytest.raises(ValueError, match="expected at least one active supervised term"):
        supervised_step(t, m, _batch(), loss, norm, (), weights=SupervisedWeights(0, 0, 0, 0))
    batch = _batch()
    batch.y_b = None
    with pytest.raises(ValueError, match="expected both b_labelled and y_b"):
        supervised_step(t, m, batch, loss, norm, ())


def test_frozen_restores_flags_on_error():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(RuntimeError):
        with frozen([p]):
            assert not p.requires_grad
            raise RuntimeError("boom")
    assert p.requires_grad


def test_iteration_alternates_in_the_paper_order(toys, monkeypatch):
    Translator, Segmenter, loss, norm = toys
    calls: list[str] = []
    for name, letter in (("discriminative_step", "D"), ("generative_step", "G"), ("supervised_step", "S")):
        real = getattr(orchestrator_module, name)

        def recorder(*args, _real=real, _letter=letter, **kwargs):
            calls.append(_letter)
            return _real(*args, **kwargs)

        monkeypatch.setattr(orchestrator_module, name, recorder)
    config = TransferConfig(iterations=2, warmup_iterations=1, batch_size=2, weight_pseudo=0, steps_per_epoch=10)
    orch = TransferOrchestrator(Translator(), Segmenter(), config, loss_fn=loss, normalize=norm)
    a = torch.rand(4, 1, 8, 8)
    orch.fit(a, (a > 0.5).float(), torch.rand(4, 1, 8, 8))
    # warm-up: D then G once; then each iteration D G S
    assert "".join(calls) == "DG" + "DGS" * 2
    calls.clear()  # a fixed translator: no warm-up, supervised steps only
    TransferOrchestrator(Translator(), Segmenter(), config, loss_fn=loss, normalize=norm,
                         train_translator=False).fit(a, (a > 0.5).float(), torch.rand(4, 1, 8, 8))
    assert "".join(calls) == "SS"


def test_target_term_uses_only_the_target_channels(toys):
    # M_A with 3 classes (lungs, heart, clavicles), target masks with lungs only (channel 0): the target term is the
    # loss of M_A's channel 0, hand-computed here; the source term trains all three channels.
    Translator, Segmenter, loss, norm = toys
    torch.manual_seed(0)
    t, m = Translator(), Segmenter(classes=3)
    batch = _batch()
    batch.y_a = batch.y_a.repeat(1, 3, 1, 1)
    batch.target_channels = [0]
    weights = SupervisedWeights(source=0, cycle=0, target=1, pseudo=0)
    losses = supervised_step(t, m, batch, loss, norm, (), weights=weights)
    with torch.no_grad():
        expected = loss(m(norm((t.b_to_a(batch.b_labelled * 2 - 1) + 1) / 2))[:, [0]], batch.y_b)
    assert losses["target"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert m.conv.weight.grad[1:].abs().sum() == 0 and m.conv.weight.grad[0].abs().sum() > 0
    batch.target_channels = None
    with pytest.raises((ValueError, RuntimeError)):  # 3 logit channels vs a 1-channel mask: an error, not a silent mix
        supervised_step(t, m, batch, loss, norm, (), weights=weights)


def test_a_fixed_translator_leaves_generators_untouched(toys):
    Translator, Segmenter, loss, norm = toys
    t, m = Translator(), Segmenter()
    config = TransferConfig(iterations=1, warmup_iterations=0, steps_per_epoch=1, batch_size=2, weight_pseudo=0,
                            amp=False)
    orch = TransferOrchestrator(t, m, config, loss_fn=loss, normalize=norm, train_translator=False)
    a = torch.rand(4, 1, 8, 8)
    before_g = [p.clone() for p in t.generator_parameters()]
    before_m = [p.clone() for p in m.parameters()]
    orch.fit(a, (a > 0.5).float(), torch.rand(4, 1, 8, 8))
    assert all(torch.equal(x, y) for x, y in zip(before_g, t.generator_parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(before_m, m.parameters()))
    assert all(p.requires_grad for p in t.parameters()), "frozen flags must be restored"
