"""Contract checks shared by the architecture tests, exposed as the ``segmenter_contract`` fixture.

A fixture (not an importable helper module) so that the tests work under any pytest import mode.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from segmentation.models.base import Segmenter

NORM_TYPES = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm)


class SegmenterContract:
    """Checks every architecture must pass; each raises AssertionError with a readable message."""

    @staticmethod
    def output_shape(model: Segmenter, size: tuple[int, int], batch: int = 2) -> None:
        x = torch.randn(batch, model.in_channels, *size)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (batch, model.out_channels, *size), f"{type(model).__name__}: {tuple(y.shape)} for {size}"
        assert torch.isfinite(y).all()

    @staticmethod
    def predict_restores_mode(model: Segmenter, size: tuple[int, int]) -> None:
        x = torch.randn(1, model.in_channels, *size)
        for mode in (True, False):
            model.train(mode)
            y = model.predict(x)
            assert model.training is mode, "predict() must restore the previous training mode"
            assert not y.requires_grad and y.is_inference()
        model.eval()
        with torch.no_grad():
            assert torch.allclose(model.predict(x), model(x), atol=1e-5), "predict must equal the eval forward"

    @staticmethod
    def gradient_to_every_parameter(model: Segmenter, size: tuple[int, int], batch: int = 2) -> None:
        model.train()
        x = torch.randn(batch, model.in_channels, *size)
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no (finite) gradient reached {missing}"
        zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
        assert not zero, f"all-zero gradient for {zero}"

    @staticmethod
    def divisor_error(model: Segmenter) -> None:
        d = model.required_divisor
        if d == 1:
            return
        bad = d * 2 + d // 2 if d > 1 else 3
        with pytest.raises(ValueError, match=f"multiples of {d}.*{bad}x{bad}"):
            model(torch.randn(1, model.in_channels, bad, bad))

    @staticmethod
    def channels_last_and_autocast(model: Segmenter, size: tuple[int, int]) -> None:
        model.eval()
        x = torch.randn(2, model.in_channels, *size)
        with torch.no_grad():
            ref = model(x)
            model_cl = model.to(memory_format=torch.channels_last)
            y = model_cl(x.contiguous(memory_format=torch.channels_last))
            assert torch.allclose(y, ref, atol=1e-4, rtol=1e-3), "channels_last changed the output"
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z = model_cl(x.contiguous(memory_format=torch.channels_last))
        assert z.shape == ref.shape and torch.isfinite(z).all()
        # bf16 has an 8-bit mantissa: on average the logits must agree with fp32 to a few percent of their scale
        # (a mean, not a max: rounding can flip a max-pool argmax, which moves single values in SegNet).
        assert (z.float() - ref).abs().mean() <= 0.05 * ref.abs().mean() + 0.01
        model.to(memory_format=torch.contiguous_format)

    @staticmethod
    def freeze_encoder(model: Segmenter, size: tuple[int, int]) -> None:
        encoder = list(model.encoder_modules())
        encoder_params = {id(p) for m in encoder for p in m.parameters()}
        assert encoder_params and len(encoder_params) < len(list(model.parameters())), "encoder must be a strict part"
        model.freeze_encoder()
        model.train()
        norms = [m for e in encoder for m in e.modules() if isinstance(m, NORM_TYPES)]
        assert all(not m.training for m in norms), "a frozen encoder's norm layers must stay in eval mode"
        model.zero_grad(set_to_none=True)
        model(torch.randn(2, model.in_channels, *size)).square().mean().backward()
        for p in model.parameters():
            assert (p.grad is None) == (id(p) in encoder_params), "only the encoder may be frozen"
        model.freeze_encoder(False)
        model.train()
        assert all(m.training for m in norms) and model.num_parameters(trainable_only=True) == model.num_parameters()

    def all(self, factory: Callable[[], Segmenter], sizes: list[tuple[int, int]]) -> Segmenter:
        """Run every check on fresh models from ``factory``; return the last model."""
        torch.manual_seed(0)
        model = factory()
        for size in sizes:
            self.output_shape(model, size)
        self.predict_restores_mode(model, sizes[0])
        self.gradient_to_every_parameter(model, sizes[0])
        self.divisor_error(model)
        self.channels_last_and_autocast(factory(), sizes[0])
        self.freeze_encoder(factory(), sizes[0])
        return model


@pytest.fixture
def segmenter_contract() -> SegmenterContract:
    return SegmenterContract()
