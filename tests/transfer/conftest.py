"""Toy translator and segmenter made of 1x1 convolutions, implementing the Translator / Segmenter interfaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ToyTranslator(nn.Module):
    """G_AB, G_BA (1x1 conv + tanh) and D_A, D_B (1x1 conv), LSGAN + L1 cycle, like a CycleGAN in miniature."""

    name = "toy"

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.config = {"channels": channels}
        self.g_ab = nn.Conv2d(channels, channels, 1)
        self.g_ba = nn.Conv2d(channels, channels, 1)
        self.d_a = nn.Conv2d(channels, 1, 1)
        self.d_b = nn.Conv2d(channels, 1, 1)

    def a_to_b(self, x: Tensor) -> Tensor:
        return torch.tanh(self.g_ab(x))

    def b_to_a(self, x: Tensor) -> Tensor:
        return torch.tanh(self.g_ba(x))

    def generator_parameters(self):
        return list(self.g_ab.parameters()) + list(self.g_ba.parameters())

    def discriminator_parameters(self):
        return list(self.d_a.parameters()) + list(self.d_b.parameters())

    def generator_losses(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        fake_b, fake_a = self.a_to_b(a), self.b_to_a(b)
        adv = ((self.d_b(fake_b) - 1) ** 2).mean() + ((self.d_a(fake_a) - 1) ** 2).mean()
        cycle = F.l1_loss(self.b_to_a(fake_b), a) + F.l1_loss(self.a_to_b(fake_a), b)
        return {"adversarial": adv, "cycle": cycle, "loss": adv + 10 * cycle}

    def discriminator_losses(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            fake_b, fake_a = self.a_to_b(a), self.b_to_a(b)
        d_a = ((self.d_a(a) - 1) ** 2).mean() + (self.d_a(fake_a) ** 2).mean()
        d_b = ((self.d_b(b) - 1) ** 2).mean() + (self.d_b(fake_b) ** 2).mean()
        return {"d_a": d_a, "d_b": d_b, "loss": 0.5 * (d_a + d_b)}


class ToySegmenter(nn.Module):
    """A 1x1 convolution from one image channel to ``classes`` logits."""

    def __init__(self, classes: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def bce(logits: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, target)


def zscore(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


@pytest.fixture
def toys():
    """(translator class, segmenter class, loss, normaliser)."""
    return ToyTranslator, ToySegmenter, bce, zscore


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """Prepared phantom folders shared by the method tests: a (10 domain-a images) and b (15 domain-b images; 9 in the
    target training split: 1 labelled at 10%, 4 at 50%)."""
    from segmentation.data.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("method_phantoms")
    write_phantom_dataset(root / "a", 10, 32, "a", 0)
    write_phantom_dataset(root / "b", 15, 32, "b", 1)
    return root


@pytest.fixture(scope="session")
def learning_folders(folders):
    """The learning tests' folders beside them: a40 (40 domain-a images) and b60 (60 domain-b images)."""
    from segmentation.data.phantoms import write_phantom_dataset

    write_phantom_dataset(folders / "a40", 40, 32, "a", 0)
    write_phantom_dataset(folders / "b60", 60, 32, "b", 1)
    return folders



@pytest.fixture(scope="session")
def phantom_folders(tmp_path_factory):
    """Domain a (48 images) -> domain b (80 images; 48 train, 16 validation, 16 held-out test), anatomy seeds 0 and
    200: M_A fails on b here (source-only mean Jaccard below 0.6); the self-training methods' learning tests."""
    from segmentation.data.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("selftrain_learning")
    write_phantom_dataset(root / "a", 48, 32, "a", 0)
    write_phantom_dataset(root / "b", 80, 32, "b", 200)
    return root
