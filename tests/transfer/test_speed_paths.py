"""The GPU speed paths of the transfer loop, exercised on the CPU: channels-last networks, an opt-in torch.compile,
and EMA copies that stay eager (issue 14)."""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from runtime.device import compile_networks, configure_backends, plain_copy, use_channels_last
from segmentation.models import create_segmenter
from segmentation.losses import create_loss
from transfer.config import ExperimentConfig, TransferConfig
from transfer.cell import cell_key
from transfer.methods.selftrain import IdentityTranslator
from transfer.orchestrator import EMA, TransferOrchestrator
from translation import create_translator

CONFIG = TransferConfig(iterations=3, warmup_iterations=1, steps_per_epoch=3, batch_size=2, ema_decay=0.5,
                        pseudo_start=0.0, augment="none", log_every=1)


def _data(n=4, size=16):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, 1, size, size, generator=g)
    b = torch.rand(n, 1, size, size, generator=g) ** 2
    return a, (a > 0.5).float(), b


def _floats(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if torch.is_tensor(v) and v.is_floating_point()}


def _update_distance(mine: dict, theirs: dict, start: dict) -> float:
    """How far two runs ended apart, as a share of how far the reference moved from the start (the measure of
    tests/experiments/test_torchrun.py: Adam turns float-order noise in near-zero gradients into steps of the
    learning rate, so absolute weight differences say little)."""
    apart = sum(float((mine[k] - theirs[k]).pow(2).sum()) for k in theirs) ** 0.5
    moved = sum(float((theirs[k] - start[k]).pow(2).sum()) for k in theirs) ** 0.5
    return apart / moved


def _real_orchestrator(**kwargs) -> TransferOrchestrator:
    torch.manual_seed(0)
    translator = create_translator("cyclegan", "tiny")
    segmenter = create_segmenter("unet", in_channels=1, out_channels=1, depth=2, base_channels=4)
    return TransferOrchestrator(translator, segmenter, CONFIG, loss_fn=create_loss("dice_bce", mode="multilabel"),
                                **kwargs)


def _noisy(module: torch.nn.Module) -> set[str]:
    """Parameters whose gradient is zero in exact arithmetic (a convolution bias under instance normalisation): their
    float-rounding gradients are noise that Adam's first steps turn into steps of the full learning rate."""
    return {name for name, p in module.named_parameters() if p.grad is not None and float(p.grad.abs().max()) < 1e-5}


def test_channels_last_networks_compute_what_contiguous_ones_do():
    """Forced on the CPU (the loop turns it on for CUDA only): the tiny CycleGAN (reflection padding, instance norm,
    transposed convolutions) and a U-Net in channels-last format give the contiguous losses and gradients to float
    rounding, and after warm-up and 3 iterations end no farther from the contiguous run than the same contiguous run
    with 2 threads instead of 1 does."""
    a, ya, b = _data()
    plain, nhwc = _real_orchestrator(), _real_orchestrator(channels_last=True)
    conv = next(p for p in nhwc.segmenter.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # one generator loss and its gradients
    x, y = a * 2 - 1, b * 2 - 1
    losses = [orch.translator.generator_losses(x, y) for orch in (plain, nhwc)]
    assert abs(float((losses[0]["loss"] - losses[1]["loss"]).detach())) < 1e-5 * float(losses[0]["loss"].detach())
    for loss in losses:
        loss["loss"].backward()
    noisy = _noisy(plain.translator)
    for (name, p), q in zip(plain.translator.named_parameters(), nhwc.translator.parameters()):
        if p.grad is not None and name not in noisy:
            assert float((p.grad - q.grad).abs().max()) < 1e-4 * float(p.grad.abs().max()), name
    for orch in (plain, nhwc):
        orch.translator.zero_grad(set_to_none=True)
    # the whole loop, against the noise of a thread count
    start = {name: _floats(getattr(plain, name)) for name in ("translator", "segmenter")}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    two_threads = _real_orchestrator()
    two_threads.fit(a, ya, b)
    torch.set_num_threads(threads)
    for orch in (plain, nhwc):
        orch.fit(a, ya, b)
    for name in ("translator", "segmenter"):
        apart = _update_distance(_floats(getattr(nhwc, name)), _floats(getattr(plain, name)), start[name])
        noise = _update_distance(_floats(getattr(two_threads, name)), _floats(getattr(plain, name)), start[name])
        print(f"{name}: channels_last vs contiguous {apart:.2e} of the update; 2 threads vs 1: {noise:.2e}")
        assert apart < max(2 * noise, 1e-3), (name, apart, noise)
    assert use_channels_last(torch.device("cuda"), True) and not use_channels_last(torch.device("cpu"), True)
    assert not use_channels_last(torch.device("cuda"), False)
    configure_backends(torch.device("cpu"))  # nothing to set on the CPU
    assert not torch.backends.cudnn.benchmark


class SmallSegmenter(torch.nn.Module):
    """A 3x3 convolution, instance norm, ReLU and a 1x1 head: small enough to compile in seconds (no bias under the
    norm, so no parameter has a gradient of pure rounding noise)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
                                        torch.nn.InstanceNorm2d(4, affine=True),
                                        torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))

    def forward(self, x):
        return self.body(x)


def _selftrain_orchestrator(compile: bool) -> TransferOrchestrator:
    torch.manual_seed(0)
    return TransferOrchestrator(IdentityTranslator(), SmallSegmenter(), CONFIG.replace(warmup_iterations=0),
                                loss_fn=create_loss("dice_bce", mode="multilabel"), train_translator=False,
                                compile=compile)


def test_the_compiled_loop_equals_the_eager_loop_and_its_ema_stays_eager(tmp_path):
    """torch.compile (inductor, on the CPU) of the student in the self-training loop: 3 iterations with
    pseudo-labels from the first give the eager run's weights to float rounding; the EMA copies that predict,
    select and teach are plain modules, and the checkpoint holds the plain module's keys."""
    a, ya, b = _data()
    eager, compiled = _selftrain_orchestrator(False), _selftrain_orchestrator(True)
    assert compiled.segmenter._compiled_call_impl is not None and eager.segmenter._compiled_call_impl is None
    eager.fit(a, ya, b)
    graphs = counters["stats"]["unique_graphs"]
    compiled.fit(a, ya, b)
    assert counters["stats"]["unique_graphs"] > graphs
    assert list(compiled.segmenter.state_dict()) == list(eager.segmenter.state_dict())  # no "_orig_mod." prefix
    torch.manual_seed(0)
    apart = _update_distance(_floats(compiled.segmenter), _floats(eager.segmenter), _floats(SmallSegmenter()))
    print(f"compiled vs eager segmenter: {apart:.2e} of the update")
    assert apart < 1e-3, apart
    ema = compiled.ema_segmenter.module
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in ema.modules())


def test_the_compiled_transfer_loop_equals_the_eager_one(toys):
    """The whole loop (warm-up, discriminative, generative and supervised steps, pseudo-labels) with the toy
    translator's four networks and the toy segmenter compiled: the eager run's weights to float rounding."""
    Translator, Segmenter, loss, norm = toys
    a, ya, b = _data(size=8)
    runs, graphs = {}, counters["stats"]["unique_graphs"]
    for compiled in (False, True):
        torch.manual_seed(1)
        orch = TransferOrchestrator(Translator(), Segmenter(), CONFIG, loss_fn=loss, normalize=norm,
                                    compile=compiled)
        if compiled:
            start = {"translator": _floats(orch.translator), "segmenter": _floats(orch.segmenter)}
        orch.fit(a, ya, b)
        runs[compiled] = orch
    assert runs[True].translator.g_ab._compiled_call_impl is not None
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo captured and compiled graphs, no silent fallback
    for name in ("translator", "segmenter"):
        apart = _update_distance(_floats(getattr(runs[True], name)), _floats(getattr(runs[False], name)), start[name])
        print(f"compiled vs eager transfer loop, {name}: {apart:.2e} of the update")
        assert apart < 1e-3, (name, apart)


def test_compile_networks_compiles_a_translators_networks_and_plain_copy_strips_it():
    translator = create_translator("cyclegan", "tiny")
    compile_networks(translator)
    children = [c for c in translator.children() if any(True for _ in c.parameters())]
    assert len(children) >= 4 and all(c._compiled_call_impl is not None for c in children)
    copied = plain_copy(translator)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in copied.modules())
    segmenter = SmallSegmenter()
    compile_networks(segmenter)
    assert segmenter._compiled_call_impl is not None
    # an EMA of a compiled student follows its own weights, not the student's
    ema = EMA(segmenter, 0.5)
    with torch.no_grad():
        for p in segmenter.parameters():
            p.add_(1.0)
    x = torch.rand(1, 1, 8, 8)
    assert not torch.allclose(ema.module(x), segmenter.body(x))


def test_speed_options_are_not_part_of_a_cells_identity():
    base = ExperimentConfig(method="transfer")
    assert cell_key(base.replace(compile=True, channels_last=False)) == cell_key(base)
