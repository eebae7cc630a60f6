"""prepare_*: real subsets and originals, synthetic layouts, every bad input, nothing half written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segmentation.data import formats
from segmentation.data import prepare as prep
from segmentation.data.dataset import load_dataset
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


@pytest.mark.parametrize("names, recorded", [
    (("_mask", "_mask"), "CHNCXR images + <id>_mask.png merged lung masks"),
    (("", ""), "CHNCXR images + <id>.png merged lung masks"),
    (("", "_mask"), "CHNCXR images + <id>.png and <id>_mask.png merged lung masks"),
])
def test_prepare_shenzhen_records_the_mask_names_read(tmp_path: Path, names, recorded) -> None:
    for ident, name in zip(("CHNCXR_0001_0", "CHNCXR_0002_1"), names):
        _png(tmp_path / "CXR_png" / f"{ident}.png", np.full((48, 40), 90, dtype=np.uint8))
        left, right = _lungs((48, 40))
        _png(tmp_path / "masks" / f"{ident}{name}.png", left | right)
    out = prep.prepare_shenzhen(tmp_path / "CXR_png", tmp_path / "masks", tmp_path / "out", classes=("lungs",),
                                size=None, show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["source"]["layout"] == recorded
    assert [Path(r["mask_files"]["merged_lungs"]).name for r in meta["images"]] == [
        f"CHNCXR_0001_0{names[0]}.png", f"CHNCXR_0002_1{names[1]}.png"]


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


@pytest.mark.parametrize("mask_shape, sizes", [
    ((20, 16), "16x20 \\(width x height\\) for image .*c\\.png of size 32x40"),  # half size: only SCR may be half
    ((32, 40), "40x32 \\(width x height\\) for image .*c\\.png of size 32x40"),  # saved transposed
])
def test_mask_of_another_size_width_x_height(tmp_path: Path, mask_shape: tuple[int, int], sizes: str) -> None:
    src = _folder(tmp_path / "src")  # images 40 rows x 32 columns: 32x40 as image tools print it
    _png(src / "masks/left_lung/c.png", np.zeros(mask_shape, dtype=np.uint8))
    with pytest.raises(DataError, match=rf"left_lung/c\.png: mask of size {sizes}; expected the image's size"):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_jsrt_img_size_message_width_x_height(tmp_path: Path) -> None:
    (tmp_path / "a.IMG").write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match=r"expected 48 bytes \(headerless 6x4 16-bit JSRT \.IMG\), got 10"):
        formats.read_jsrt_img(tmp_path / "a.IMG", shape=(4, 6))


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


def _class_folders(root: Path, folders: tuple[str, ...], ids=("a", "b"), shape=(40, 32), names=None) -> Path:
    """images/<id>.png and masks/<folder>/<id><names suffix>.png, each folder's mask a different box."""
    rng = np.random.default_rng(0)
    for ident in ids:
        _png(root / "images" / f"{ident}.png", rng.integers(0, 256, shape, dtype=np.uint8))
        for k, folder in enumerate(folders):
            mask = np.zeros(shape, dtype=np.uint8)
            mask[4 + 3 * k: 20 + 3 * k, 2 + 2 * k: 12 + 2 * k] = 255
            _png(root / "masks" / folder / f"{ident}{names or ''}.png", mask)
    return root


def _box(k: int, shape=(40, 32)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[4 + 3 * k: 20 + 3 * k, 2 + 2 * k: 12 + 2 * k] = True
    return mask


@pytest.mark.parametrize("folders, classes, recorded, sources", [
    (("lung",), None, ["lung"], [0]),                                   # a class name SCR does not have
    (("lung",), ("lung=lungs",), ["lungs"], [0]),                       # chosen and renamed
    (("lung",), {"lung": "lungs"}, ["lungs"], [0]),                     # the same as a mapping
    (("Tumour", "heart"), ("heart", "tumour=lesion"), ["heart", "lesion"], [1, 0]),  # folders found normalised
    (("left lung", "Right-Lung"), None, ["left_lung", "right_lung"], [0, 1]),        # organ names normalised
    (("left_lung", "lungs", "right_lung"), ("lungs",), ["lungs"], [1]),  # a stored lungs folder, not the union
])
def test_folder_any_class_name_prepares_and_loads(tmp_path: Path, folders, classes, recorded, sources) -> None:
    src = _class_folders(tmp_path / "src", folders)
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", classes=classes, size=None,
                              show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == recorded and sorted(p.name for p in (out / "masks").iterdir()) == sorted(recorded)
    # every recorded class loads as itself, a stored lungs folder included (not the union of left and right)
    data = load_dataset(out, classes=tuple(recorded), size=None)
    assert data.classes == tuple(recorded) and data.masks.shape == (2, len(recorded), 40, 32)
    for channel, k in enumerate(sources):
        np.testing.assert_array_equal(data.masks[0, channel].numpy() > 0.5, _box(k))


@pytest.mark.parametrize("folders, options, message", [
    (("left_lung",), {"classes": ("spleen",)}, r"spleen: no mask folder 'spleen' \(present: left_lung\); add it"),
    (("lung",), {"classes": ("lung=a/b",)}, r"expected a class name usable as a folder name .*got 'a/b'"),
    (("lung",), {"classes": ("lung=",)}, r"expected --classes entries 'folder' or 'folder=class' .*got 'lung='"),
    (("lung",), {"classes": ()}, r"expected at least one class in --classes, got none"),
    (("lung", "heart"), {"classes": ("lung=x", "heart=x")}, r"expected each class once, got 'x' twice"),
    (("left lung", "left_lung"), {}, r"left_lung: the same class \('left_lung'\) as .*left lung; merge or rename"),
    (("lung",), {"class_name": "lungs"}, r"holds class folders \(lung\), and --class-name .*--classes folder=class"),
])
def test_folder_class_errors(tmp_path: Path, folders, options, message) -> None:
    src = _class_folders(tmp_path / "src", folders)
    with pytest.raises(DataError, match=message):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_folder_scr_names_stay_scr_only(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    with pytest.raises(DataError, match=r"unknown organ name 'lungs'"):  # SCR has no merged class
        prep.prepare_jsrt(src / "images", src / "masks", tmp_path / "out", classes=("lungs",))


@pytest.mark.parametrize("class_name, recorded", [(None, "mask"), ("lungs", "lungs"), ("Left Lung", "left_lung"),
                                                  ("lung field", "lung field")])
def test_folder_flat_mask_folder_is_one_class(tmp_path: Path, class_name, recorded) -> None:
    src = _class_folders(tmp_path / "src", ("",))  # masks/<id>.png
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", class_name=class_name, size=None,
                              show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == [recorded] and "one class" in meta["source"]["layout"]
    np.testing.assert_array_equal(read_mask(out / "masks" / recorded / "b.png"), _box(0))
    assert load_dataset(out, classes=(recorded,), size=None).masks.shape == (2, 1, 40, 32)


def test_folder_mask_layout_errors_say_the_expected_layout(tmp_path: Path) -> None:
    layouts = r"expected one folder per class .*\(masks/<class>/<id>\.png.*the mask files themselves \(masks/<id>\.png"
    src = _class_folders(tmp_path / "src", ("",))  # src/masks holds the mask files directly
    (src / "empty").mkdir()
    _png(src / "both" / "a.png", np.zeros((40, 32), dtype=np.uint8))
    (src / "both" / "lung").mkdir()
    (src / "nested" / "lung" / "fold1").mkdir(parents=True)
    cases = [
        ("empty", {}, rf"empty: no mask files and no class folders; {layouts}"),
        ("both", {}, rf"both: holds both mask files \(a\.png, \.\.\.\) and folders \(lung\); {layouts}"),
        ("nested", {}, rf"nested/lung: no mask files in class folder 'lung'; {layouts}"),
        ("masks", {"classes": ("lungs",)}, r"holds mask files directly \(one class\).*the class with --class-name"),
    ]
    for masks, options, message in cases:
        with pytest.raises(DataError, match=message):
            prep.prepare_folder(src / "images", src / masks, tmp_path / "out", **options)
    with pytest.raises(DataError, match=r"expected --masks with --class-name or --mask-suffix"):
        prep.prepare_folder(src / "images", None, tmp_path / "out", mask_suffix="_mask")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folders, names, mask_suffix", [
    (("",), "_mask", "_mask"),           # Shenzhen / Kaggle: masks/<id>_mask.png
    (("lung",), "_MASK", "_mask"),       # per class, the suffix in another case
    (("lung",), "-seg", "-seg"),
    (("lung",), "", "_mask"),            # masks without the suffix still match by their whole stem
])
def test_folder_mask_suffix(tmp_path: Path, folders, names, mask_suffix) -> None:
    src = _class_folders(tmp_path / "src", folders, names=names)
    out = prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", mask_suffix=mask_suffix, size=None,
                              show_progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 2 and meta["source"]["mask_suffix"] == mask_suffix
    assert sorted(p.name for p in (out / "masks" / meta["classes"][0]).iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize("names, options, message", [
    ("_mask", {}, r"images/a\.png: image without a mask; 2 of 2 masks without an image are named like an "
                  r"image plus '_mask' \(e\.g\. a_mask\.png\): pass --mask-suffix _mask to match them; else add"),
    ("_mask", {"skip_unmatched": True}, r"expected at least one image with all its masks, got none; .*-suffix _mask"),
    ("-seg", {"mask_suffix": "_mask"}, r"pass --mask-suffix -seg to match them"),
    (" seg", {}, r"pass --mask-suffix ' seg' to match them"),
    ("", {"mask_suffix": "/"}, r"expected --mask-suffix to be the end of a file stem such as '_mask', got '/'"),
])
def test_folder_unmatched_names_mask_suffix(tmp_path: Path, names, options, message) -> None:
    src = _class_folders(tmp_path / "src", ("",), names=names)
    with pytest.raises(DataError, match=message):
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out", **options)


def test_folder_unrelated_mismatch_names_no_suffix(tmp_path: Path) -> None:
    src = _class_folders(tmp_path / "src", ("lung",))
    (src / "masks/lung/b.png").rename(src / "masks/lung/z.png")
    with pytest.raises(DataError, match=r"image without a lung mask; add the mask") as err:
        prep.prepare_folder(src / "images", src / "masks", tmp_path / "out")
    assert "--mask-suffix" not in str(err.value)


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
