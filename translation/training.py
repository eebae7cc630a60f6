"""Training loop for unpaired translators (CycleGAN, UNIT, MUNIT), with a divergence guard and convergence figures.

The loop knows only the :class:`translation.base.Translator` interface: each step it asks the translator for
``generator_losses(a, b)`` and ``discriminator_losses(a, b)`` (dicts of named losses with a ``"loss"`` total),
backpropagates the totals, steps two Adam optimisers and logs every term. The generator step comes first and the
discriminator step second, as in CycleGAN (Zhu et al. 2017); the discriminators are frozen during the generator step.

Learning rate: Adam 2e-4, betas (0.5, 0.999), constant for the first ``decay_start`` fraction of the iterations and
then decayed linearly to zero (Zhu et al. 2017). On CUDA the step runs under bf16 autocast with channels_last.

Convergence is watched on held-out images at each epoch (Oliveira & dos Santos 2018 judged translations by eye):
the Wasserstein-1 distance between the grey-level histograms of translated and real target images, the KID between
them in the feature space of a fixed random network (with its standard error), and the cycle reconstruction error;
all go to TensorBoard, with image grids ``a, G_AB(a), G_BA(G_AB(a))`` and the same from ``b``, and to
``metrics.json``. A :class:`translation.guard.DivergenceGuard` watches every step; on a NaN/inf loss or a
discriminator that wins outright for a sustained period, the loop restores the last good checkpoint, lowers the
learning rates and says so in the log, ``train.log`` and TensorBoard.

Run folder: ``config.json``, ``checkpoints/step_<N>.pt`` (atomic; the newest few and the newest good one are kept),
``tb/``, ``metrics.json``, ``train.log`` and, at the end, ``translator.pt`` (:func:`translation.io.save_translator`).

Single process: the translator methods are not a DDP ``forward``, so the loop does not shard data across ranks; it
logs and saves on rank 0 only, so it is safe to start under ``torchrun`` but gains nothing from it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from runtime import (
    RunLogger,
    all_reduce_gradients,
    autocast,
    config_to_dict,
    get_rank,
    get_rng_state,
    get_world_size,
    is_main_process,
    keep_latest,
    latest_checkpoint,
    load_checkpoint,
    progress,
    save_checkpoint,
    save_config,
    seed_everything,
    set_rng_state,
    unwrap,
)
from runtime.distributed import gather_objects, mean_over_ranks
from runtime.io import atomic_write_json
from runtime.loader import stream_batches
from runtime.store import DiskArray, is_stored
from translation.guard import DivergenceGuard, Verdict
from translation.io import save_translator
from translation.metrics import histogram_distance, kid, kid_features
from translation.pool import load_pool_states, pool_states

__all__ = ["TranslationConfig", "TranslationResult", "train_translator", "training_step", "translate_batches"]

logger = logging.getLogger(__name__)

_UNCHECKED_ON_RESUME = ("progress", "log_every", "image_every", "sync_every", "figures")


@dataclass(frozen=True)
class TranslationConfig:
    """Everything that defines a translator training run (saved as ``config.json``).

    Args:
        iterations: optimisation steps (one generator and one discriminator update each).
        batch_size: images of each domain per step.
        lr: initial learning rate of both optimisers.
        betas: Adam betas.
        decay_start: fraction of ``iterations`` after which the learning rate decays linearly to 0.
        seed: seeds the global RNGs and the data order.
        amp: bf16 autocast on CUDA (no effect on CPU).
        channels_last: channels_last memory format on CUDA (no effect on CPU).
        checkpoint_every: steps between checkpoints (one is also written at step 0 and at the end).
        keep_checkpoints: newest checkpoints kept (plus the newest good one, for rollbacks).
        log_every: steps between loss logs to TensorBoard.
        sync_every: steps whose losses are read back (one device sync) and checked by the guard together; 1 checks
            each step, a larger value keeps a GPU busy. Logs, evaluations and checkpoints always come after a check,
            so a checkpoint never holds an unchecked step.
        image_every: steps between image grids (0: only at the evaluations).
        eval_every: steps between held-out evaluations; 0 means once per epoch (``max(N_a, N_b) // batch_size``).
        eval_images: at most this many held-out images per domain are evaluated.
        kid_subset_size: images per KID subset (lowered to the number of held-out images).
        kid_subsets: number of KID subsets.
        kid_size: side of the images in the KID feature network.
        hist_bins: bins of the histogram distance.
        figures: also log a matplotlib figure of the grey-level histograms at each evaluation.
        guard: use the divergence guard.
        guard_window: steps a winning discriminator must persist.
        guard_d_floor: discriminator total loss below which it "wins" (LSGAN scale: 0 for a perfect one).
        guard_g_ceiling: mean generator adversarial term above which it "loses" (LSGAN scale: 1 against a perfect D).
        guard_lr_factor: learning-rate multiplier after a rollback.
        guard_max_rollbacks: rollbacks before the run gives up with an error.
        domain_a: name of domain A (stored with the translator).
        domain_b: name of domain B.
        progress: show a progress bar.

    Raises:
        ValueError: on a value out of range (names the field).
    """

    iterations: int = 20000
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_start: float = 0.5
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    sync_every: int = 1
    image_every: int = 0
    eval_every: int = 0
    eval_images: int = 64
    kid_subset_size: int = 50
    kid_subsets: int = 50
    kid_size: int = 128
    hist_bins: int = 64
    figures: bool = True
    guard: bool = True
    guard_window: int = 200
    guard_d_floor: float = 0.02
    guard_g_ceiling: float = 0.9
    guard_lr_factor: float = 0.5
    guard_max_rollbacks: int = 3
    domain_a: str = "a"
    domain_b: str = "b"
    progress: bool = True

    def __post_init__(self) -> None:
        positive = ("iterations", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "sync_every",
                    "eval_images", "kid_subsets", "guard_window")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} >= 1, got {value!r}")
        for name in ("image_every", "eval_every", "seed", "guard_max_rollbacks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"expected {name} >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"expected lr > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"expected betas as two values in [0, 1), got {self.betas}")
        if not 0 <= self.decay_start <= 1:
            raise ValueError(f"expected decay_start in [0, 1], got {self.decay_start}")
        if self.kid_subset_size < 2:
            raise ValueError(f"expected kid_subset_size >= 2, got {self.kid_subset_size}")
        if self.kid_size < 16:
            raise ValueError(f"expected kid_size >= 16, got {self.kid_size}")
        if self.hist_bins < 2:
            raise ValueError(f"expected hist_bins >= 2, got {self.hist_bins}")
        if not 0 < self.guard_lr_factor < 1:
            raise ValueError(f"expected guard_lr_factor in (0, 1), got {self.guard_lr_factor}")


@dataclass
class TranslationResult:
    """What :func:`train_translator` returns.

    Attributes:
        translator: the trained translator (unwrapped).
        steps: optimisation steps done.
        history: one dict per held-out evaluation (``step``, ``epoch``, ``hist/b2a``, ``kid/b2a``, ...).
        rollbacks: one dict per guard rollback (``step``, ``kind``, ``message``, ``to_step``, ``lr_scale``).
        final_losses: the last step's losses, ``g/<term>`` and ``d/<term>``.
        translator_path: the saved translator file (None on ranks other than 0).
        run_dir: the run folder.
        seconds: wall time of this call.
    """

    translator: nn.Module
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)
    translator_path: Path | None = None
    run_dir: Path | None = None
    seconds: float = 0.0


class _ConstantThenLinearDecay:
    """Learning-rate factor: 1 until ``start``, then linear to 0 at ``total`` (a picklable LambdaLR lambda)."""

    def __init__(self, total: int, decay_start: float) -> None:
        self.total = total
        self.start = int(round(decay_start * total))

    def __call__(self, step: int) -> float:
        if step < self.start or self.total <= self.start:
            return 1.0
        return max(0.0, 1.0 - (step - self.start) / (self.total - self.start))


def _check_images(name: str, images: Tensor | DiskArray | None, allow_none: bool = False) -> None:
    if images is None and allow_none:
        return
    if is_stored(images):  # decoded by the dataset cache: [N, 1, H, W], in range by construction
        if len(images) < 1:
            raise ValueError(f"expected {name} as a non-empty [N, C, H, W] array, got 0 rows")
        return
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected {name} as a non-empty [N, C, H, W] tensor in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"expected {name} as a float tensor in [-1, 1], got {images.dtype}; use x * 2 - 1 of [0, 1]")
    low, high = float(images.min()), float(images.max())
    if low < -1.001 or high > 1.001:
        raise ValueError(f"expected {name} in [-1, 1], got values in [{low:.3g}, {high:.3g}]; "
                         "convert [0, 1] images with x * 2 - 1")


def _checksum(images: Tensor | DiskArray) -> str:
    if is_stored(images):
        return images.identity()
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


@torch.no_grad()
def translate_batches(fn: Any, images: Tensor, batch_size: int, device: torch.device, amp: bool = True,
                      channels_last: bool = False) -> Tensor:
    """Apply ``fn`` (e.g. ``translator.a_to_b``) to ``images`` in batches on ``device``.

    Returns float32 images on ``images``' device.

    Shape:
        ``[N, C, H, W] -> [N, C', H, W]``.
    """
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            y = fn(x)
        out.append(y.float().contiguous().to(images.device))
    return torch.cat(out)


def training_step(translator: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, a: Tensor,
                  b: Tensor, amp: bool = True) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One optimisation step: the generator update (discriminators frozen), then the discriminator update.

    The translations made in the generator step are handed to ``discriminator_losses`` (``fakes``), as in CycleGAN's
    ``optimize_parameters``. Under bf16 autocast on CUDA when ``amp``; the device is the inputs'. This is the step
    of :func:`train_translator` and of ``benchmarks/bench_translation.py``.

    Args:
        translator: a :class:`translation.base.Translator`.
        opt_g: optimiser of ``translator.generator_parameters()``.
        opt_d: optimiser of ``translator.discriminator_parameters()``.
        a: a batch of domain A, ``[B, C, H, W]`` in ``[-1, 1]``.
        b: a batch of domain B.
        amp: bf16 autocast on CUDA.

    Returns:
        ``(generator_losses, discriminator_losses)``, the dicts the translator returned (not synchronised).
    """
    d_params = [p for group in opt_d.param_groups for p in group["params"]]
    for p in d_params:
        p.requires_grad_(False)
    try:
        fakes: dict[str, Tensor] = {}
        with autocast(a.device, amp):
            g_losses = translator.generator_losses(a, b, fakes=fakes)
        opt_g.zero_grad(set_to_none=True)
        g_losses["loss"].backward()
    finally:
        for p in d_params:
            p.requires_grad_(True)
    all_reduce_gradients(p for group in opt_g.param_groups for p in group["params"])
    opt_g.step()
    with autocast(a.device, amp):
        d_losses = translator.discriminator_losses(a, b, fakes=fakes)
    opt_d.zero_grad(set_to_none=True)
    d_losses["loss"].backward()
    all_reduce_gradients(d_params)
    opt_d.step()
    return g_losses, d_losses


class _Trainer:
    """The state of one run; :func:`train_translator` is its public face."""

    def __init__(self, translator: nn.Module, images_a: Tensor, images_b: Tensor, config: TranslationConfig,
                 run_dir: Path, held_out_a: Tensor | None, held_out_b: Tensor | None) -> None:
        self.translator = translator
        self.model = unwrap(translator)
        self.images_a, self.images_b = images_a, images_b
        self.config = config
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.main = is_main_process()
        self.device = next(self.model.parameters()).device
        self.channels_last = config.channels_last and self.device.type == "cuda"
        self.amp = config.amp
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(list(self.model.generator_parameters()), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(list(self.model.discriminator_parameters()), lr=config.lr, betas=config.betas)
        if not self.opt_g.param_groups[0]["params"] or not self.opt_d.param_groups[0]["params"]:
            raise ValueError("expected a translator with generator and discriminator parameters, got an empty group")
        decay = _ConstantThenLinearDecay(config.iterations, config.decay_start)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.guard = DivergenceGuard(
            window=config.guard_window, d_loss_floor=config.guard_d_floor, g_adv_ceiling=config.guard_g_ceiling,
            lr_factor=config.guard_lr_factor, max_rollbacks=config.guard_max_rollbacks) if config.guard else None
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.rollbacks: list[dict[str, Any]] = []
        # Under torchrun each rank takes its own share of every epoch (rank r reads slots r, r + world, ...).
        self.world, self.rank = get_world_size(), get_rank()
        self.steps_per_epoch = max(1, max(images_a.shape[0], images_b.shape[0]) // (config.batch_size * self.world))
        self.eval_every = config.eval_every or self.steps_per_epoch
        n = config.eval_images
        self.eval_source = "held_out" if held_out_a is not None and held_out_b is not None else "train"
        self.eval_a = (held_out_a if held_out_a is not None else images_a)[:n]
        self.eval_b = (held_out_b if held_out_b is not None else images_b)[:n]
        self._real_features: dict[str, Tensor] = {}
        self._reader: Any = None
        self._next_step = -1
        self.log = RunLogger(run_dir / "tb" if self.main else None)

    # ----------------------------------------------------------------------------------------- data order
    def batch_index(self, step: int, offset: int, n: int) -> Tensor:
        """This rank's rows of domain ``offset`` (0: A, 1: B) at ``step``: a function of (seed, step) only."""
        epoch, position = divmod(step, self.steps_per_epoch)
        size = self.config.batch_size
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch * 2 + offset)
        order = torch.randperm(n, generator=generator)
        return order[((position * self.world + self.rank) * size + torch.arange(size)) % n]

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """The batch of ``step``, so that resume needs no data-loader state.

        Rows are read ahead by :func:`runtime.loader.stream_batches` (worker processes for images kept on disk);
        the reader restarts when the step is not the one it expects (resume, rollback).
        """
        if self._reader is None or self._next_step != step:
            self._reader = None  # a reader of other steps: its workers stop before new ones start
            indices = ((self.batch_index(s, 0, len(self.images_a)), self.batch_index(s, 1, len(self.images_b)))
                       for s in range(step, self.config.iterations))
            self._reader = stream_batches([self.images_a, self.images_b], indices, device=self.device)
        self._next_step = step + 1
        a, b = next(self._reader)
        if self.channels_last:
            a, b = (x.contiguous(memory_format=torch.channels_last) for x in (a, b))
        return a, b

    # ----------------------------------------------------------------------------------------- one step
    def train_step(self, a: Tensor, b: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        g_losses, d_losses = training_step(self.model, self.opt_g, self.opt_d, a, b, amp=self.amp)
        self.sched_g.step()
        self.sched_d.step()
        return g_losses, d_losses

    # ----------------------------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "translator": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "rng": get_rng_state(),
            "guard": self.guard.state_dict() if self.guard is not None else None,
            "history": self.history,
            "rollbacks": self.rollbacks,
            "config": config_to_dict(self.config),
        }

    def save(self) -> None:
        """Write a checkpoint (rank 0), with every rank's image pools (a collective under torchrun: all ranks call
        it at the same steps)."""
        pools = gather_objects(pool_states(unwrap(self.model))) if get_world_size() > 1 else None
        if not self.main:
            return
        healthy = self.guard is None or self.guard.healthy
        name = f"step_{self.step:08d}.pt" if healthy else f"step_{self.step:08d}.suspect.pt"
        state = self.state()
        if pools is not None:
            state["rank_pools"] = pools
        save_checkpoint(self.ckpt_dir / name, state)
        self.prune()

    def checkpoints(self, good_only: bool = False) -> list[Path]:
        """Checkpoint files, newest first."""
        files = [p for p in self.ckpt_dir.glob("step_*.pt") if not p.name.startswith(".")]
        if good_only:
            files = [p for p in files if ".suspect" not in p.name]
        return sorted(files, key=lambda p: int(p.name.split("_")[1].split(".")[0]), reverse=True)

    def prune(self) -> None:
        """Keep the newest ``keep_checkpoints`` checkpoints and the newest healthy one (for a rollback)."""
        keep_latest(self.ckpt_dir, "step_*.pt", self.config.keep_checkpoints,
                    also_keep=self.checkpoints(good_only=True)[:1])

    def restore(self, path: Path, full: bool = True) -> None:
        """Load a checkpoint; ``full=False`` (a rollback) keeps the guard's counters and the rollback list."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["translator"])
        pools = state.get("rank_pools")
        if pools is not None and len(pools) == get_world_size():  # this rank's own pools, not rank 0's
            load_pool_states(unwrap(self.model), pools[get_rank()])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        if full:
            self.rollbacks = list(state["rollbacks"])
            if self.guard is not None and state["guard"] is not None:
                self.guard.load_state_dict(state["guard"])

    # ----------------------------------------------------------------------------------------- guard
    def roll_back(self, verdict: Verdict) -> None:
        assert self.guard is not None
        if not self.guard.can_roll_back():
            raise RuntimeError(
                f"training diverged ({verdict.message}) after {self.guard.rollbacks} rollbacks; lower the learning "
                f"rate (--lr, now {self.config.lr:g} x {self.guard.lr_scale:g}) or raise guard_max_rollbacks")
        good = self.checkpoints(good_only=True)
        if not good:
            raise RuntimeError(f"training diverged ({verdict.message}) and {self.ckpt_dir} holds no good checkpoint "
                               "to roll back to")
        failed_at = verdict.step
        self.restore(good[0], full=False)
        scale = self.guard.record_rollback()
        for sched in (self.sched_g, self.sched_d):
            sched.base_lrs = [self.config.lr * scale for _ in sched.base_lrs]
            factor = sched.lr_lambdas[0](sched.last_epoch)
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                group["lr"] = base * factor
        event = {"step": failed_at, "kind": verdict.kind, "message": verdict.message, "to_step": self.step,
                 "checkpoint": good[0].name, "lr_scale": scale}
        self.rollbacks.append(event)
        message = (f"divergence guard: {verdict.message}; rolled back to {good[0].name} (step {self.step}) and "
                   f"lowered the learning rate to {self.config.lr * scale:.3g} (x{scale:g})")
        self.note(message)
        self.log.text("guard/rollback", message, failed_at)
        self.log.scalars({"rollbacks": len(self.rollbacks), "lr_scale": scale, "failed_at": failed_at}, failed_at,
                         prefix="guard")

    def note(self, message: str) -> None:
        """Say something in the Python log and in ``train.log``."""
        logger.warning(message)
        if self.main:
            with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def check(self, pending: list[tuple[int, list[str], Tensor]]) -> dict[str, float] | None:
        """Feed the pending steps' losses to the guard; roll back and return None on a verdict, else the last losses."""
        last: dict[str, float] = {}
        # the mean over the ranks under torchrun: every rank's guard sees the same losses and so takes the same
        # decision (a rollback on one rank alone would leave the others waiting in the next all-reduce)
        values = mean_over_ranks(torch.stack([v for _, _, v in pending])).tolist() if len(
            {len(n) for _, n, _ in pending}) == 1 else [mean_over_ranks(v).tolist() for _, _, v in pending]
        for (step, names, _), row in zip(pending, values):
            last = dict(zip(names, row))
            if self.guard is not None:
                verdict = self.guard.update(step, {k[2:]: v for k, v in last.items() if k.startswith("d/")},
                                            {k[2:]: v for k, v in last.items() if k.startswith("g/")})
                if verdict is not None:
                    self.roll_back(verdict)
                    return None
            elif not all(math.isfinite(v) for v in row):
                raise RuntimeError(f"non-finite loss at step {step}: {last}; enable the guard or lower the lr")
        return last

    # ----------------------------------------------------------------------------------------- evaluation
    def translate(self, direction: str, images: Tensor) -> Tensor:
        fn = self.model.a_to_b if direction == "a2b" else self.model.b_to_a
        return translate_batches(fn, images, self.config.batch_size * 4, self.device, self.amp, self.channels_last)

    def evaluate(self) -> dict[str, Any]:
        """Held-out figures: histogram distance, KID (mean and standard error), cycle error, per direction.

        A translator with ``update_domain_style`` (MUNIT) first gets the mean style codes of the training images,
        so that evaluation, and the saved translator (the last evaluation precedes the save), use them.
        """
        config = self.config
        was_training = self.model.training
        self.model.eval()
        record: dict[str, Any] = {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                                  "source": self.eval_source}
        try:
            if hasattr(self.model, "update_domain_style"):  # MUNIT: translate with each domain's mean style code
                with torch.no_grad():
                    self.model.update_domain_style(self.images_a, "a", batch_size=self.config.batch_size * 4)
                    self.model.update_domain_style(self.images_b, "b", batch_size=self.config.batch_size * 4)
            for direction, source, target in (("a2b", self.eval_a, self.eval_b), ("b2a", self.eval_b, self.eval_a)):
                back = "b2a" if direction == "a2b" else "a2b"
                fake = self.translate(direction, source)
                cycled = self.translate(back, fake)
                record[f"hist/{direction}"] = histogram_distance(fake, target, bins=config.hist_bins)
                self.histogram_figure(direction, source, fake, target)
                record[f"cycle_l1/{direction}"] = float((cycled - source.float()).abs().mean())
                if source.shape[0] >= 2 and target.shape[0] >= 2:
                    if direction not in self._real_features:
                        self._real_features[direction] = kid_features(target.float(), size=config.kid_size)
                    mean, se = kid(fake, target, subset_size=config.kid_subset_size, num_subsets=config.kid_subsets,
                                   size=config.kid_size, seed=config.seed,
                                   features=(None, self._real_features[direction]))
                    record[f"kid/{direction}"], record[f"kid_se/{direction}"] = mean, se
            if self.step == 0:  # the gap before any translation, for reference
                record["hist/untranslated"] = histogram_distance(self.eval_a, self.eval_b, bins=config.hist_bins)
                for direction, source, target in (("a2b", self.eval_a, self.eval_b), ("b2a", self.eval_b, self.eval_a)):
                    if direction in self._real_features:
                        mean, se = kid(source.float(), target, subset_size=config.kid_subset_size,
                                       num_subsets=config.kid_subsets, size=config.kid_size, seed=config.seed,
                                       features=(None, self._real_features[direction]))
                        record[f"kid/untranslated_{direction}"], record[f"kid_se/untranslated_{direction}"] = mean, se
            self.image_grid()
        finally:
            self.model.train(was_training)
        return record

    def histogram_figure(self, direction: str, source: Tensor, fake: Tensor, target: Tensor) -> None:
        """TensorBoard figure: grey-level histograms of the source, its translation and the real target images."""
        if not self.log.active or not self.config.figures:
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:  # pragma: no cover - matplotlib is optional
            return
        figure, axis = plt.subplots(figsize=(5, 3), dpi=80)
        edges = torch.linspace(-1, 1, self.config.hist_bins + 1)
        for label, images in (("source", source), ("translated", fake), ("real target", target)):
            counts = torch.histc(images.detach().float().cpu().clamp(-1, 1), bins=self.config.hist_bins, min=-1, max=1)
            axis.stairs((counts / counts.sum()).numpy(), edges.numpy(), label=label)
        axis.set_xlabel("grey level ([-1, 1])")
        axis.set_title(f"{direction}, step {self.step}")
        axis.legend(fontsize=7)
        figure.tight_layout()
        self.log.figure(f"histograms/{direction}", figure, self.step)
        plt.close(figure)

    def image_grid(self) -> None:
        """TensorBoard grids: rows a, G_AB(a), G_BA(G_AB(a)) and b, G_BA(b), G_AB(G_BA(b))."""
        if not self.log.active:
            return
        from torchvision.utils import make_grid

        for name, source, there, back in (("a", self.eval_a, "a2b", "b2a"), ("b", self.eval_b, "b2a", "a2b")):
            x = source[:4].float()
            fake = self.translate(there, x)
            rows = torch.cat([x, fake, self.translate(back, fake)])[:, :1]
            grid = make_grid((rows.cpu() + 1) / 2, nrow=x.shape[0], padding=2, pad_value=1.0)
            self.log.image(f"images/{name}_translated_cycled", grid, self.step)

    def log_evaluation(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        scalars = {k: v for k, v in record.items() if isinstance(v, float) and k != "epoch"}
        self.log.scalars(scalars, self.step, prefix=f"{self.eval_source}")
        self.log.flush()
        if self.main:
            atomic_write_json(self.run_dir / "metrics.json", {"history": self.history, "rollbacks": self.rollbacks})

    # ----------------------------------------------------------------------------------------- the loop
    def run(self) -> dict[str, float]:
        config = self.config
        self.translator.train()
        if self.step == 0 and not self.history:
            self.log_evaluation(self.evaluate())
        if not self.checkpoints():
            self.save()
        last: dict[str, float] = {}
        pending: list[tuple[int, list[str], Tensor]] = []
        bar = progress(total=config.iterations, initial=self.step, desc="translate", enabled=config.progress)
        try:
            while self.step < config.iterations:
                a, b = self.batch(self.step)
                g_losses, d_losses = self.train_step(a, b)
                names = [f"g/{k}" for k in g_losses] + [f"d/{k}" for k in d_losses]
                pending.append((self.step, names, torch.stack(
                    [v.detach().float().reshape(()) for v in (*g_losses.values(), *d_losses.values())])))
                self.step += 1
                bar.update(1)
                due_log = self.step % config.log_every == 0
                due_eval = self.step % self.eval_every == 0 or self.step == config.iterations
                due_save = self.step % config.checkpoint_every == 0 or self.step == config.iterations
                if len(pending) < config.sync_every and not (due_log or due_eval or due_save):
                    continue
                # one device sync for the pending steps; nothing is logged, evaluated or saved before this check
                checked, pending = self.check(pending), []
                if checked is None:
                    if hasattr(bar, "refresh"):
                        bar.n = self.step
                        bar.refresh()
                    continue
                last = checked
                if due_log:
                    self.log.scalars(last, self.step, prefix="train")
                    self.log.scalars({"g": self.opt_g.param_groups[0]["lr"], "d": self.opt_d.param_groups[0]["lr"]},
                                     self.step, prefix="lr")
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(g=f"{last['g/loss']:.3f}", d=f"{last['d/loss']:.3f}", refresh=False)
                if config.image_every and self.step % config.image_every == 0:
                    was_training = self.model.training
                    self.model.eval()
                    self.image_grid()
                    self.model.train(was_training)
                if due_eval:
                    self.log_evaluation(self.evaluate())
                if due_save:
                    self.save()
        finally:
            if hasattr(bar, "close"):
                bar.close()
        return last


def train_translator(translator: nn.Module, images_a: Tensor, images_b: Tensor, config: TranslationConfig,
                     run_dir: str | Path, resume: bool = False, held_out_a: Tensor | None = None,
                     held_out_b: Tensor | None = None) -> TranslationResult:
    """Train an unpaired translator between two image sets (CycleGAN, UNIT or MUNIT alike).

    The translator is trained in place on the device of its parameters; the images may stay on the CPU (batches are
    moved) or already sit on that device. At the end it is saved with :func:`translation.io.save_translator` as
    ``run_dir/translator.pt`` with its image size, normalisation, domain names and data checksums.

    Args:
        translator: a :class:`translation.base.Translator` (possibly wrapped; it is unwrapped).
        images_a: training images of domain A in ``[-1, 1]`` (``x * 2 - 1`` of the pipeline's ``[0, 1]`` images).
        images_b: training images of domain B, same channels and size.
        config: the run's :class:`TranslationConfig`.
        run_dir: the run folder (created).
        resume: continue from the newest checkpoint in ``run_dir/checkpoints`` exactly (weights, optimisers,
            schedulers, image pools, RNG, step, guard, history). The config must match the saved one.
        held_out_a: held-out images of domain A for the convergence figures (training images when None).
        held_out_b: held-out images of domain B.

    Returns:
        A :class:`TranslationResult`.

    Raises:
        ValueError: on images of the wrong shape or range, or a config that differs from the saved one on resume.
        FileExistsError: when ``run_dir`` already holds checkpoints and ``resume`` is False.
        FileNotFoundError: when ``resume`` is True and there is no checkpoint.
        RuntimeError: when the guard runs out of rollbacks.

    Shape:
        images_a ``[N_a, C, H, W]``, images_b ``[N_b, C, H, W]``.

    References:
        Zhu et al. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks. ICCV 2017.
        Oliveira, dos Santos. Deep transfer learning for segmentation of anatomical structures in chest
        radiographs. SIBGRAPI 2018.
        Binkowski et al. Demystifying MMD GANs. ICLR 2018 (KID).
    """
    started = time.perf_counter()
    if not isinstance(config, TranslationConfig):
        raise TypeError(f"expected a TranslationConfig, got {type(config).__name__}")
    for name, images, optional in (("images_a", images_a, False), ("images_b", images_b, False),
                                   ("held_out_a", held_out_a, True), ("held_out_b", held_out_b, True)):
        _check_images(name, images, allow_none=optional)
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"expected images_a and images_b of the same [C, H, W], got {tuple(images_a.shape[1:])} "
                         f"and {tuple(images_b.shape[1:])}; load both at the same --size")
    run_dir = Path(run_dir)
    trainer = _Trainer(translator, images_a, images_b, config, run_dir, held_out_a, held_out_b)
    try:
        if resume:
            path = latest_checkpoint(trainer.ckpt_dir, "step_*.pt")
            if path is None:
                raise FileNotFoundError(f"no checkpoint in {trainer.ckpt_dir} to resume from; drop --resume to start "
                                        "a new run")
            saved = load_checkpoint(path)["config"]
            current = config_to_dict(config)
            changed = sorted(k for k in current if k not in _UNCHECKED_ON_RESUME and current[k] != saved.get(k))
            if changed:
                raise ValueError(f"expected the configuration saved in {path} on resume, got changes in {changed}; "
                                 "resume with the same settings or start a new --run-dir")
            trainer.restore(path, full=True)
            trainer.note(f"resumed from {path.name} at step {trainer.step}")
        else:
            if trainer.checkpoints():
                raise FileExistsError(f"{trainer.ckpt_dir} already holds checkpoints; pass --resume to continue that "
                                      "run or choose a new --run-dir")
            seed_everything(config.seed)
            if trainer.main:
                run_dir.mkdir(parents=True, exist_ok=True)
                save_config(config, run_dir / "config.json")
        final = trainer.run()
        translator_path = None
        if trainer.main:
            translator_path = run_dir / "translator.pt"
            metadata = {
                "image_size": list(images_a.shape[-2:]),
                "channels": int(images_a.shape[1]),
                "normalization": "[-1, 1]: x * 2 - 1 of grey levels scaled to [0, 1] (bone bright)",
                "domains": {"a": config.domain_a, "b": config.domain_b},
                "checksums": {"a": _checksum(images_a), "b": _checksum(images_b)},
                "num_images": {"a": int(images_a.shape[0]), "b": int(images_b.shape[0])},
                "steps": trainer.step,
                "training_config": config_to_dict(config),
                "final_metrics": trainer.history[-1] if trainer.history else {},
            }
            save_translator(trainer.model, translator_path, metadata)
            atomic_write_json(run_dir / "metrics.json", {"history": trainer.history, "rollbacks": trainer.rollbacks,
                                                         "final_losses": final})
    finally:
        trainer.log.close()
    return TranslationResult(translator=trainer.model, steps=trainer.step, history=trainer.history,
                             rollbacks=trainer.rollbacks, final_losses=final, translator_path=translator_path,
                             run_dir=run_dir, seconds=time.perf_counter() - started)

