"""The orchestrator: exact resume, warm-up reuse, EMA, and learning on two phantom domains."""

from __future__ import annotations

import copy

import pytest
import torch

from runtime.checkpoint import load_checkpoint
from runtime.config import config_from_dict
from segmentation.postprocess import gate_dark
from transfer.config import REMOVED, ExperimentConfig, TransferConfig, without_removed
from transfer.orchestrator import EMA, ForeverIterator, TransferOrchestrator
from transfer.prediction import predict_views


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
                        weight_pseudo=0.5, pseudo_start=0.3, log_every=1, augment="none")  # tests that follow
# batches exactly use un-augmented ones; the augmentation (the default) has its own tests


def _weights(orch):
    return {**{f"t.{k}": v for k, v in orch.translator.state_dict().items()},
            **{f"s.{k}": v for k, v in orch.segmenter.state_dict().items()},
            **{f"e.{k}": v for k, v in orch.ema_segmenter.module.state_dict().items()}}


@pytest.mark.parametrize("augment", ["none", "all"])
def test_resume_is_exact(toys, tmp_path, monkeypatch, augment):
    a, ya, b, labelled = _data()
    config = CONFIG.replace(augment=augment)  # "all": the augmentation draws must resume too
    full = _orch(toys, config, tmp_path / "full")
    full.fit(a, ya, b, labelled)

    killed = _orch(toys, config, tmp_path / "killed")
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

    resumed = _orch(toys, config, tmp_path / "killed")
    result = resumed.fit(a, ya, b, labelled, resume=True)
    assert result.iterations == 6
    w_full, w_res = _weights(full), _weights(resumed)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full), "resumed weights differ from an uninterrupted run"
    assert [h["iteration"] for h in resumed.history] == [h["iteration"] for h in full.history] == [0.0, 3.0, 6.0]
    assert list((tmp_path / "full" / "tb").glob("events.out.tfevents.*")), "no TensorBoard log"


def test_a_checkpoint_of_two_ranks_is_refused_by_one_process(toys, tmp_path):
    a, ya, b, labelled = _data()
    orch = _orch(toys, CONFIG, tmp_path / "run")
    orch.fit(a, ya, b, labelled)
    path = tmp_path / "run" / "checkpoints" / "iter_0000006.pt"
    state = load_checkpoint(path)
    assert len(state["ranks"]) == 1  # one process: its own part, once
    state["ranks"] = state["ranks"] * 2  # as written under torchrun --nproc_per_node 2
    with pytest.raises(ValueError, match="written by 2; resume it with torchrun --nproc_per_node 2"):
        _orch(toys, CONFIG, tmp_path / "other").load_state_dict(state)


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
    scores = iter([0.2, 0.9, 0.1])  # the starting point, iteration 3 (the best), iteration 6
    orch = _orch(toys, CONFIG)
    result = orch.fit(a, ya, b, None, selector=lambda t, s: {"score": next(scores)})
    assert result.best_iteration == 3 and result.best_score == pytest.approx(0.9)
    best = orch.best["state"]["segmenter"]
    assert all(torch.equal(best[k], v) for k, v in orch.ema_segmenter.module.state_dict().items())


def test_selection_can_keep_the_starting_point(toys):
    # When adaptation only lowers the score, the predictor is the warmed-up translator with M_A unchanged.
    a, ya, b, _ = _data()
    orch = _orch(toys, CONFIG)
    start_weights = {k: v.clone() for k, v in orch.segmenter.state_dict().items()}
    scores = iter([0.9, 0.5, 0.1])
    result = orch.fit(a, ya, b, None, selector=lambda t, s: {"score": next(scores)})
    assert result.best_iteration == 0
    assert all(torch.equal(start_weights[k], v) for k, v in orch.ema_segmenter.module.state_dict().items())
    assert not all(torch.equal(start_weights[k], v) for k, v in orch.segmenter.state_dict().items())
    off = _orch(toys, CONFIG.replace(select_start=False))
    assert [h["iteration"] for h in off.fit(a, ya, b, None).history] == [3.0, 6.0]


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


def test_old_configs_with_removed_switches():
    # a config.json of an earlier version holds every removed switch: at its old default it describes today's loop
    old = {"method": "transfer", "transfer": {**REMOVED, "iterations": 7}}
    assert config_from_dict(ExperimentConfig, without_removed(old)).transfer == TransferConfig(iterations=7)
    assert without_removed({"method": "finetune"}) == {"method": "finetune"}
    with pytest.raises(ValueError, match=r"^transfer.snapshots was removed .* got 3: delete it$"):
        without_removed({"transfer": {"snapshots": 3}})
    with pytest.raises(ValueError, match=r"unknown TransferConfig field\(s\) \[.*'snapshots'"):
        config_from_dict(ExperimentConfig, old)  # not cleaned: refused, naming the key


class _Shift(torch.nn.Module):
    """A translator whose G_BA adds 0.5 in [-1, 1] space, i.e. 0.25 in [0, 1] images."""

    def b_to_a(self, x):
        return x + 0.5


class _Ramp(torch.nn.Module):
    """A segmenter whose logit is 4 * (x - 0.5) minus a column ramp (0, 1, 2...), to see flips."""

    def forward(self, x):
        return 4 * (x - 0.5) - torch.arange(x.shape[-1], dtype=x.dtype)


def test_predict_views_hand_computed():
    x = torch.full((1, 1, 2, 3), 0.5)
    identity = lambda t: t  # noqa: E731
    col = torch.arange(3.0)
    direct = torch.sigmoid(-col)  # 4 * (0.5 - 0.5) - col
    translated = torch.sigmoid(1 - col)  # G_BA(b) = 0.75 -> 4 * 0.25 - col
    out = predict_views(_Shift(), _Ramp(), x, identity, ("translated", "direct"))
    assert out.shape == (1, 1, 2, 3)
    assert torch.allclose(out[0, 0, 0], (direct + translated) / 2)
    flipped = predict_views(_Shift(), _Ramp(), x, identity, ("direct_flip",))
    assert torch.allclose(flipped[0, 0, 0], torch.sigmoid(-col.flip(0)))  # the ramp seen mirrored, flipped back
    with pytest.raises(ValueError, match="expected views from"):
        predict_views(_Shift(), _Ramp(), x, identity, ("rotated",))
    with pytest.raises(ValueError, match="expected predict_views to be a non-empty subset"):
        TransferConfig(predict_views=("rotated",))


def test_prediction_averages_views(toys):
    a, ya, b, labelled = _data()
    orch = _orch(toys, CONFIG.replace(predict_views=("translated", "direct")))
    orch.fit(a, ya, b, labelled)
    paper = torch.sigmoid(orch.predict(b, views=("translated",)))
    assert paper.shape == (6, 1, 8, 8)
    assert torch.allclose(paper, torch.sigmoid(orch._predict_logits(b)), atol=1e-6)
    direct = predict_views(None, orch.ema_segmenter.module, b, orch.normalize, ("direct",))
    assert torch.allclose(torch.sigmoid(orch.predict(b)), (paper + direct) / 2, atol=1e-5)


def test_pseudo_labels_from_a_view_average(toys):
    a, ya, b, _ = _data()
    views = ("translated", "direct_flip")
    orch = _orch(toys, CONFIG.replace(pseudo_views=views, pseudo_threshold=0.6))
    orch.fit(a, ya, b, None)
    batch = orch._supervised_batch()  # iteration 6 >= pseudo_start * iterations: self-training is on
    probs = predict_views(orch.ema_translator.module, orch.ema_segmenter.module, batch.b_unlabelled, orch.normalize,
                          views)
    assert batch.pseudo.shape == probs.shape == (2, 1, 8, 8)
    assert torch.equal(batch.pseudo, (probs > 0.5).float())
    assert torch.equal(batch.pseudo_weight, ((probs > 0.6) | (probs < 0.4)).float())
    with pytest.raises(ValueError, match="expected pseudo_views to be a non-empty subset"):
        TransferConfig(pseudo_views=())


def test_pseudo_labels_make_dark_pixels_certain_background(toys):
    a, ya, b, _ = _data()
    b = b.clone()
    b[..., :2] = -1.0  # the darkest columns of every target image: film padding
    Translator, Segmenter, loss, norm = toys
    torch.manual_seed(1)
    orch = TransferOrchestrator(Translator(), Segmenter(), CONFIG.replace(pseudo_threshold=0.6), loss_fn=loss,
                                normalize=norm, dark_gate=0.02)
    orch.fit(a, ya, b, None)
    batch = orch._supervised_batch()
    probs = predict_views(orch.ema_translator.module, orch.ema_segmenter.module, batch.b_unlabelled, orch.normalize,
                          CONFIG.pseudo_views)
    gated = gate_dark(probs, batch.b_unlabelled, 0.02)
    assert not batch.pseudo[..., :2].any() and batch.pseudo_weight[..., :2].all()
    assert torch.equal(batch.pseudo, (gated > 0.5).float())
    assert torch.equal(batch.pseudo_weight, ((gated > 0.6) | (gated < 0.4)).float())


class _Flip(torch.nn.Module):
    """A stand-in augmenter: flips images and masks left-right, so the test can follow what was augmented."""

    generator = None

    def forward(self, images, masks):
        return images.flip(-1), masks.flip(-1)


@pytest.mark.parametrize("augment", ["none", "labelled", "all"])
def test_augmentation_warps_each_pair_together(toys, augment):
    a, ya, b, labelled = _data()
    orch = _orch(toys, CONFIG.replace(augment=augment, pseudo_threshold=0.6))
    orch.fit(a, ya, b, labelled)
    orch.augmenter = _Flip()
    states = [copy.deepcopy(it.state_dict()) for it in (orch.source, orch.labelled, orch.target)]
    batch = orch._supervised_batch()
    for it, state in zip((orch.source, orch.labelled, orch.target), states):
        it.load_state_dict(state)
    (a0, ya0), (b0, yb0), (u0,) = next(orch.source), next(orch.labelled), next(orch.target)
    labelled_flip = augment != "none"
    assert torch.equal(batch.a, a0.flip(-1) if labelled_flip else a0)
    assert torch.equal(batch.y_a, ya0.flip(-1) if labelled_flip else ya0)
    assert torch.equal(batch.b_labelled, b0.flip(-1) if labelled_flip else b0)
    assert torch.equal(batch.y_b, yb0.flip(-1) if labelled_flip else yb0)
    # pseudo-labels are made on the un-augmented image; "all" warps image, label and weight alike
    probs = predict_views(orch.ema_translator.module, orch.ema_segmenter.module, u0, orch.normalize,
                          orch.config.pseudo_views)
    pseudo, weight = (probs > 0.5).float(), ((probs > 0.6) | (probs < 0.4)).float()
    flip = augment == "all"
    assert torch.equal(batch.b_unlabelled, u0.flip(-1) if flip else u0)
    assert torch.equal(batch.pseudo, pseudo.flip(-1) if flip else pseudo)
    assert torch.equal(batch.pseudo_weight, weight.flip(-1) if flip else weight)
    with pytest.raises(ValueError, match="expected augment"):
        TransferConfig(augment="strong")


@pytest.mark.parametrize("teacher", ["ema", "selected"])
def test_pseudo_labels_come_from_the_chosen_teacher(toys, teacher):
    # "selected": the best-scoring EMA weights (here the starting point) make the pseudo-labels, not the current EMA
    a, ya, b, _ = _data()
    scores = iter([0.9, 0.5, 0.1])
    orch = _orch(toys, CONFIG.replace(pseudo_teacher=teacher, pseudo_threshold=0.6))
    orch.fit(a, ya, b, None, selector=lambda t, s: {"score": next(scores)})
    assert orch.best["iteration"] == 0
    with torch.no_grad():  # move the EMA models away from the selected weights (fit() ends holding the selected ones)
        for p in list(orch.ema_segmenter.module.parameters()) + list(orch.ema_translator.module.parameters()):
            p.add_(0.5)
    selected = (copy.deepcopy(orch.ema_translator.module), copy.deepcopy(orch.ema_segmenter.module))
    selected[0].load_state_dict(orch.best["state"]["translator"])
    selected[1].load_state_dict(orch.best["state"]["segmenter"])
    batch = orch._supervised_batch()
    expected = selected if teacher == "selected" else (orch.ema_translator.module, orch.ema_segmenter.module)
    probs = predict_views(*expected, batch.b_unlabelled, orch.normalize, orch.config.pseudo_views)
    assert torch.equal(batch.pseudo, (probs > 0.5).float())
    assert torch.equal(batch.pseudo_weight, ((probs > 0.6) | (probs < 0.4)).float())
    other = selected if teacher == "ema" else (orch.ema_translator.module, orch.ema_segmenter.module)
    assert not torch.equal(predict_views(*other, batch.b_unlabelled, orch.normalize, orch.config.pseudo_views), probs)
    with pytest.raises(ValueError, match="expected pseudo_teacher"):
        TransferConfig(pseudo_teacher="student")


def _lungs(data):
    from segmentation.data.dataset import CXRData, resolve_classes

    (organs,) = resolve_classes(("lungs",))
    index = [data.classes.index(o) for o in organs]
    return CXRData(images=data.images, masks=data.masks[:, index].amax(1, keepdim=True), ids=data.ids,
                   classes=("lungs",), spacing_mm=data.spacing_mm)


def phantom_transfer(seed: int = 0, size: int = 32, target: str = "b", **overrides) -> tuple[list[float], list[float]]:
    """Per-image test Jaccard on phantom domain B of (source-only M_A, transfer at 0% labels) from the same M_A."""
    from segmentation.data.phantoms import make_phantoms
    from segmentation.data.preprocessing import normalize
    from segmentation.metrics import evaluate_masks
    from segmentation.training import SegmentationConfig, evaluate_segmenter, probabilities_to_masks
    from transfer.baselines import train_source_segmenter
    from transfer.selection import Selector
    from translation import create_translator

    a, a_val = _lungs(make_phantoms(48, size, "a", seed)), _lungs(make_phantoms(16, size, "a", seed + 100))
    b_train, b_test = make_phantoms(40, size, target, seed + 200), _lungs(make_phantoms(24, size, target, seed + 300))
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 3, "base_channels": 8}, size=size, epochs=8,
                                steps_per_epoch=25, batch_size=8, lr=1e-3, augment=True, seed=seed, device="cpu",
                                progress=False, overlays=0)
    m_a = train_source_segmenter(a, a_val, config)
    source_only = [r["jaccard/lungs"] for r in evaluate_segmenter(m_a, b_test, config)]

    def norm(x):
        return normalize(x, "per_image")

    torch.manual_seed(seed)
    tconfig = TransferConfig(iterations=100, warmup_iterations=30, steps_per_epoch=20, batch_size=8, ema_decay=0.95,
                             pseudo_start=0.3, seed=seed).replace(**overrides)
    orch = TransferOrchestrator(create_translator("cyclegan", "tiny"), copy.deepcopy(m_a), tconfig,
                                normalize=norm)
    selector = Selector(tconfig.selection, norm, source_val=(a_val.images, a_val.masks), target_images=b_train.images,
                        source_masks=a.masks, views=tconfig.predict_views)
    orch.fit(a.images, a.masks, b_train.images, None, selector)  # no target label at all
    masks = probabilities_to_masks(torch.sigmoid(orch.predict(b_test.images)), config)
    rows = evaluate_masks(masks, b_test.masks > 0.5, ("lungs",))
    return source_only, [r["jaccard/lungs"] for r in rows]


@pytest.mark.slow
def test_transfer_at_zero_labels_beats_fine_tuning_on_phantoms():
    # Phantom domain A -> B (B: other intensity curve, noise, blur, wider field of view, collimator borders), no
    # target label. Fine-tuning at 0% labels is M_A itself, so source-only is the 0% baseline of both.
    # Setting: 32 px, 30 warm-up + 100 iterations, the defaults (lr_segmenter 1e-4, four-view prediction, augmentation
    # of the supervised step, shape_cycle selection with the starting point scored). Measured through this function
    # (docs/results/transfer.md, fourth session): per-image mean Jaccard gain over source-only on seeds 0-4: +0.168,
    # +0.071, +0.007, +0.218, -0.005; on seeds 5-9, measured after the defaults were set, +0.044, -0.010, -0.025,
    # -0.014, -0.049: it wins big where M_A fails on B (source-only < 0.7, as on seed 0) and can lose a few points
    # where M_A already works, so this checks the case the method is for (those gains were measured with the EMA
    # pseudo-label teacher; with the default "selected" teacher seed 0 gives 0.710 vs 0.534, sd 0.082 vs 0.252).
    # Bars: a mean gain of at least 5 points (the "clear margin"; the paper's single-view prediction measured 0.434
    # on this seed in an earlier setting and would fail it) and the spread below 0.8x source-only's (the issue's
    # observation that translation removes failed images).
    source_only, transfer = phantom_transfer(seed=0)
    so, tr = torch.tensor(source_only), torch.tensor(transfer)
    assert tr.mean() > so.mean() + 0.05, f"transfer mean Jaccard {tr.mean():.3f} vs source-only {so.mean():.3f}"
    assert tr.std() < 0.8 * so.std(), f"transfer sd {tr.std():.3f} vs source-only sd {so.std():.3f}"
