"""Tests for `cxr-transfer translate train / apply` on tiny phantom folders (CPU, 32 px, tiny CycleGAN)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from experiments.cli import cli
from segmentation.data.preprocessing import resize_images
from segmentation.data.io import read_image, write_png
from segmentation.data.phantoms import write_phantom_dataset
from translation import load_translator, translate_image


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny 32-pixel nets: one thread is as fast, and far faster on a loaded shared machine; restored afterwards
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"a": write_phantom_dataset(root / "site_a", 8, size=32, domain="a", seed=0),
            "b": write_phantom_dataset(root / "site_b", 8, size=32, domain="b", seed=50), "root": root}


def _train_args(folders, run_dir, *extra):
    return ["translate", "train", "--a", str(folders["a"]), "--b", str(folders["b"]), "--model", "cyclegan",
            "--preset", "tiny", "--size", "32", "--iterations", "4", "--batch-size", "2", "--held-out", "0.25",
            "--checkpoint-every", "2", "--run-dir", str(run_dir), "--device", "cpu", "--quiet", *extra]


@pytest.fixture(scope="module")
def trained_run(folders):
    run_dir = folders["root"] / "run"
    result = CliRunner().invoke(cli, _train_args(folders, run_dir), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_train_writes_a_reusable_translator(trained_run):
    run_dir, output = trained_run
    assert "trained cyclegan for 4 steps" in output and "hist/b2a" in output and "kid/b2a" in output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["iterations"] == 4 and config["domain_a"] == "site_a" and config["domain_b"] == "site_b"
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert history[0]["source"] == "held_out"  # 2 of the 8 images per domain held out
    translator, metadata = load_translator(run_dir / "translator.pt")
    assert metadata["image_size"] == [32, 32] and metadata["domains"] == {"a": "site_a", "b": "site_b"}
    assert metadata["num_images"] == {"a": 6, "b": 6}


def test_resume_of_a_finished_run_and_refusal_to_overwrite(folders, trained_run):
    run_dir, _ = trained_run
    again = CliRunner().invoke(cli, _train_args(folders, run_dir))
    assert again.exit_code != 0 and "already holds a run (step_00000004.pt); pass --resume" in again.output
    resumed = CliRunner().invoke(cli, _train_args(folders, run_dir, "--resume"))
    assert resumed.exit_code == 0 and "for 4 steps" in resumed.output


def test_apply_translates_a_folder_at_any_size(folders, trained_run, tmp_path):
    run_dir, _ = trained_run
    images = tmp_path / "new"
    same = read_image(folders["b"] / "images" / sorted((folders["b"] / "images").iterdir())[0].name)
    write_png(images / "same_size.png", same)
    rng = np.random.default_rng(0)
    write_png(images / "odd_size.png", rng.integers(0, 256, (40, 48), dtype=np.uint8))
    write_png(images / "deep.png", rng.integers(0, 4096, (32, 32), dtype=np.uint16))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["translate", "apply", "--translator", str(run_dir / "translator.pt"),
                                      "--direction", "b2a", "--images", str(images), "--out", str(out),
                                      "--batch-size", "2", "--device", "cpu", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "translated 3 image(s) b2a" in result.output
    assert read_image(out / "odd_size.png").shape == (40, 48)
    assert read_image(out / "deep.png").dtype == np.uint16
    # at the training size nothing is resized: the file is the translator's output, quantised to 8 bits
    translator, _ = load_translator(run_dir / "translator.pt")
    with torch.no_grad():
        x = torch.from_numpy(same.astype(np.float32) / 255)[None, None] * 2 - 1
        expected = np.round(((translator.b_to_a(x) + 1) / 2).clamp(0, 1)[0, 0].numpy() * 255).astype(np.uint8)
    got = read_image(out / "same_size.png")
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # batch of 2 vs 1: float rounding at most
    assert not np.array_equal(got, same)  # it did translate


def _apply(run_dir, images, out, *extra):
    return CliRunner().invoke(cli, ["translate", "apply", "--translator", str(run_dir / "translator.pt"),
                                    "--direction", "a2b", "--images", str(images), "--out", str(out), "--device",
                                    "cpu", "--quiet", *extra], catch_exceptions=False)


def _expected(fn, image, **kwargs):
    """What `apply` writes for an 8-bit ``image`` at its own size: translate_image, then quantised to 8 bits."""
    x = torch.from_numpy(image.astype(np.float32) / 255)[None, None] * 2 - 1
    y = translate_image(fn, x, 2, **kwargs)
    return np.round(((y + 1) / 2).clamp(0, 1)[0, 0].numpy() * 255).astype(np.uint8)


@pytest.fixture()
def new_images(tmp_path):
    """Sharp 8-bit images at 2x the 32-pixel training size, at a size off the divisor, and a 64 x 80 one."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "new"
    arrays = {"big_1": rng.integers(0, 256, (64, 64), dtype=np.uint8),
              "big_2": rng.integers(0, 256, (64, 64), dtype=np.uint8),
              "odd": rng.integers(0, 256, (51, 69), dtype=np.uint8),
              "wide": rng.integers(0, 256, (64, 80), dtype=np.uint8)}
    for name, array in arrays.items():
        write_png(folder / f"{name}.png", array)
    return folder, arrays


def test_apply_at_native_size(trained_run, new_images, tmp_path):
    """A 32-pixel translator runs at 64 px and at 51 x 69 (padded to 52 x 70, cropped), equal sizes batched."""
    run_dir, _ = trained_run
    folder, arrays = new_images
    result = _apply(run_dir, folder, tmp_path / "out", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "translated 4 image(s) a2b" in result.output
    translator, _ = load_translator(run_dir / "translator.pt")
    for name, array in arrays.items():
        got = read_image(tmp_path / "out" / f"{name}.png")
        assert got.shape == array.shape
        # big_1 and big_2 ran as one batch of 2: float rounding may move a value by one 8-bit level at most
        assert np.abs(got.astype(int) - _expected(translator.a_to_b, array).astype(int)).max() <= 1
    again = _apply(run_dir, folder, tmp_path / "again", "--batch-size", "4")
    assert again.exit_code == 0, again.output
    for name in arrays:  # applying twice is bit-identical
        assert (tmp_path / "out" / f"{name}.png").read_bytes() == (tmp_path / "again" / f"{name}.png").read_bytes()


def test_apply_in_tiles(trained_run, new_images, tmp_path):
    run_dir, _ = trained_run
    folder, arrays = new_images
    result = _apply(run_dir, folder, tmp_path / "out", "--batch-size", "1", "--tile", "32", "--overlap", "8")
    assert result.exit_code == 0, result.output
    translator, _ = load_translator(run_dir / "translator.pt")
    for name, array in arrays.items():
        got = read_image(tmp_path / "out" / f"{name}.png")
        assert np.array_equal(got, _expected(translator.a_to_b, array, tile=32, overlap=8))


def test_apply_resized_to_the_training_size_is_the_former_behaviour(trained_run, new_images, tmp_path):
    """--resize-to-training-size writes exactly what `apply` wrote before native sizes (the former code, inline)."""
    run_dir, _ = trained_run
    folder, arrays = new_images
    result = _apply(run_dir, folder, tmp_path / "out", "--resize-to-training-size")  # one batch of 4 (default 8)
    assert result.exit_code == 0, result.output
    translator, _ = load_translator(run_dir / "translator.pt")
    names = sorted(arrays)
    batch = torch.cat([resize_images(torch.from_numpy(arrays[n].astype(np.float32) / 255)[None, None].clamp_(0, 1),
                                     (32, 32)) for n in names]) * 2 - 1
    with torch.no_grad():
        fake = translator.a_to_b(batch).float().cpu()
    native = tmp_path / "native"
    assert _apply(run_dir, folder, native).exit_code == 0
    for name, image in zip(names, fake):
        back = resize_images(((image + 1) / 2)[None], arrays[name].shape)[0, 0].clamp(0, 1).numpy()
        expected = np.round(back * 255).astype(np.uint8)
        assert np.array_equal(read_image(tmp_path / "out" / f"{name}.png"), expected)
        assert not np.array_equal(read_image(native / f"{name}.png"), expected)  # the default no longer resizes


def test_apply_bad_tiles(trained_run, new_images, tmp_path):
    run_dir, _ = trained_run
    folder, _ = new_images
    odd = _apply(run_dir, folder, tmp_path / "o", "--tile", "33")
    assert odd.exit_code == 1 and "expected tile to be a multiple of the translator's divisor 2, got 33" in odd.output
    wide = _apply(run_dir, folder, tmp_path / "o", "--tile", "32", "--overlap", "31")
    assert wide.exit_code == 1 and "expected overlap <= tile - divisor = 30, got 31" in wide.output
    both = _apply(run_dir, folder, tmp_path / "o", "--tile", "32", "--resize-to-training-size")
    assert both.exit_code == 1 and "--tile and --resize-to-training-size exclude each other" in both.output
    assert not (tmp_path / "o").exists()


def test_apply_reads_dicom(trained_run, tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    run_dir, _ = trained_run
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    images = tmp_path / "dicom"
    images.mkdir()
    ds = FileDataset(str(images / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 36, 30, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(1).integers(0, 4096, (36, 30)).astype("<u2").tobytes()
    ds.save_as(images / "x.dcm", enforce_file_format=True)
    result = CliRunner().invoke(cli, ["translate", "apply", "--translator", str(run_dir / "translator.pt"),
                                      "--direction", "a2b", "--images", str(images), "--out", str(tmp_path / "o"),
                                      "--device", "cpu", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "o" / "x.png")
    assert out.shape == (36, 30) and out.dtype == np.uint16  # 12-bit source: written as 16-bit PNG


def test_dry_run_and_bad_arguments(folders, tmp_path):
    runner = CliRunner()
    dry = runner.invoke(cli, _train_args(folders, tmp_path / "dry", "--dry-run"))
    assert dry.exit_code == 0 and json.loads(dry.output)["config"]["batch_size"] == 2
    assert not (tmp_path / "dry").exists()
    odd = runner.invoke(cli, _train_args(folders, tmp_path / "odd", "--size", "33"))  # the last --size wins
    assert odd.exit_code != 0 and "expected --size to be a multiple of 2" in odd.output
    missing = runner.invoke(cli, ["translate", "apply", "--translator", str(tmp_path / "none.pt"), "--direction",
                                  "a2b", "--images", str(tmp_path), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = runner.invoke(cli, ["translate", "apply", "--translator", str(folders["a"] / "dataset.json"),
                              "--direction", "a2b", "--images", str(tmp_path), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 1 and "unreadable" in bad.output
