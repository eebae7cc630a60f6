"""`cxr-transfer segment` commands on a tiny phantom folder (CliRunner)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from experiments.cli import cli
from segmentation.data.phantoms import write_phantom_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is as fast as two on an idle machine and far faster on a busy one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = ["--model-kwargs", '{"depth": 2, "base_channels": 8}', "--size", "32", "--batch-size", "4", "--lr", "0.01",
        "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A phantom folder and a run trained on it by `segment train` (shared by the tests below)."""
    root = tmp_path_factory.mktemp("segment_cli")
    data = write_phantom_dataset(root / "phantoms", n=10, size=32, seed=0)
    run = root / "run"
    result = CliRunner().invoke(cli, ["segment", "train", "--data", str(data), "--classes", "lungs,heart",
                                      "--epochs", "3", "--run-dir", str(run), *TINY])
    assert result.exit_code == 0, result.output
    return data, run, result.output


def test_train_writes_the_run_folder(trained):
    data, run, output = trained
    for name in ("config.json", "splits.json", "history.json", "model.pt", "metrics.json", "test_metrics.csv",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    splits = json.loads((run / "splits.json").read_text())
    assert [len(splits[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert "| jaccard | lungs |" in output and "| jaccard | heart |" in output
    assert json.loads((run / "config.json").read_text())["classes"] == ["lungs", "heart"]


def test_eval_reproduces_the_test_metrics_of_train(trained, tmp_path):
    data, run, _ = trained
    out = tmp_path / "test.csv"
    result = CliRunner().invoke(cli, ["segment", "eval", "--model", str(run / "model.pt"), "--data", str(data),
                                      "--split", "test", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with open(out) as f:
        rows = list(csv.DictReader(f))
    metrics = json.loads((run / "metrics.json").read_text())
    assert sorted(r["id"] for r in rows) == sorted(json.loads((run / "splits.json").read_text())["test"])
    mean = np.mean([float(r["jaccard/lungs"]) for r in rows])
    assert mean == pytest.approx(metrics["test_summary"]["jaccard/lungs"]["mean"], abs=1e-6)
    assert "2 images (test), 1 model(s)" in result.output


def test_predict_writes_masks_at_each_image_size(trained, tmp_path):
    data, run, _ = trained
    images = tmp_path / "new"
    images.mkdir()
    Image.open(next((data / "images").glob("*.png"))).save(images / "a.png")
    Image.fromarray((np.random.default_rng(0).random((48, 40)) * 255).astype(np.uint8)).save(images / "b.png")
    out = tmp_path / "pred"
    model = str(run / "model.pt")
    result = CliRunner().invoke(cli, ["segment", "predict", "--model", model, "--model", model, "--images",
                                      str(images), "--out", str(out), "--batch-size", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 masks" in result.output
    assert np.array(Image.open(out / "masks" / "heart" / "b.png")).shape == (48, 40)
    assert set(np.unique(np.array(Image.open(out / "masks" / "lungs" / "a.png")))) <= {0, 255}
    overlay = np.array(Image.open(out / "overlays" / "b.png"))
    assert overlay.shape == (48, 40, 3)


def test_dry_run_prints_the_config_without_training(trained, tmp_path):
    data, _, _ = trained
    result = CliRunner().invoke(cli, ["segment", "train", "--data", str(data), "--run-dir", str(tmp_path / "r"),
                                      "--classes", "lungs,clavicles", "--scheduler", "cosine", "--dry-run", *TINY])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)["config"]
    assert config["classes"] == ["lungs", "clavicles"] and config["scheduler"] == "cosine"
    assert config["model_kwargs"] == {"depth": 2, "base_channels": 8}
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--model-kwargs", "{depth: 2}"], "expected a JSON object"),
    (["--split", "0.5,0.5"], "expected three numbers"),
    (["--model", "resnet"], "expected a segmenter name in"),
    (["--classes", "liver"], "liver"),
    (["--scheduler", "plateau"], "expected a patience with scheduler='plateau'"),
])
def test_train_rejects_bad_input(trained, tmp_path, args, message):
    data, _, _ = trained
    result = CliRunner().invoke(cli, ["segment", "train", "--data", str(data), "--run-dir", str(tmp_path / "r"),
                                      "--epochs", "1", *TINY, *args])
    assert result.exit_code != 0
    assert message in result.output


def test_train_refuses_to_overwrite_a_run_and_eval_names_bad_files(trained, tmp_path):
    data, run, _ = trained
    result = CliRunner().invoke(cli, ["segment", "train", "--data", str(data), "--run-dir", str(run), "--epochs", "1",
                                      *TINY])
    assert result.exit_code != 0 and "pass --resume" in result.output
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a model")
    result = CliRunner().invoke(cli, ["segment", "eval", "--model", str(bogus), "--data", str(data)])
    assert result.exit_code != 0 and "bogus.pt" in result.output
    result = CliRunner().invoke(cli, ["segment", "eval", "--model", str(run / "model.pt"), "--data", str(data),
                                      "--split", "holdout"])
    assert result.exit_code != 0 and "expected --split in" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["segment", "predict", "--model", str(run / "model.pt"), "--images", str(empty),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "no images" in result.output


def test_every_command_has_help_with_examples():
    for command in ("train", "cv", "eval", "predict"):
        result = CliRunner().invoke(cli, ["segment", command, "--help"])
        assert result.exit_code == 0 and "cxr-transfer segment " + command in result.output


def test_cv_prints_a_table_over_folds(trained, tmp_path):
    data, _, _ = trained
    result = CliRunner().invoke(cli, ["segment", "cv", "--data", str(data), "--folds", "2", "--limit", "6",
                                      "--epochs", "1", "--run-dir", str(tmp_path / "cv"), *TINY])
    assert result.exit_code == 0, result.output
    assert "2-fold cross-validation" in result.output and "| jaccard | lungs |" in result.output
    with open(tmp_path / "cv" / "cv_rows.csv") as f:
        assert len(list(csv.DictReader(f))) == 6  # every image held out exactly once
