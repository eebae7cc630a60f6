"""prepare_*: real subsets and originals, synthetic layouts, every bad input, nothing half written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segmentation.data import prepare as prep
from segmentation.data.io import DataError, read_image, read_mask

ORGANS = ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _lungs(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) boxes: the patient's left lung on the image's right."""
    h, w = shape
    left = np.zeros(shape, dtype=np.uint8)
    right = np.zeros(shape, dtype=np.uint8)
    right[h // 4: 3 * h // 4, w // 8: 3 * w // 8] = 255
    left[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8] = 255
    return left, right


def _folder(root: Path, ids=("a", "b", "c"), shape=(40, 32), classes=("left_lung", "right_lung")) -> Path:
    rng = np.random.default_rng(0)
    for ident in ids:
        _png(root / "images" / f"{ident}.png", rng.integers(0, 256, shape, dtype=np.uint8))
        left, right = _lungs(shape)
        for cls in classes:
            _png(root / "masks" / cls / f"{ident}.png", left if cls != "right_lung" else right)
    return root


def _write_dicom(path: Path, pixels: np.ndarray, spacing: float) -> None:
    """A minimal uncompressed 12-bit MONOCHROME1 DICOM (test_formats.py checks the reader in detail)."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [str(spacing), str(spacing)]
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_prepare_folder_real_jsrt_subset(real_data: Path, tmp_path: Path) -> None:
    ids = sorted(p.stem for p in (real_data / "jsrt/images").iterdir())[::50]  # 5 of 247, both JPCLN and JPCNN
    src = tmp_path / "src"
    for sub in ["images", *(f"masks/{o}" for o in ORGANS)]:
        (src / sub).mkdir(parents=True)
        for ident in ids:
            os.symlink(real_data / "jsrt" / sub / f"{ident}.png", src / sub / f"{ident}.png")
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", size=128, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == len(ids) == 5 and sorted(meta["classes"]) == sorted(ORGANS)
    assert meta["original_sizes"] == [[512, 512]] and meta["target_size"] == 128 and meta["bit_depths"] == [8]
    assert [r["id"] for r in meta["images"]] == ids and meta["images"][0]["pixel_spacing_mm"] is None
    assert sorted(p.stem for p in (out / "images").iterdir()) == ids
    for ident in ids:
        image = read_image(out / "images" / f"{ident}.png")
        assert image.shape == (128, 128) and image.dtype == np.uint8
        for organ in ORGANS:
            mask = read_image(out / "masks" / organ / f"{ident}.png")
            assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
            # label-safe 4x reduction keeps the area: within 3% of a quarter-squared of the source area
            src_area = (read_image(real_data / "jsrt/masks" / organ / f"{ident}.png") > 0).sum()
            assert abs((mask > 0).sum() * 16 - src_area) <= 0.03 * src_area + 64
    # the prepared folder is what the data pipeline reads
    from segmentation.data.dataset import load_dataset

    data = load_dataset(out, classes=("lungs", "heart"), size=64)
    assert data.images.shape == (5, 1, 64, 64) and data.masks.shape == (5, 2, 64, 64)


@pytest.mark.realdata
def test_prepare_jsrt_originals_reproduces_shared_pack(real_data: Path, tmp_path: Path) -> None:
    out = prep.prepare_jsrt(real_data / "originals/jsrt/JSRT/jsrt_images/images",
                            real_data / "originals/jsrt/JSRT/masks/masks", tmp_path / "jsrt", show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 2 and meta["classes"] == list(ORGANS)
    # 0.175 mm at 2048 px -> 0.7 mm at 512 px
    assert [r["pixel_spacing_mm"] for r in meta["images"]] == [0.7, 0.7]
    for ident in ("JPCLN001", "JPCNN001"):
        # The shared pack was made from these files by the same documented resize (MANIFEST.md).
        ours = read_image(out / "images" / f"{ident}.png").astype(int)
        theirs = read_image(real_data / "jsrt/images" / f"{ident}.png").astype(int)
        assert ours.shape == (512, 512) and np.abs(ours - theirs).max() <= 1
        for organ in ORGANS:
            ours_m = read_mask(out / "masks" / organ / f"{ident}.png")
            theirs_m = read_mask(real_data / "jsrt/masks" / organ / f"{ident}.png")
            assert (ours_m == theirs_m).mean() >= 0.995  # MANIFEST's agreement bar for its own resize


@pytest.mark.realdata
def test_prepare_montgomery_compilation_split(real_data: Path, tmp_path: Path) -> None:
    root = real_data / "originals/montgomery"
    with pytest.raises(DataError, match=r"MCUCXR_0001_0\.png: expected a binary mask .*--threshold-masks"):
        prep.prepare_montgomery(tmp_path / "mc", root=root, show_progress=False)
    assert not (tmp_path / "mc").exists() and _leftovers(tmp_path) == []
    out = prep.prepare_montgomery(tmp_path / "mc", root=root, classes=("left_lung", "right_lung", "lungs"),
                                  threshold_masks=True, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 2 and meta["images"][0]["pixel_spacing_mm"] is None  # squashed square copy
    for ident in ("MCUCXR_0001_0", "MCUCXR_0399_1"):
        np.testing.assert_array_equal(read_image(out / "images" / f"{ident}.png"),
                                      read_image(real_data / "montgomery/images" / f"{ident}.png"))
        left = read_mask(out / "masks/left_lung" / f"{ident}.png")
        right = read_mask(out / "masks/right_lung" / f"{ident}.png")
        np.testing.assert_array_equal(left, read_mask(real_data / "montgomery/masks/left_lung" / f"{ident}.png"))
        np.testing.assert_array_equal(right, read_mask(real_data / "montgomery/masks/right_lung" / f"{ident}.png"))
        np.testing.assert_array_equal(read_mask(out / "masks/lungs" / f"{ident}.png"), left | right)


# ------------------------------------------------------------------------------- synthetic layouts


def test_prepare_jsrt_raw_img_sixteen_bit(tmp_path: Path) -> None:
    raw = np.full((2048, 2048), 4095, dtype=np.uint16)  # white is zero: 4095 is black
    raw[:1024] = 0                                       # top half white
    (tmp_path / "img").mkdir()
    raw.astype(">u2").tofile(tmp_path / "img" / "JPCLN001.IMG")
    left, right = _lungs((1024, 1024))
    for organ, mask in (("left lung", left), ("right lung", right)):
        _png(tmp_path / "scr" / "fold1" / organ / "JPCLN001.gif", mask)
    out = prep.prepare_jsrt(tmp_path / "img", tmp_path / "scr", tmp_path / "out", classes=("left_lung", "right_lung"),
                            size=64, show_progress=False)
    image = read_image(out / "images/JPCLN001.png")
    assert image.dtype == np.uint16 and image.shape == (64, 64)
    assert image[:28].min() == 65535 and image[36:].max() == 0  # 12-bit 4095 -> 65535, away from the edge
    left_out = read_mask(out / "masks/left_lung/JPCLN001.png")
    assert left_out.shape == (64, 64) and left_out[16:48, 40:56].all() and not left_out[:, :32].any()
    entry = json.loads((out / "dataset.json").read_text())["images"][0]
    assert entry["bits_stored"] == 12 and entry["bit_depth"] == 16 and entry["pixel_spacing_mm"] == 5.6  # 0.175*32


def _nlm(root: Path, shapes: dict[str, tuple[int, int]], swapped: tuple[str, ...] = ()) -> Path:
    base = root / "MontgomerySet"
    for ident, shape in shapes.items():
        image = np.full(shape, 2000, dtype=np.uint16)
        image[: shape[0] // 2] = 4095
        _png(base / "CXR_png" / f"{ident}.png", image)
        left, right = _lungs(shape)
        if ident in swapped:  # the "leftMask" file holds the lung on the image's left
            left, right = right, left
        _png(base / "ManualMask/leftMask" / f"{ident}.png", left)
        _png(base / "ManualMask/rightMask" / f"{ident}.png", right)
    return root


def test_prepare_montgomery_nlm_layout(tmp_path: Path) -> None:
    # 1/4 of 4892x4020 (portrait) and of 4020x4892 (landscape): the NLM aspect ratios.
    root = _nlm(tmp_path / "dl", {"MCUCXR_0001_0": (1223, 1005), "MCUCXR_0002_1": (1005, 1223)},
                swapped=("MCUCXR_0002_1",))
    out = prep.prepare_montgomery(tmp_path / "out", root=root, size=64, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == ["left_lung", "right_lung"] and meta["source"]["layout"].startswith("NLM")
    sizes = {r["id"]: r["size"] for r in meta["images"]}
    assert sizes == {"MCUCXR_0001_0": [64, 53], "MCUCXR_0002_1": [53, 64]}  # longest side 64, aspect kept
    portrait = meta["images"][0]
    assert portrait["original_pixel_spacing_mm"] == pytest.approx(0.35)
    assert portrait["pixel_spacing_mm"] == pytest.approx([0.35 * 1223 / 64, 0.35 * 1005 / 53], rel=1e-5)
    image = read_image(out / "images/MCUCXR_0001_0.png")
    assert image.dtype == np.uint16 and image[0, 0] == 65535 and image[-1, -1] == round(2000 / 4095 * 65535)
    # left_lung ends on the image's right for both, the swapped files included, and the swap is recorded
    for ident in ("MCUCXR_0001_0", "MCUCXR_0002_1"):
        left = read_mask(out / "masks/left_lung" / f"{ident}.png")
        assert left[:, left.shape[1] // 2:].sum() > 0 and not left[:, : left.shape[1] // 2].any()
    assert [r.get("sides_swapped", False) for r in meta["images"]] == [False, True]


def test_prepare_shenzhen_skip_unmatched(tmp_path: Path) -> None:
    for ident in ("CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0003_1"):
        _png(tmp_path / "CXR_png" / f"{ident}.png", np.full((48, 40), 90, dtype=np.uint8))
    for ident in ("CHNCXR_0001_0", "CHNCXR_0003_1"):
        left, right = _lungs((48, 40))
        _png(tmp_path / "masks" / f"{ident}_mask.png", left | right)
    # a compilation folder mixing both sets: the Montgomery files are ignored by prepare_shenzhen
    _png(tmp_path / "CXR_png" / "MCUCXR_0001_0.png", np.full((48, 40), 90, dtype=np.uint8))
    _png(tmp_path / "masks" / "MCUCXR_0001_0.png", np.zeros((48, 40), dtype=np.uint8))
    with pytest.raises(DataError, match=r"CHNCXR_0002_1\.png: image without a merged lung mask.*--skip-unmatched"):
        prep.prepare_shenzhen(tmp_path / "CXR_png", tmp_path / "masks", tmp_path / "out", show_progress=False)
    out = prep.prepare_shenzhen(tmp_path / "CXR_png", tmp_path / "masks", tmp_path / "out", size=None,
                                skip_unmatched=True, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 2 and meta["skipped"][0]["file"].endswith("CHNCXR_0002_1.png")
    left = read_mask(out / "masks/left_lung/CHNCXR_0003_1.png")
    np.testing.assert_array_equal(left, _lungs((48, 40))[0] > 0)


def test_prepare_folder_dicom_images_only(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))
    (tmp_path / "dcm").mkdir()
    _write_dicom(tmp_path / "dcm" / "p1.dcm", pixels, 0.2)
    out = prep.prepare_folder(tmp_path / "dcm", None, tmp_path / "out", size=32, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == [] and meta["images"][0]["pixel_spacing_mm"] == pytest.approx(0.4)
    image = read_image(out / "images/p1.png")
    assert image.dtype == np.uint16 and image.shape == (32, 32)
    assert image[0, 0] > 60000 and image[0, -1] < 3000  # MONOCHROME1 inverted: raw 0 shown white


# ------------------------------------------------------------------------------------- bad inputs


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: no such images folder \(--images\); check the path"):
        prep.prepare_folder(tmp_path / "nope", None, tmp_path / "out")


def test_image_without_mask_and_reverse(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (src / "masks/right_lung/b.png").rename(src / "masks/right_lung/z.png")
    with pytest.raises(DataError, match=r"images/b\.png: image without a right_lung mask; add the mask"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out")
    (src / "images/b.png").unlink()
    (src / "masks/left_lung/b.png").unlink()
    with pytest.raises(DataError, match=r"right_lung/z\.png: right_lung mask without an image"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_mask_of_another_size(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    _png(src / "masks/left_lung/c.png", np.zeros((20, 16), dtype=np.uint8))  # half size: only SCR may be half
    with pytest.raises(DataError, match=r"left_lung/c\.png: mask of size 20x16 for image .*c\.png of size 40x32"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_truncated_last_file_leaves_nothing(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    data = (src / "images/c.png").read_bytes()
    (src / "images/c.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"images/c\.png: unreadable or truncated image"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_non_binary_mask_and_threshold(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    soft = read_image(src / "masks/left_lung/a.png").copy()
    soft[0, :3] = (100, 127, 200)
    _png(src / "masks/left_lung/a.png", soft)
    with pytest.raises(DataError, match=r"left_lung/a\.png: expected a binary mask .*--threshold-masks"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", show_progress=False)
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", size=None, threshold_masks=True,
                              show_progress=False)
    assert read_mask(out / "masks/left_lung/a.png")[0, :3].tolist() == [False, False, True]  # > 127


def test_unknown_organ_name(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", classes=("left_lung", "liver"))
    with pytest.raises(DataError, match=r"masks/liver: unknown organ name 'liver'.*rename the folder, or pass --cl"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out")
    with pytest.raises(DataError, match=r"unknown organ name 'spleen'"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", classes=("spleen",))
    with pytest.raises(DataError, match=r"unknown organ name 'lungs'"):  # SCR has no merged class
        prep.prepare_jsrt(src / "images", src / "masks", tmp_path / "out", classes=("lungs",))
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", classes=("left_lung",),
                              show_progress=False)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["left_lung"]


def test_existing_output_and_overwrite(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match=r"out: the output folder exists and is not empty; .*--overwrite"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out")
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", overwrite=True, show_progress=False)
    assert not (out / "keep.txt").exists() and len(list((out / "images").iterdir())) == 3
    assert _leftovers(tmp_path) == []


def test_interrupted_prepare_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _folder(tmp_path / "src")
    calls = []

    def interrupted_write(path, array):  # noqa: ANN001
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_write(path, array)

    real_write = prep.write_png
    monkeypatch.setattr(prep, "write_png", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", show_progress=False, workers=1)
    assert len(calls) >= 4 and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_ctrl_c_in_main_thread_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _folder(tmp_path / "src", ids=tuple("abcdef"))

    def interrupted_progress(iterable, **kwargs):  # noqa: ANN001, ANN003
        for i, record in enumerate(iterable):
            if i == 2:
                raise KeyboardInterrupt  # as Ctrl-C while waiting for the third image
            yield record

    monkeypatch.setattr(prep, "progress", interrupted_progress)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_bad_size_arguments(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    with pytest.raises(ValueError, match=r"expected size >= 1 .*got 0"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", size=0)
    with pytest.raises(ValueError, match=r"expected workers >= 1, got 0"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", workers=0)
    with pytest.raises(ValueError, match=r"expected resize in \('longest', 'square'\), got 'crop'"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", resize="crop")
    assert prep.output_shape((4892, 4020), 512) == (512, 421)
    assert prep.output_shape((4892, 4020), 512, "square") == (512, 512)
