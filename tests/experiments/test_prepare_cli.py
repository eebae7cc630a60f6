"""`cxr-transfer prepare ...` through click: help, real subset, user-fixable errors, --download on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from experiments.cli import cli
from segmentation.data.io import read_image


def _run(*args: str):
    return CliRunner().invoke(cli, ["prepare", *args, "--quiet"])


@pytest.mark.parametrize("command", ["jsrt", "montgomery", "shenzhen", "folder"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = CliRunner().invoke(cli, ["prepare", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output and f"cxr-transfer prepare {command}" in result.output
    assert "--size" in result.output and "--out" in result.output


def test_group_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["prepare", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("jsrt", "montgomery", "shenzhen", "folder"))


def _subset(real_data: Path, tmp_path: Path, n: int = 3) -> Path:
    ids = sorted(p.stem for p in (real_data / "montgomery/images").iterdir())[:n]
    for sub in ("images", "masks/left_lung", "masks/right_lung"):
        (tmp_path / "src" / sub).mkdir(parents=True)
        for ident in ids:
            os.symlink(real_data / "montgomery" / sub / f"{ident}.png", tmp_path / "src" / sub / f"{ident}.png")
    return tmp_path / "src"


@pytest.mark.realdata
def test_folder_on_real_subset(real_data: Path, tmp_path: Path) -> None:
    src = _subset(real_data, tmp_path)
    result = _run("folder", "--images", str(src / "images"), "--masks", str(src / "masks"),
                  "--out", str(tmp_path / "out"), "--size", "64", "--spacing-mm", "0.5")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    assert meta["count"] == 3 and meta["classes"] == ["left_lung", "right_lung"]
    assert meta["images"][0]["pixel_spacing_mm"] == 4.0  # 0.5 mm at 512 px -> 4 mm at 64 px
    mask = read_image(tmp_path / "out/masks/left_lung" / f"{meta['images'][0]['id']}.png")
    assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}


@pytest.mark.realdata
def test_user_errors_are_click_exceptions_naming_the_file(real_data: Path, tmp_path: Path) -> None:
    src = _subset(real_data, tmp_path)
    victim = sorted((src / "masks/right_lung").iterdir())[1]
    victim.unlink()
    result = _run("folder", "--images", str(src / "images"), "--masks", str(src / "masks"), "--out",
                  str(tmp_path / "out"))
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    assert f"{victim.stem}.png: image without a right_lung mask" in result.output
    assert "--skip-unmatched" in result.output
    result = _run("folder", "--images", str(src / "images"), "--masks", str(src / "masks"), "--out",
                  str(tmp_path / "out"), "--classes", "left_lung,liver")
    assert result.exit_code == 1 and "no mask folder 'liver' (present: left_lung, right_lung)" in result.output
    result = _run("montgomery", "--root", str(real_data / "originals/montgomery"), "--out", str(tmp_path / "mc"))
    assert result.exit_code == 1 and "expected a binary mask" in result.output and "--threshold-masks" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "mc").exists()


def _lung_set(root: Path, mask_dir: str, mask_name: str) -> Path:
    """images/<id>.png and one merged lung mask per image at root/<mask_dir>/<mask_name with {id}>."""
    for ident in ("CHNCXR_0001_0", "CHNCXR_0002_1"):
        image = np.full((40, 32), 120, dtype=np.uint8)
        mask = np.zeros((40, 32), dtype=np.uint8)
        mask[8:32, 3:13] = mask[8:32, 19:29] = 255
        for path, array in ((root / "images" / f"{ident}.png", image),
                            (root / mask_dir / mask_name.format(id=ident), mask)):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
    return root


@pytest.mark.parametrize("mask_name, options, classes", [
    ("lung/{id}.png", [], ["lung"]),                                  # any class folder name
    ("lung/{id}.png", ["--classes", "lung"], ["lung"]),
    ("lung/{id}.png", ["--classes", "lung=lungs"], ["lungs"]),        # chosen and renamed
    ("{id}.png", [], ["mask"]),                                       # a flat mask folder: one class
    ("{id}_mask.png", ["--class-name", "lungs", "--mask-suffix", "_mask"], ["lungs"]),  # the Shenzhen / Kaggle names
])
def test_folder_layouts_as_users_have_them(tmp_path: Path, mask_name: str, options: list[str], classes) -> None:
    src = _lung_set(tmp_path / "src", "masks", mask_name)
    result = _run("folder", "--images", str(src / "images"), "--masks", str(src / "masks"), "--out",
                  str(tmp_path / "out"), "--keep-size", *options)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out/dataset.json").read_text())["classes"] == classes
    mask = read_image(tmp_path / "out/masks" / classes[0] / "CHNCXR_0001_0.png")
    assert mask.shape == (40, 32) and mask[20, 5] == 255 and mask[20, 16] == 0


@pytest.mark.parametrize("mask_name, options, message", [
    ("{id}_mask.png", [], "pass --mask-suffix _mask to match them"),
    ("lung/{id}.png", ["--class-name", "lungs"], "choose and rename folders with --classes folder=class"),
    ("{id}.png", ["--classes", "lungs"], "name the class with --class-name instead"),
    ("lung/fold1/{id}.png", [], "expected one folder per class holding masks named like their images"),
])
def test_folder_layout_errors_name_the_fix(tmp_path: Path, mask_name: str, options: list[str], message: str) -> None:
    src = _lung_set(tmp_path / "src", "masks", mask_name)
    result = _run("folder", "--images", str(src / "images"), "--masks", str(src / "masks"), "--out",
                  str(tmp_path / "out"), *options)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()


def test_click_path_and_usage_checks(tmp_path: Path) -> None:
    result = _run("folder", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = _run("montgomery", "--root", str(tmp_path), "--download", str(tmp_path / "dl"), "--out",
                  str(tmp_path / "out"))
    assert result.exit_code == 2 and "--download replaces --root" in result.output
    result = _run("montgomery", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "expected --root, --download" in result.output


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for ident in ("MCUCXR_0001_0", "MCUCXR_0002_1"):
            left = np.zeros((49, 40), dtype=np.uint8)
            right = np.zeros((49, 40), dtype=np.uint8)
            right[10:40, 4:16] = 255
            left[10:40, 24:36] = 255
            files = ((f"CXR_png/{ident}.png", np.full((49, 40), 3000, dtype=np.uint16)),
                     (f"ManualMask/leftMask/{ident}.png", left), (f"ManualMask/rightMask/{ident}.png", right))
            for name, array in files:
                png = io.BytesIO()
                Image.fromarray(array).save(png, format="PNG")
                zf.writestr(f"MontgomerySet/{name}", png.getvalue())
    return buffer.getvalue()


def test_montgomery_download_then_prepare(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    archive = _archive()
    (served / "MontgomerySet.zip").write_bytes(archive)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/MontgomerySet.zip"
        result = _run("montgomery", "--download", str(tmp_path / "dl"), "--url", url, "--sha256", "0" * 64,
                      "--out", str(tmp_path / "out"))
        assert result.exit_code == 1 and "SHA-256 mismatch" in result.output and not (tmp_path / "out").exists()
        result = _run("montgomery", "--download", str(tmp_path / "dl"), "--url", url, "--sha256",
                      hashlib.sha256(archive).hexdigest(), "--out", str(tmp_path / "out"), "--size", "32")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    assert meta["count"] == 2 and meta["source"]["layout"].startswith("NLM")
    assert meta["images"][0]["size"] == [32, 26]  # 49x40 -> longest side 32, aspect kept
    image = read_image(tmp_path / "out/images/MCUCXR_0001_0.png")
    assert image.dtype == np.uint16 and int(image[0, 0]) == round(3000 / 4095 * 65535)  # 12-bit scaled to 16
