"""fda: a source segmenter trained on source images in the target's Fourier style, run through the sweep."""

from __future__ import annotations

import pytest
import torch

from segmentation.data.phantoms import make_phantoms
from transfer.cell import cell_key
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods import fda
from transfer.methods.base import method_options
from transfer.protocol import TargetView
from transfer.sweep import run_sweep

from method_settings import LEARN_METHOD, TINY_METHOD

TINY = dict(TINY_METHOD, transfer=TransferConfig(batch_size=2))
LEARN = dict(LEARN_METHOD, transfer=TransferConfig(batch_size=8))




@pytest.mark.parametrize("beta, side, band", [(0.01, 512, 5), (0.01, 256, 2), (0.01, 32, 1), (0.1, 32, 3),
                                              (0.2, 64, 12)])
def test_the_band_is_a_fraction_of_the_image_side_and_at_least_one_frequency(beta, side, band):
    assert fda.band_size(beta, side, side) == band


def test_low_frequency_amplitude_comes_from_the_target_the_rest_and_the_phase_from_the_source():
    source, target = make_phantoms(2, 32, "a", 0).images, make_phantoms(2, 32, "b", 1).images
    out = fda.fourier_style(source, target, beta=0.1)  # b = 3: frequencies -3..3 along both axes
    assert out.shape == source.shape and out.dtype == torch.float32
    spectrum, s, t = torch.fft.fft2(out.double()), torch.fft.fft2(source.double()), torch.fft.fft2(target.double())
    k = torch.fft.fftfreq(32, d=1 / 32).abs() <= 3
    band = k.view(-1, 1) & k.view(1, -1)
    assert int(band.sum()) == 49
    assert torch.allclose(spectrum.abs()[..., band], t.abs()[..., band], atol=1e-3)
    assert torch.allclose(spectrum.abs()[..., ~band], s.abs()[..., ~band], atol=1e-3)
    strong = s.abs() > 1.0  # where the phase is well defined
    assert torch.allclose(torch.polar(torch.ones_like(s.abs()), spectrum.angle())[strong],
                          torch.polar(torch.ones_like(s.abs()), s.angle())[strong], atol=1e-3)
    assert torch.allclose(fda.fourier_style(source, source, beta=0.1), source, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected source and target images of one shape"):
        fda.fourier_style(source, target[:1], beta=0.1)


def test_options_are_checked_and_part_of_the_cell_identity():
    with pytest.raises(ValueError, match=r"expected beta in \(0, 0.5\), got 0.7"):
        method_options(ExperimentConfig(method_options={"fda": {"beta": 0.7}}), "fda", fda.FDAOptions)
    with pytest.raises(ValueError, match=r"expected beta in \(0, 0.5\), got 0"):
        fda.FourierStyle(torch.zeros(1, 1, 8, 8), beta=0)
    exp = ExperimentConfig(method="fda")
    changed = exp.replace(method_options={"fda": {"beta": 0.05}})
    assert cell_key(changed) != cell_key(exp)
    assert cell_key(changed.replace(method="source_only")) == cell_key(exp.replace(method="source_only"))


def test_fourier_style_restyles_each_image_with_a_target_image():
    source, target = make_phantoms(4, 32, "a", 0).images, make_phantoms(3, 32, "b", 1).images
    torch.manual_seed(0)
    out = fda.FourierStyle(target, beta=0.1)(source)
    assert out.shape == source.shape and 0 <= float(out.min()) <= float(out.max()) <= 1

    def low(x: torch.Tensor) -> torch.Tensor:  # the amplitudes of a few frequencies of the band
        return torch.fft.fft2(x).abs()[..., :2, :2].flatten(1)

    nearest = torch.cdist(low(out), low(target)).min(dim=1).values
    assert float(nearest.max()) < 0.05 * float(torch.cdist(low(source), low(target)).min())


def test_runs_in_a_sweep_once_per_seed_without_reading_a_target_label(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(TargetView, "labelled", lambda self: pytest.fail("fda read target labels"))
    base = ExperimentConfig(source=str(folders / "a"), target=str(folders / "b"), out=str(tmp_path), **TINY)
    (row,) = run_sweep(base, ("fda",), (0.0, 0.5), (0,), log=lambda m: None)
    assert row["method"] == "fda" and row["fraction"] == 0.0 and row["n_labelled"] == 0
    assert row["fda_band"] == 1 and row["fda_targets"] == 9 and 0 <= row["jaccard"] <= 1


def test_on_held_out_domain_b_it_does_not_collapse(learning_folders, tmp_path):
    """Measured (seed 0, 300 source iterations, 12 held-out b test images): source-only Jaccard 0.558 / Dice 0.678,
    fda (beta 0.01: a band of 1 frequency at 32 px) 0.552 / 0.689. FDA does not reliably beat source-only on these
    phantoms: over seeds 0-5 it won 3 times (Jaccard change -0.24 to +0.17, mean about 0; with beta 0.1, 3 wins too,
    mean +0.03), because what hurts M_A on domain b is its wider field of view and bright collimator borders, not the
    low-frequency intensity profile FDA transfers. So this asserts what holds: the Dice stays within 0.1 of
    source-only (it fell by up to 0.2 Jaccard at one seed in six, so this is the seed-0 fact, not a general bound)."""
    base = ExperimentConfig(source=str(learning_folders / "a40"), target=str(learning_folders / "b60"),
                            out=str(tmp_path), **LEARN)
    rows = {r["method"]: r for r in run_sweep(base, ("source_only", "fda"), (0.0,), (0,), log=lambda m: None)}
    assert rows["fda"]["dice"] > rows["source_only"]["dice"] - 0.1 and rows["fda"]["dice"] > 0.55
