"""`cxr-transfer experiment` and `cxr-transfer transfer`: option validation, dry runs, report, predict."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner

from experiments.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _data_dirs(tmp_path):
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    return ["--source", str(tmp_path / "a"), "--target", str(tmp_path / "b")]


def test_help_lists_commands_with_examples():
    result = _invoke("--help")
    assert result.exit_code == 0 and "experiment" in result.output and "demo" in result.output
    for group in ("experiment", "transfer"):
        assert "Examples" in _invoke(group, "--help").output
    assert "--fraction" in _invoke("experiment", "run", "--help").output


def test_run_dry_run_prints_resolved_config(tmp_path):
    result = _invoke("experiment", "run", "--method", "finetune", "--fraction", "0.05", "--seed", "2",
                     *_data_dirs(tmp_path), "--size", "128", "--preset", "tiny", "--dry-run")
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["method"] == "finetune" and config["fraction"] == 0.05 and config["seed"] == 2
    assert config["size"] == 128 and config["translator_preset"] == "tiny" and config["transfer"]["seed"] == 2
    assert not (tmp_path / "runs").exists()


def test_config_file_sets_any_field_and_conflicts_are_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"segmenter_kwargs": {"depth": 3}, "size": 64,
                                  "transfer": {"predict_views": ["translated", "direct"], "lr_segmenter": 3e-5}}))
    result = _invoke("experiment", "run", "--method", "transfer", "--fraction", "0", *_data_dirs(tmp_path),
                     "--config", str(config), "--iterations", "7", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["transfer"]["predict_views"] == ["translated", "direct"] and resolved["transfer"]["iterations"] == 7
    assert resolved["segmenter_kwargs"] == {"depth": 3} and resolved["size"] == 64
    again = _invoke("experiment", "run", "--method", "transfer", "--fraction", "0", *_data_dirs(tmp_path),
                    "--config", str(config), "--size", "64", "--dry-run")  # the same value twice is not a conflict
    assert again.exit_code == 0, again.output
    clash = CliRunner().invoke(cli, ["experiment", "run", "--method", "transfer", "--fraction", "0",
                                     *_data_dirs(tmp_path), "--config", str(config), "--size", "128", "--dry-run"])
    assert clash.exit_code == 2 and "size is set both in" in clash.output and "keep one" in clash.output
    config.write_text(json.dumps({"transfer": {"lr_segmentor": 1}}))
    bad = CliRunner().invoke(cli, ["experiment", "run", "--method", "transfer", "--fraction", "0",
                                   *_data_dirs(tmp_path), "--config", str(config), "--dry-run"])
    assert bad.exit_code == 2 and "lr_segmentor" in bad.output
    config.write_text(json.dumps({"transfer": {"predict_views": ["x"]}}))
    bad = CliRunner().invoke(cli, ["experiment", "run", "--method", "transfer", "--fraction", "0",
                                   *_data_dirs(tmp_path), "--config", str(config), "--dry-run"])
    assert bad.exit_code == 2 and "expected predict_views" in bad.output


def test_a_cells_saved_config_reruns_it(tmp_path):
    dirs = _data_dirs(tmp_path)
    first = json.loads(_invoke("experiment", "run", "--method", "finetune", "--fraction", "0.05", *dirs,
                               "--size", "64", "--dry-run").output)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(first))
    second = json.loads(_invoke("experiment", "run", "--method", "finetune", "--fraction", "0.05", "--config",
                                str(saved), "--dry-run").output)
    assert second == first


def test_run_help_fits_on_one_screen():
    assert len(_invoke("experiment", "run", "--help").output.splitlines()) <= 45


def test_fraction_outside_unit_interval_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["experiment", "run", "--method", "transfer", "--fraction", "1.5",
                                      *_data_dirs(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and "1.5" in result.output


def test_scratch_at_zero_is_refused_with_reason(tmp_path):
    result = CliRunner().invoke(cli, ["experiment", "run", "--method", "scratch", "--fraction", "0",
                                      *_data_dirs(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and "undefined" in result.output


def test_sweep_dry_run_and_bad_lists(tmp_path):
    result = _invoke("experiment", "sweep", *_data_dirs(tmp_path), "--seeds", "0,1,2", "--fractions", "0,0.05,1",
                     "--methods", "transfer,finetune", "--jobs", "3", "--dry-run")
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["seeds"] == [0, 1, 2] and config["fractions"] == [0.0, 0.05, 1.0] and config["jobs"] == 3
    bad = CliRunner().invoke(cli, ["experiment", "sweep", *_data_dirs(tmp_path), "--methods", "magic", "--dry-run"])
    assert bad.exit_code == 2 and "expected methods among" in bad.output
    bad = CliRunner().invoke(cli, ["experiment", "sweep", *_data_dirs(tmp_path), "--seeds", "x", "--dry-run"])
    assert bad.exit_code == 2 and "expected comma-separated seeds" in bad.output


def test_report_on_empty_folder_says_what_to_do(tmp_path):
    result = CliRunner().invoke(cli, ["experiment", "report", "--runs", str(tmp_path)])
    assert result.exit_code == 1 and "experiment sweep" in result.output


def test_transfer_predict_writes_masks_at_image_size(tmp_path):
    from segmentation.data.io import write_png
    from segmentation.training import SegmentationConfig, build_segmenter, save_segmenter
    from translation import create_translator, save_translator

    model_dir = tmp_path / "model"
    save_translator(create_translator("cyclegan", "tiny"), model_dir / "translator.pt",
                    {"image_size": 32, "normalization": "x*2-1", "domains": {}, "checksums": {}})
    config = SegmentationConfig(model="unet", model_kwargs={"depth": 2, "base_channels": 4}, size=32,
                                classes=("heart", "clavicles"), progress=False)
    save_segmenter(build_segmenter(config), model_dir / "segmenter.pt", config)
    images = tmp_path / "images"
    write_png(images / "x1.png", (np.random.default_rng(0).random((40, 48)) * 255).astype(np.uint8))
    write_png(images / "x2.png", np.zeros((40, 48), dtype=np.uint8))
    result = _invoke("transfer", "predict", "--model", str(model_dir), "--images", str(images), "--out",
                     str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    from segmentation.data.io import read_mask

    for cls in ("heart", "clavicles"):
        for stem in ("x1", "x2"):
            assert read_mask(tmp_path / "out" / cls / f"{stem}.png").shape == (40, 48)
    assert (tmp_path / "out" / "overlays.png").is_file()
    missing = CliRunner().invoke(cli, ["transfer", "predict", "--model", str(images), "--images", str(images),
                                       "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "translator.pt is missing" in missing.output


def test_transfer_predict_applies_the_dark_gate_of_the_model_file(tmp_path):
    from segmentation.data.io import read_mask, write_png
    from segmentation.training import SegmentationConfig, build_segmenter, save_segmenter
    from translation import create_translator, save_translator

    model_dir = tmp_path / "model"
    save_translator(create_translator("cyclegan", "tiny"), model_dir / "translator.pt",
                    {"image_size": 32, "normalization": "x*2-1", "domains": {}, "checksums": {}})
    images = tmp_path / "images"
    picture = np.full((40, 48), 150, dtype=np.uint8)
    picture[:, :12] = 0  # black film padding
    write_png(images / "x.png", picture)
    for gate in (0.0, 0.02):
        config = SegmentationConfig(model="unet", model_kwargs={"depth": 2, "base_channels": 4}, size=32,
                                    classes=("lungs",), progress=False, dark_gate=gate)
        model = build_segmenter(config)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, 10.0)  # lung everywhere, padding included
        save_segmenter(model, model_dir / "segmenter.pt", config)
        out = tmp_path / f"out{gate}"
        result = _invoke("transfer", "predict", "--model", str(model_dir), "--images", str(images), "--out", str(out),
                         "--device", "cpu")
        assert result.exit_code == 0, result.output
        mask = read_mask(out / "lungs" / "x.png")
        assert mask[:, 14:].all() and (mask[:, :12].any() if gate == 0 else not mask[:, :12].any())
