"""The transfer orchestrator: a plain loop that alternates the three steps of the paper.

Oliveira & dos Santos, "Cross-dataset transfer learning for chest X-ray segmentation through unpaired
image-to-image translation" (SIBGRAPI 2018): the source segmenter M_A is put inside an unpaired translator
(G_AB, G_BA, D_A, D_B). After an unsupervised warm-up of the translator, every iteration runs discriminative,
generative and supervised steps (:mod:`transfer.steps`); prediction on a target image b is M_A(G_BA(b)).

Additions beyond the paper, set in :class:`transfer.config.TransferConfig` (its ``paper`` preset turns them off; what
each was measured to bring: docs/results/transfer.md): an exponential moving average (EMA) of generator and segmenter
weights, which is what predicts and what selection scores; prediction averaged over views; self-training on confident
target pseudo-labels; augmentation of the supervised step; label-free model selection (:mod:`transfer.selection`).

The orchestrator takes built models (possibly DDP-wrapped segmenter), a loss and a normaliser; it logs to
TensorBoard and writes checkpoints on rank 0 only, and resumes exactly (models, optimizers, EMA, iterators, RNG).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from runtime.checkpoint import keep_latest, latest_checkpoint, load_checkpoint, save_checkpoint
from runtime.device import autocast, compile_networks, plain_copy
from runtime.distributed import (
    frozen,
    gather_objects,
    get_rank,
    get_world_size,
    is_main_process,
    rank_indices,
    rank_seed,
    sync_from_main,
    unwrap,
)
from runtime.loader import ReadAhead, stream_batches
from runtime.logging import RunLogger, progress
from runtime.seed import (
    get_rng_state,
    seed_everything,
    set_generator_state,
    set_rng_state,
)
from runtime.store import is_stored
from segmentation.data.augmentation import Augmenter
from segmentation.data.preprocessing import normalize
from segmentation.losses import create_loss
from segmentation.postprocess import gate_dark
from transfer.config import TransferConfig
from transfer.prediction import predict_target, predict_views
from transfer.steps import (
    SupervisedBatch,
    SupervisedWeights,
    discriminative_step,
    generative_step,
    supervised_step,
)
from translation.monitor import TranslationMonitor, convergence_layout
from translation.pool import load_pool_states, pool_states

Selector = Callable[[nn.Module, nn.Module], dict[str, float]]


class ForeverIterator:
    """Endless random mini-batches over aligned tensors, reshuffled every pass, with a saveable state.

    The labelled target subset may hold a single image, so loops run a fixed number of steps per epoch over these
    iterators instead of epochs over a loader. Under DDP every rank draws the same permutation and keeps its share
    (``runtime.distributed.rank_indices``).

    Args:
        tensors: tensors with the same first dimension (kept where they are; batches are moved to ``device``), or
            :class:`runtime.store.DiskArray` rows on disk (read ahead by a thread, :class:`runtime.loader.ReadAhead`;
            the same batches and the same saved state).
        batch_size: batch size (capped at the number of items of this rank).
        seed: seed of the shuffling generator.
        device: device of the returned batches (default: the tensors' device).

    Raises:
        ValueError: on no tensor, an empty tensor, tensors of different lengths, or ``batch_size < 1``.
    """

    def __init__(self, *tensors: Tensor, batch_size: int, seed: int = 0, device: torch.device | None = None) -> None:
        if not tensors:
            raise ValueError("expected at least one tensor, got none")
        n = len(tensors[0])
        if n == 0 or any(len(t) != n for t in tensors):
            raise ValueError(f"expected non-empty tensors of one length, got lengths {[len(t) for t in tensors]}")
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        self.tensors = tensors
        self.n = n
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = rank_indices(n, self.generator)
        self.batch_size = min(batch_size, len(self.order))
        self.position = 0
        self._stored = any(is_stored(t) for t in tensors)
        self._reader: Iterator[tuple[Tensor, ...]] | None = None
        self._ahead: deque[dict[str, Any]] = deque()
        self._consumed: dict[str, Any] = {}

    def __iter__(self) -> "ForeverIterator":
        return self

    def _draw(self) -> Tensor:
        """The next batch's indices (a new permutation when this one is used up)."""
        if self.position + self.batch_size > len(self.order):
            self.order = rank_indices(self.n, self.generator)
            self.position = 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def _state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def _index_stream(self) -> Iterator[Tensor]:
        while True:
            index = self._draw()
            self._ahead.append(self._state())  # the state once this batch is consumed
            yield index

    def __next__(self) -> tuple[Tensor, ...]:
        if not self._stored:  # in memory: plain indexing
            index = self._draw()
            return tuple(t[index.to(t.device)].to(self.device or t.device, non_blocking=True) for t in self.tensors)
        # on disk: a reader thread reads ahead; the saved state is that of the batches handed out, not read
        if self._reader is None:
            self._ahead.clear()
            self._consumed = self._state()
            self._reader = ReadAhead(stream_batches(self.tensors, self._index_stream(), device=self.device or "cpu",
                                                    workers=0))
        batch = next(self._reader)
        self._consumed = self._ahead.popleft()
        return batch

    def state_dict(self) -> dict[str, Any]:
        state = self._consumed if self._reader is not None else self._state()
        return {"generator": state["generator"], "order": state["order"].clone(), "position": state["position"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        set_generator_state(self.generator, state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])

    def close(self) -> None:
        """Stop reading ahead (the next batch starts a new reader from the consumed state)."""
        if self._reader is not None:
            self._reader.close()
            state = self._consumed
            set_generator_state(self.generator, state["generator"])
            self.order, self.position = state["order"], state["position"]
            self._reader = None


class EMA:
    """Exponential moving average of a module's weights (buffers are copied).

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs are not dominated
    by the initial weights.

    Args:
        model: the module to average (a DDP wrapper is unwrapped).
        decay: in [0, 1); 0 makes the average a copy of the latest weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"expected 0 <= decay < 1, got {decay}")
        self.decay = decay
        self.module = plain_copy(unwrap(model)).eval()  # eager even when the student is compiled
        self.module.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        source = unwrap(model)
        averaged = list(self.module.parameters())
        if averaged:  # one foreach kernel over every tensor instead of a Python loop of small ones
            torch._foreach_lerp_(averaged, [p.detach() for p in source.parameters()], 1 - decay)
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(source.buffers()))

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


@dataclass
class TransferResult:
    """What :meth:`TransferOrchestrator.fit` returns.

    Attributes:
        best_iteration: iteration of the selected weights; best_score: their selection score.
        history: one dict per evaluation (iteration, criteria, score).
        iterations: iterations run in total; seconds: wall time of this call.
    """

    best_iteration: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0


class TransferOrchestrator:
    """Trains a translator and the source segmenter M_A together by alternating the paper's three steps.

    Args:
        translator: a ``translation.base.Translator`` (CycleGAN, UNIT, MUNIT...), already built, on its device.
        segmenter: M_A, pretrained on the source (a ``segmentation.models.base.Segmenter`` or any logits module;
            may be DDP-wrapped).
        config: hyper-parameters.
        loss_fn: segmentation loss on (logits, float masks); default ``segmentation.losses.create_loss(config.loss,
            mode="multilabel")``.
        normalize: segmenter input normalisation of ``[0, 1]`` images; default
            ``segmentation.data.preprocessing.normalize(x, config.normalize_mode)``.
        run_dir: run folder (``checkpoints/``, ``tb/``); None keeps everything in memory.
        show_progress: tqdm bar on rank 0.
        target_channels: M_A's output channels that the labelled target masks label, when M_A has more classes
            than the target (source pairs train all of them); None: all.
        train_translator: False keeps the translator fixed (``selftrain``'s identity): no warm-up, no discriminative
            or generative step, and the supervised step trains M_A alone.
        channels_last: put translator and segmenter in channels-last memory format (callers pass
            ``runtime.device.use_channels_last``: on CUDA); the values computed are the same to float rounding.
        source_appearance: an image transform of ``[0, 1]`` images applied to the source images of every supervised
            step (after the augmentation, under ``no_grad``), e.g. ``augselftrain``'s appearance randomisation; its
            randomness should come from the global generator, which checkpoints save. None: the images as drawn.
        compile: ``torch.compile`` the training networks (``runtime.device.compile_networks``); the EMA copies that
            predict, select and teach stay eager. Checkpoints are the same files either way.
        dark_gate: pseudo-labels make the dark pixels of each target image certain background
            (``segmentation.postprocess.gate_dark`` at this level); 0: the teacher's probabilities as they are.
    """

    def __init__(self, translator: nn.Module, segmenter: nn.Module, config: TransferConfig,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
                 normalize: Callable[[Tensor], Tensor] | None = None, run_dir: str | os.PathLike | None = None,
                 show_progress: bool = False, target_channels: Sequence[int] | None = None,
                 monitor: TranslationMonitor | None = None, overlay: tuple[Tensor, Tensor | None] | None = None,
                 report: Callable[[str], None] | None = None, train_translator: bool = True,
                 source_appearance: nn.Module | None = None, channels_last: bool = False,
                 compile: bool = False, dark_gate: float = 0.0) -> None:
        if channels_last:  # in place, before the optimizers see the parameters (no DDP wrapper in this loop)
            translator.to(memory_format=torch.channels_last)
            segmenter.to(memory_format=torch.channels_last)
        if compile:
            compile_networks(unwrap(segmenter), *([unwrap(translator)] if train_translator else []))
        self.translator = translator
        self.segmenter = segmenter
        self.config = config
        self.loss_fn = loss_fn if loss_fn is not None else _default_loss(config.loss)
        self.normalize = normalize if normalize is not None else _default_normalize(config.normalize_mode)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.show_progress = show_progress
        self.target_channels = list(target_channels) if target_channels is not None else None
        self.monitor = monitor
        self.overlay = overlay
        self.report = report
        self.train_translator = train_translator
        self.source_appearance = source_appearance
        self.dark_gate = dark_gate
        self.iteration_count = 0
        self.weights = SupervisedWeights(source=config.weight_source, cycle=config.weight_cycle,
                                         target=config.weight_target, pseudo=config.weight_pseudo)
        self._reset_optimizers()
        self.ema_translator: EMA | None = None
        self.ema_segmenter: EMA | None = None
        self.source: ForeverIterator | None = None
        self.target: ForeverIterator | None = None
        self.labelled: ForeverIterator | None = None
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"iteration": -1, "score": -math.inf, "state": None}
        self.augmenter: nn.Module | None = None  # built on the device by _augment when config.augment != "none"
        self._teacher_models: tuple[nn.Module, nn.Module] | None = None  # pseudo_teacher "selected"
        self._teacher_iteration: int | None = None  # the best evaluation the teacher holds

    @property
    def device(self) -> torch.device:
        return next(unwrap(self.segmenter).parameters()).device

    def _reset_optimizers(self) -> None:
        c, model = self.config, unwrap(self.translator)
        self.opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=c.lr_discriminator, betas=c.betas)
        self.opt_g = torch.optim.Adam(model.generator_parameters(), lr=c.lr_generator, betas=c.betas)
        self.opt_s = torch.optim.Adam(self.segmenter.parameters(), lr=c.lr_segmenter, betas=c.betas)

    def _make_iterators(self, source_images: Tensor, source_masks: Tensor, target_images: Tensor,
                        labelled: tuple[Tensor, Tensor] | None, seed: int) -> None:
        c, device = self.config, self.device
        # under torchrun every rank draws the same permutations and takes its disjoint share (rank_indices)
        self.source = ForeverIterator(source_images, source_masks, batch_size=c.batch_size, seed=seed, device=device)
        self.target = ForeverIterator(target_images, batch_size=c.batch_size, seed=seed + 1, device=device)
        self.labelled = (ForeverIterator(*labelled, batch_size=c.batch_size, seed=seed + 2, device=device)
                         if labelled is not None else None)

    # ------------------------------------------------------------------ the paper's loop
    def iteration(self) -> dict[str, Tensor]:
        """One iteration of the method: discriminative, generative, then supervised steps (Sec. III of the paper).

        Returns:
            Losses of each step, prefixed ``discriminative/``, ``generative/``, ``supervised/``.
        """
        c, losses = self.config, {}
        if self.train_translator:
            (a, _), (b,) = next(self.source), next(self.target)
            d = discriminative_step(self.translator, a, b, self.opt_d, amp=c.amp, grad_clip=c.grad_clip)
            losses.update({f"discriminative/{k}": v for k, v in d.items()})
            (a, _), (b,) = next(self.source), next(self.target)
            g = generative_step(self.translator, a, b, self.opt_g, amp=c.amp, grad_clip=c.grad_clip)
            losses.update({f"generative/{k}": v for k, v in g.items()})
        # the supervised loss also trains the generators (the paper's coupling) unless the translator is fixed
        with frozen([] if self.train_translator else unwrap(self.translator).generator_parameters()):
            s = supervised_step(self.translator, self.segmenter, self._supervised_batch(), self.loss_fn, self.normalize,
                                (self.opt_s, self.opt_g) if self.train_translator else (self.opt_s,),
                                weights=self.weights, amp=c.amp, grad_clip=c.grad_clip)
        losses.update({f"supervised/{k}": v for k, v in s.items()})
        sync_from_main(self.translator, buffers_only=True)  # rank 0's BatchNorm statistics, as DDP broadcasts them
        sync_from_main(self.segmenter, buffers_only=True)
        self.ema_translator.update(self.translator)
        self.ema_segmenter.update(self.segmenter)
        self.iteration_count += 1
        return losses

    def _augmenter(self, device: torch.device) -> nn.Module:
        if self.augmenter is None:
            self.augmenter = Augmenter(seed=rank_seed(self.config.seed + 20)).to(device)
        return self.augmenter

    def _augment(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """The same random warp for images and masks, random intensity for images (``config.augment``)."""
        return self._augmenter(images.device)(images, masks)

    def _supervised_batch(self) -> SupervisedBatch:
        c = self.config
        a, y_a = next(self.source)
        if c.augment != "none":
            a, y_a = self._augment(a, y_a)
        if self.source_appearance is not None:
            with torch.no_grad():
                a = self.source_appearance(a)
        batch = SupervisedBatch(a=a, y_a=y_a, target_channels=self.target_channels)
        if self.labelled is not None:
            batch.b_labelled, batch.y_b = next(self.labelled)
            if c.augment != "none":
                batch.b_labelled, batch.y_b = self._augment(batch.b_labelled, batch.y_b)
        if c.weight_pseudo > 0 and self.iteration_count >= c.pseudo_start * c.iterations:
            (b,) = next(self.target)
            teacher_t, teacher_s = self._teacher()
            with autocast(self.device, c.amp):  # no_grad inside; bf16 on CUDA, a no-op on the CPU
                if tuple(c.pseudo_views) == ("translated",):
                    probs = torch.sigmoid(predict_target(teacher_t, teacher_s, b, self.normalize))
                else:  # pseudo-labels from a view average of the teacher models
                    probs = predict_views(teacher_t, teacher_s, b, self.normalize, c.pseudo_views)
            probs = gate_dark(probs.float(), b, self.dark_gate)
            batch.b_unlabelled = b
            batch.pseudo = (probs > 0.5).float()
            batch.pseudo_weight = ((probs > c.pseudo_threshold) | (probs < 1 - c.pseudo_threshold)).float()
            if c.augment == "all":  # one warp for the image, its pseudo-label and its weight
                k = batch.pseudo.shape[1]
                batch.b_unlabelled, warped = self._augment(b, torch.cat([batch.pseudo, batch.pseudo_weight], 1))
                batch.pseudo, batch.pseudo_weight = warped[:, :k], warped[:, k:]
        return batch

    def _teacher(self) -> tuple[nn.Module, nn.Module]:
        """(translator, segmenter) that make the pseudo-labels (``config.pseudo_teacher``)."""
        if self.config.pseudo_teacher == "ema" or self.best["state"] is None:
            return self.ema_translator.module, self.ema_segmenter.module
        if self._teacher_models is None:
            self._teacher_models = (copy.deepcopy(self.ema_translator.module).eval(),
                                    copy.deepcopy(self.ema_segmenter.module).eval())
        if self._teacher_iteration != self.best["iteration"]:  # the selected weights changed: the teacher follows
            self._teacher_models[0].load_state_dict(self.best["state"]["translator"])
            self._teacher_models[1].load_state_dict(self.best["state"]["segmenter"])
            self._teacher_iteration = self.best["iteration"]
        return self._teacher_models

    def warm_up(self, source_images: Tensor, target_images: Tensor, cache: str | os.PathLike | None = None,
                key: str = "") -> dict[str, Any]:
        """Train the translator alone (discriminative + generative steps) for ``config.warmup_iterations``.

        A warmed-up translator is saved once to ``cache`` and loaded by every later run with the same ``key`` (and
        translator class and warm-up length), so a sweep over label fractions pays for it once.

        Args:
            source_images / target_images: ``[N, 1, H, W]`` in ``[0, 1]``.
            cache: file of the warmed-up translator (None: no caching).
            key: identity of the warm-up inputs (data, translator config, seed), checked when loading.

        Returns:
            ``{"cached": bool, "iterations": int, "seconds": float}``.
        """
        c, model = self.config, unwrap(self.translator)
        full_key = _warmup_key(model, c, key)
        start = time.perf_counter()
        if cache is not None and Path(cache).is_file():
            state = load_checkpoint(cache)
            if state.get("key") == full_key:
                model.load_state_dict(state["translator"])
                return {"cached": True, "iterations": c.warmup_iterations, "seconds": time.perf_counter() - start}
        seed_everything(c.seed)
        src = ForeverIterator(source_images, batch_size=c.batch_size, seed=c.seed, device=self.device)
        tgt = ForeverIterator(target_images, batch_size=c.batch_size, seed=c.seed + 1, device=self.device)
        logger = RunLogger(self.run_dir / "tb" if self.run_dir is not None else None)
        logger.layout(convergence_layout())
        for it in progress(range(c.warmup_iterations), desc="warm-up", enabled=self.show_progress):
            (a,), (b,) = next(src), next(tgt)
            d = discriminative_step(self.translator, a, b, self.opt_d, amp=c.amp, grad_clip=c.grad_clip)
            (a,), (b,) = next(src), next(tgt)
            g = generative_step(self.translator, a, b, self.opt_g, amp=c.amp, grad_clip=c.grad_clip)
            if it % c.log_every == 0:
                logger.scalars(d, it, prefix="warmup/discriminative")
                logger.scalars(g, it, prefix="warmup/generative")
            done = it + 1
            if done % c.steps_per_epoch == 0 or done == c.warmup_iterations:
                self._watch(logger, self.translator, done, "warmup", c.warmup_iterations, start)
        logger.close()
        if cache is not None and is_main_process():
            save_checkpoint(cache, {"translator": model.state_dict(), "key": full_key, "config": getattr(
                model, "config", {}), "name": getattr(model, "name", type(model).__name__)})
        return {"cached": False, "iterations": c.warmup_iterations, "seconds": time.perf_counter() - start}

    def fit(self, source_images: Tensor, source_masks: Tensor, target_images: Tensor,
            labelled: tuple[Tensor, Tensor] | None = None, selector: Selector | None = None, *,
            warmup_cache: str | os.PathLike | None = None, warmup_key: str = "",
            resume: bool = False) -> TransferResult:
        """Warm up the translator, then run ``config.iterations`` iterations, selecting the best weights.

        Every ``steps_per_epoch`` iterations (and at the end; with ``config.select_start`` also before the first
        iteration, i.e. the warmed-up translator with M_A unchanged) the EMA models are scored by ``selector``, every
        criterion is logged to TensorBoard, and a checkpoint is written atomically; the best-scoring EMA weights
        become the predictor (:meth:`predict`). With ``resume`` the latest checkpoint in ``run_dir/checkpoints``
        is restored and the run continues exactly where it stopped.

        Args:
            source_images / source_masks: source pairs (a, y_a), ``[N, 1, H, W]`` / ``[N, K, H, W]``.
            target_images: unlabelled target images ``[M, 1, H, W]`` (labelled ones may be included as images).
            labelled: (images, masks) of the labelled target subset, or None at fraction 0.
            selector: returns criteria with a ``"score"`` (higher is better) for (translator, segmenter); None
                keeps the last weights.
            warmup_cache / warmup_key: see :meth:`warm_up`.
            resume: continue from the latest checkpoint when there is one.

        Returns:
            A :class:`TransferResult`.
        """
        c, start = self.config, time.perf_counter()
        ckpt_dir = self.run_dir / "checkpoints" if self.run_dir is not None else None
        latest = latest_checkpoint(ckpt_dir, "iter_*.pt") if (resume and ckpt_dir is not None) else None
        if latest is None:
            if self.train_translator:
                self.warm_up(source_images, target_images, warmup_cache, warmup_key)
            self._reset_optimizers()
            seed_everything(c.seed + 7)
            self._make_iterators(source_images, source_masks, target_images, labelled, c.seed + 10)
            self.ema_translator, self.ema_segmenter = EMA(self.translator, c.ema_decay), EMA(self.segmenter,
                                                                                              c.ema_decay)
        else:
            self._make_iterators(source_images, source_masks, target_images, labelled, c.seed + 10)
            self.ema_translator, self.ema_segmenter = EMA(self.translator, c.ema_decay), EMA(self.segmenter,
                                                                                              c.ema_decay)
            self.load_state_dict(load_checkpoint(latest))
        logger = RunLogger(self.run_dir / "tb" if self.run_dir is not None else None)
        logger.layout(convergence_layout())
        self._started = time.perf_counter()
        if latest is None and c.select_start and c.iterations > 0:
            self._evaluate(selector, logger)  # the starting point: selection may keep it if adaptation only hurts
        self.translator.train()
        self.segmenter.train()
        bar = progress(total=c.iterations, initial=self.iteration_count, desc="transfer", enabled=self.show_progress)
        for _ in bar:
            losses = self.iteration()
            it = self.iteration_count
            if it % c.log_every == 0 or it == c.iterations:
                logger.scalars(losses, it, prefix="transfer")
            if it % c.steps_per_epoch == 0 or it == c.iterations:
                self._evaluate(selector, logger)
                if ckpt_dir is not None:
                    state = self.state_dict()  # every rank: it gathers each rank's own part
                    if is_main_process():
                        save_checkpoint(ckpt_dir / f"iter_{it:07d}.pt", state)
                        keep_latest(ckpt_dir, "iter_*.pt", keep=1)
        if c.iterations == 0 or not self.history:
            self._evaluate(selector, logger)
        logger.close()
        if self.best["state"] is not None:
            self.ema_translator.module.load_state_dict(self.best["state"]["translator"])
            self.ema_segmenter.module.load_state_dict(self.best["state"]["segmenter"])
        if ckpt_dir is not None and is_main_process():
            save_checkpoint(ckpt_dir / "best.pt", {"translator": self.ema_translator.module.state_dict(),
                                                   "segmenter": self.ema_segmenter.module.state_dict(),
                                                   "iteration": self.best["iteration"],
                                                   "score": self.best["score"]})
        return TransferResult(best_iteration=int(self.best["iteration"]), best_score=float(self.best["score"]),
                              history=list(self.history), iterations=self.iteration_count,
                              seconds=time.perf_counter() - start)

    def _evaluate(self, selector: Selector | None, logger: RunLogger) -> None:
        it = self.iteration_count
        if selector is None:
            criteria = {"score": float(it)}
        else:
            criteria = dict(selector(self.ema_translator.module, self.ema_segmenter.module))
            if "score" not in criteria:
                raise ValueError(f"expected a 'score' in the selector's criteria, got {sorted(criteria)}")
        logger.scalars(criteria, it, prefix="selection")
        self.history.append({"iteration": float(it), **{k: float(v) for k, v in criteria.items()}})
        self._watch(logger, self.ema_translator.module, it, "transfer", self.config.iterations,
                    getattr(self, "_started", time.perf_counter()), criteria)
        score = float(criteria["score"])
        if not math.isnan(score) and score >= self.best["score"]:
            self.best = {"iteration": it, "score": score, "state": {
                "translator": copy.deepcopy(self.ema_translator.module.state_dict()),
                "segmenter": copy.deepcopy(self.ema_segmenter.module.state_dict())}}
        self.translator.train()
        self.segmenter.train()

    def _watch(self, logger: RunLogger, translator: nn.Module, step: int, phase: str, total: int, start: float,
               criteria: dict[str, float] | None = None) -> None:
        """At an evaluation: held-out KID / histogram distance and image grids (``monitor``), the segmentation of the
        overlay images, and one line of progress for logs that are not a terminal (``report``)."""
        figures: dict[str, float] = {}
        if self.monitor is not None and is_main_process():
            figures = self.monitor.log(logger, translator, step, f"{phase}/monitor")
        if phase == "transfer" and self.overlay is not None and logger.active:
            logger.image("transfer/images/segmentation", self._overlay_grid(), step)
        if self.report is not None and is_main_process():
            parts = [f"{phase} {step}/{total}"]
            if step > 0:  # the starting point has no rate yet
                rate = (time.perf_counter() - start) / step
                parts += [f"{rate:.2f} s/it", f"eta {rate * max(0, total - step):.0f} s"]
            if criteria is not None and "score" in criteria:
                parts.append(f"score {float(criteria['score']):.4f}")
            parts += [f"{k} {v:.4f}" for k, v in figures.items() if k.startswith(("kid/", "hist/"))]
            self.report(", ".join(parts))
        logger.flush()

    @torch.no_grad()
    def _overlay_grid(self) -> Tensor:
        """Target images with M_A(G_BA(b)) in red and, where labels may be read, the ground truth in green."""
        images, masks = self.overlay
        images = images[:4]
        probs = predict_views(self.ema_translator.module, self.ema_segmenter.module, images.to(self.device),
                              self.normalize, ("translated",)).cpu()
        if self.target_channels is not None:
            probs = probs[:, self.target_channels]
        pred = (probs > 0.5).any(dim=1, keepdim=True).float()
        grey = images.float().cpu().clamp(0, 1)
        truth = (masks[:4].cpu() > 0.5).any(dim=1, keepdim=True).float() if masks is not None else torch.zeros_like(pred)
        rgb = torch.cat([torch.maximum(grey * 0.7, pred), torch.maximum(grey * 0.7, truth * 0.9), grey * 0.7], dim=1)
        return make_grid(rgb, nrow=len(images), padding=2, pad_value=1.0)

    # ------------------------------------------------------------------ prediction
    def _predict_logits(self, images: Tensor, ema: bool = True) -> Tensor:
        translator = self.ema_translator.module if (ema and self.ema_translator is not None) else unwrap(
            self.translator)
        segmenter = self.ema_segmenter.module if (ema and self.ema_segmenter is not None) else unwrap(
            self.segmenter)
        return predict_target(translator, segmenter, images, self.normalize)

    def predict(self, images: Tensor, batch_size: int = 8, views: Sequence[str] | None = None) -> Tensor:
        """Logits of M_A(G_BA(b)) for target images (selected EMA weights), or of an average over views.

        With ``config.predict_views`` other than the paper's ``("translated",)`` the probabilities of the views are
        averaged (see :func:`predict_views`) and the returned logits are ``logit(mean probability)``.

        Args:
            images: ``[N, 1, H, W]`` in ``[0, 1]``.
            batch_size: images per forward pass.
            views: override ``config.predict_views`` (the other views a cell reports).

        Returns:
            Logits ``[N, K, H, W]`` on the CPU.

        Raises:
            ValueError: on an unknown view.
        """
        views = tuple(views if views is not None else self.config.predict_views)
        if views == ("translated",):
            outs = [self._predict_logits(images[i:i + batch_size].to(self.device)).cpu()
                    for i in range(0, len(images), batch_size)]
            return torch.cat(outs)
        translator, segmenter = ((self.ema_translator.module, self.ema_segmenter.module)
                                 if self.ema_translator is not None else (unwrap(self.translator),
                                                                          unwrap(self.segmenter)))
        outs = []
        for i in range(0, len(images), batch_size):
            probs = predict_views(translator, segmenter, images[i:i + batch_size].to(self.device), self.normalize,
                                  views)
            outs.append(torch.logit(probs.clamp(1e-6, 1 - 1e-6)).cpu())
        return torch.cat(outs)

    # ------------------------------------------------------------------ state
    def _rank_state(self) -> dict[str, Any]:
        """What differs between torchrun ranks: data positions (each rank's share), RNG states (augmentation, image
        pools, dropout draw per rank) and the translator's image pools."""
        return {
            "source": self.source.state_dict(), "target": self.target.state_dict(),
            "labelled": self.labelled.state_dict() if self.labelled is not None else None,
            "rng": get_rng_state(),
            "augmenter": self.augmenter.generator.get_state() if self.augmenter is not None else None,
            # rank 0's pools are in the translator's state; the other ranks' travel here
            "pools": pool_states(unwrap(self.translator)) if get_world_size() > 1 else {},
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: the shared state, and each rank's own under ``"ranks"`` (a collective
        under torchrun: every rank calls it, rank 0 saves it)."""
        return {
            "iteration": self.iteration_count,
            "translator": unwrap(self.translator).state_dict(),
            "segmenter": unwrap(self.segmenter).state_dict(),
            "opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_s": self.opt_s.state_dict(),
            "ema_translator": self.ema_translator.state_dict(), "ema_segmenter": self.ema_segmenter.state_dict(),
            "history": self.history, "best": self.best,
            "config": json.loads(json.dumps(self.config.__dict__, default=list)),
            "ranks": gather_objects(self._rank_state()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; each rank takes its own part of ``"ranks"``.

        Raises:
            ValueError: for a checkpoint written by another number of ranks (each rank's data share depends on it).
        """
        ranks = state.get("ranks")
        if ranks is None:  # written before per-rank parts (one process): its parts sit at the top level
            ranks = [{k: state.get(k) for k in ("source", "target", "labelled", "rng", "augmenter")}]
        if len(ranks) != get_world_size():
            how = f"torchrun --nproc_per_node {len(ranks)}" if len(ranks) > 1 else "one process"
            raise ValueError(f"expected a checkpoint of {get_world_size()} rank(s), got one written by {len(ranks)}; "
                             f"resume it with {how}")
        own = ranks[get_rank()]
        self.iteration_count = int(state["iteration"])
        unwrap(self.translator).load_state_dict(state["translator"])
        unwrap(self.segmenter).load_state_dict(state["segmenter"])
        load_pool_states(unwrap(self.translator), own.get("pools") or {})  # this rank's image pools
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_s.load_state_dict(state["opt_s"])
        self.ema_translator.load_state_dict(state["ema_translator"])
        self.ema_segmenter.load_state_dict(state["ema_segmenter"])
        self.source.load_state_dict(own["source"])
        self.target.load_state_dict(own["target"])
        if self.labelled is not None and own["labelled"] is not None:
            self.labelled.load_state_dict(own["labelled"])
        if own.get("augmenter") is not None:  # the augmentation draws continue where they stopped
            set_generator_state(self._augmenter(self.device).generator, own["augmenter"])
        self.history = list(state["history"])
        self.best = state["best"]
        self._teacher_iteration = None  # a "selected" teacher reloads the restored best weights
        set_rng_state(own["rng"])


def _warmup_key(model: nn.Module, config: TransferConfig, key: str) -> str:
    payload = json.dumps({"name": type(model).__name__, "config": getattr(model, "config", None),
                          "iterations": config.warmup_iterations, "batch": config.batch_size, "seed": config.seed,
                          "lr": [config.lr_generator, config.lr_discriminator], "key": key}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _default_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return create_loss(name, mode="multilabel")


def _default_normalize(mode: str) -> Callable[[Tensor], Tensor]:
    return lambda images: normalize(images, mode)


__all__: Sequence[str] = ("EMA", "ForeverIterator", "TransferOrchestrator", "TransferResult")
