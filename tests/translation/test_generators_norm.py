"""The normalisation layers of translation.generators against the hand-written implementation they replaced.

``InstanceNorm2d``, ``LayerNorm2d`` and ``adaptive_instance_norm`` now call torch's fused ``group_norm`` kernel; the
reference below is the previous code (``var_mean`` in float32, then the affine in float32, then a cast back to the
input dtype), kept verbatim to pin that nothing but speed changed: outputs, gradients, dtypes, memory format,
state_dict keys, and whole translators saved with the reference and loaded with the new code.

Tolerances. A float32 tensor must match to ``atol = rtol = 1e-5``: both compute the same statistics in float32 and
differ only in summation order. A bf16 tensor (the output, or a bf16 leaf's gradient, under bf16 autocast) must
match to one bf16 unit in the last place, ``rtol = 2**-7`` (bf16 keeps 8 significant bits, so an ulp is at most
``2**-7 |v|``) plus ``atol = 1e-5``: both still compute in float32, and the last rounding to bf16 of two float32
values 1e-6 apart may land on neighbouring bf16 numbers. The float32 parameters' gradients under autocast keep the
float32 tolerance, which holds only because the upcast to float32 is kept (CPU autocast has no policy for
``group_norm``; without the upcast the kernel and its backward would run in bf16).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import translation.munit
from translation import create_translator, load_translator, save_translator
from translation.generators import (
    InstanceNorm2d,
    LayerNorm2d,
    ResnetGenerator,
    UnetGenerator,
    adaptive_instance_norm,
)

FP32_TOL = {"atol": 1e-5, "rtol": 1e-5}
BF16_TOL = {"atol": 1e-5, "rtol": 2.0**-7}


# -- the reference: the implementation before the native kernels --------------------------------------------------
def _ref_normalize(x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=dims, keepdim=True, unbiased=False)
    return (xf - mean) * torch.rsqrt(var + eps)


class _RefInstanceNorm2d(nn.Module):
    def __init__(self, num_features: int, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = _ref_normalize(x, dims=(2, 3), eps=self.eps)
        if self.weight is not None:
            y = y * self.weight.float().view(1, -1, 1, 1) + self.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)


class _RefLayerNorm2d(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        y = _ref_normalize(x, dims=(1, 2, 3), eps=self.eps)
        y = y * self.weight.float().view(1, -1, 1, 1) + self.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)


def _ref_adaptive_instance_norm(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
    y = _ref_normalize(x, dims=(2, 3), eps=eps)
    y = y * (1.0 + scale.float()[:, :, None, None]) + shift.float()[:, :, None, None]
    return y.to(x.dtype)


def to_reference(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every InstanceNorm2d / LayerNorm2d replaced by the reference, same weights."""
    ref = copy.deepcopy(model)
    for name, module in list(ref.named_modules()):
        if isinstance(module, (InstanceNorm2d, LayerNorm2d)):
            if isinstance(module, InstanceNorm2d):
                new = _RefInstanceNorm2d(module.num_features, module.weight is not None, module.eps)
            else:
                new = _RefLayerNorm2d(module.num_features, module.eps)
            new.load_state_dict(module.state_dict(), strict=True)
            parent_name, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent_name), child, new)
    ref.load_state_dict(model.state_dict(), strict=True)  # same keys, same values
    return ref


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Give the norms' affine parameters non-trivial values, so that the affine is tested too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (InstanceNorm2d, LayerNorm2d)) and module.weight is not None:
                module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=g))


def tol(t: Tensor) -> dict[str, float]:
    return BF16_TOL if t.dtype == torch.bfloat16 else FP32_TOL


# -- layer level ----------------------------------------------------------------------------------------------------
KINDS = ("instance", "instance_affine", "layer", "adain")
SHAPES = [(2, 8, 16, 16), (3, 6, 5, 7), (2, 4, 1, 1), (1, 4, 1, 1), (1, 3, 2, 1)]


def make_pair(kind: str, channels: int) -> tuple[nn.Module | None, nn.Module | None]:
    if kind == "adain":
        return None, None
    if kind == "layer":
        new, ref = LayerNorm2d(channels), _RefLayerNorm2d(channels)
    else:
        new = InstanceNorm2d(channels, affine=kind == "instance_affine")
        ref = _RefInstanceNorm2d(channels, affine=kind == "instance_affine")
    randomise_norms(new)
    ref.load_state_dict(new.state_dict(), strict=True)
    return new, ref


def run_norm(kind: str, module: nn.Module | None, x: Tensor, scale: Tensor, shift: Tensor, reference: bool) -> Tensor:
    if kind == "adain":
        fn = _ref_adaptive_instance_norm if reference else adaptive_instance_norm
        return fn(x, scale, shift)
    return module(x)


def leaves(kind: str, shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool) -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(shape, generator=g) + 1).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    scale = (0.5 * torch.randn(shape[:2], generator=g)).to(dtype)
    shift = (0.5 * torch.randn(shape[:2], generator=g)).to(dtype)
    return [t.requires_grad_() for t in (x, scale, shift)]


def forward_backward(kind, module, shape, dtype, channels_last, reference):
    x, scale, shift = leaves(kind, shape, dtype, channels_last)
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y = run_norm(kind, module, x, scale, shift, reference)
    (y.float() * upstream).sum().backward()
    params = list(module.parameters()) if module is not None else []
    grads = [x.grad] + ([scale.grad, shift.grad] if kind == "adain" else [p.grad for p in params])
    for p in params:
        p.grad = None
    return y, grads


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16_autocast"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference_outputs_and_gradients(kind, shape, dtype, channels_last):
    new, ref = make_pair(kind, shape[1])
    y, grads = forward_backward(kind, new, shape, dtype, channels_last, reference=False)
    y_ref, grads_ref = forward_backward(kind, ref, shape, dtype, channels_last, reference=True)
    assert y.dtype == y_ref.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last) == y_ref.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_ref, **tol(y))
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == g_ref.dtype
        torch.testing.assert_close(g, g_ref, **tol(g))


def test_one_value_per_channel_gives_the_bias():
    norm = InstanceNorm2d(3, affine=True)
    randomise_norms(norm)
    x = torch.randn(1, 3, 1, 1, requires_grad=True)
    y = norm(x)
    torch.testing.assert_close(y.flatten(), norm.bias.detach(), rtol=0, atol=0)
    y.sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def test_hand_computed_values():
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]]])  # [1, 2, 1, 2]
    def inv(var: float) -> float:
        return 1 / (var + 1e-5) ** 0.5

    # per channel: [1, 3] has mean 2 and variance 1, [0, 4] mean 2 and variance 4
    torch.testing.assert_close(InstanceNorm2d(2)(x), torch.tensor([[[[-inv(1.0), inv(1.0)]],
                                                                    [[-2 * inv(4.0), 2 * inv(4.0)]]]]))
    # layer norm: mean 2, variance (1 + 1 + 4 + 4) / 4 = 2.5 over all four values
    torch.testing.assert_close(LayerNorm2d(2)(x), (x - 2) * inv(2.5))
    scale, shift = torch.tensor([[1.0, -0.5]]), torch.tensor([[0.5, 0.0]])
    torch.testing.assert_close(adaptive_instance_norm(x, scale, shift),
                               torch.tensor([[[[-2 * inv(1.0) + 0.5, 2 * inv(1.0) + 0.5]],
                                              [[-inv(4.0), inv(4.0)]]]]))


def test_state_dict_keys_unchanged():
    for new, ref in [(InstanceNorm2d(4), _RefInstanceNorm2d(4)), (InstanceNorm2d(4, affine=True),
                     _RefInstanceNorm2d(4, affine=True)), (LayerNorm2d(4), _RefLayerNorm2d(4))]:
        assert list(new.state_dict()) == list(ref.state_dict())
        assert [n for n, _ in new.named_parameters()] == [n for n, _ in ref.named_parameters()]


# -- network level --------------------------------------------------------------------------------------------------
GENERATORS = {
    "resnet_instance": lambda: ResnetGenerator(1, 1, 8, 1, 1, "instance"),
    "resnet_layer": lambda: ResnetGenerator(1, 1, 8, 2, 1, "layer", upsample="nearest"),
    "unet_instance": lambda: UnetGenerator(1, 1, 8, 3, "instance"),
}


def generator_run(model: nn.Module, x: Tensor, amp: bool) -> tuple[Tensor, list[Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = model(x)
    (y.float() - x).abs().mean().backward()
    return y, [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_matches_reference_fp32(name):
    torch.manual_seed(0)
    model = GENERATORS[name]()
    for m in model.modules():
        if isinstance(m, InstanceNorm2d):
            m.weight = nn.Parameter(torch.ones(m.num_features))  # affine parameters, to compare their gradients
            m.bias = nn.Parameter(torch.zeros(m.num_features))
    randomise_norms(model)
    ref = to_reference(model)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y, grads = generator_run(model, x, amp=False)
    y_ref, grads_ref = generator_run(ref, x, amp=False)
    torch.testing.assert_close(y, y_ref, **FP32_TOL)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **FP32_TOL)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_under_bf16_autocast_stays_within_bf16_rounding(name):
    """Through a network, one-ulp differences after a norm are carried by the next bf16 convolutions; the outputs
    (tanh, in [-1, 1], where a bf16 ulp is at most 2**-8) must agree to 8 ulps (2**-5) and each parameter's gradient
    to 2 % of its norm. (Measured on CPU: identical outputs, gradients within 1e-7 relative.)"""
    torch.manual_seed(0)
    model = GENERATORS[name]()
    randomise_norms(model)
    ref = to_reference(model)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y, grads = generator_run(model, x, amp=True)
    y_ref, grads_ref = generator_run(ref, x, amp=True)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), atol=2.0**-5, rtol=0)
    for g, g_ref in zip(grads, grads_ref):
        assert (g - g_ref).norm() <= 0.02 * g_ref.norm() + 1e-6


# -- translators: files saved with the reference load and compute the same ------------------------------------------
@pytest.mark.parametrize(("name", "norm"), [("cyclegan", "instance"), ("cyclegan", "layer"), ("munit", "instance"),
                                           ("unit", "instance")])
def test_translator_saved_with_reference_loads_and_matches(tmp_path, monkeypatch, name, norm):
    torch.manual_seed(0)
    t = create_translator(name, "tiny", norm=norm)
    randomise_norms(t)
    ref = to_reference(t)
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1

    def losses(model: nn.Module, reference: bool) -> tuple[Tensor, list[Tensor]]:
        with monkeypatch.context() as m:
            if reference:
                m.setattr(translation.munit, "adaptive_instance_norm", _ref_adaptive_instance_norm)
            torch.manual_seed(1)
            model.zero_grad(set_to_none=True)
            loss = model.generator_losses(a, b)["loss"] + model.discriminator_losses(a, b)["loss"]
            loss.backward()
            model.eval()
            with torch.no_grad():
                out = torch.cat([model.a_to_b(a), model.b_to_a(b)])
            model.train()
        return torch.cat([loss.detach().view(1), out.flatten()]), [p.grad for p in model.parameters()]

    path = save_translator(ref, tmp_path / "translator.pt", {})
    loaded, _ = load_translator(path)
    assert list(loaded.state_dict()) == list(ref.state_dict())
    loaded.train()
    out, grads = losses(loaded, reference=False)
    out_ref, grads_ref = losses(ref, reference=True)
    torch.testing.assert_close(out, out_ref, **FP32_TOL)
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            assert g is None
        else:
            torch.testing.assert_close(g, g_ref, **FP32_TOL)
