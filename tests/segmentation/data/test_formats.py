"""Readers of original dataset formats: real files from shared/data/originals, synthetic files in documented formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segmentation.data import formats
from segmentation.data.io import DataError, read_mask

JSRT_IMAGES = Path("originals/jsrt/JSRT/jsrt_images/images")
SCR_MASKS = Path("originals/jsrt/JSRT/masks/masks")
MC_MERGED = Path("originals/montgomery/data")


def _centroid_x(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


# ------------------------------------------------------------------------------------- real files


@pytest.mark.realdata
def test_jsrt_palette_png_reads_as_displayed_grey(real_data: Path) -> None:
    path = real_data / JSRT_IMAGES / "JPCLN001.IMG.png"
    with Image.open(path) as im:
        assert im.mode == "P"
        indices = np.array(im)
    image = formats.read_jsrt_image(path)
    assert image.array.shape == (2048, 2048) and image.array.dtype == np.uint8 and image.bits_stored == 8
    # MANIFEST: every JSRT palette maps index i to grey 255 - i (inverted palette).
    np.testing.assert_array_equal(image.array, 255 - indices)
    assert image.spacing_mm == pytest.approx((0.175, 0.175))
    # As displayed: the lungs (darker) are below the mean of the mediastinum column at mid-height.
    row = image.array[1024].astype(float)
    assert row[512] < row[1024] and row[1536] < row[1024]


@pytest.mark.realdata
def test_scr_gif_masks_found_and_binary(real_data: Path) -> None:
    found = formats.find_scr_masks(real_data / SCR_MASKS)
    assert set(found) == set(formats.ORGANS)
    assert all(set(table) == {"JPCLN001", "JPCNN001"} for table in found.values())
    left = read_mask(found["left_lung"]["JPCLN001"])
    right = read_mask(found["right_lung"]["JPCLN001"])
    assert left.shape == (1024, 1024) and left.dtype == bool
    # Patient's left lung lies on the image's right-hand side.
    assert _centroid_x(left) > 512 > _centroid_x(right)
    assert not (left & right).any()


@pytest.mark.realdata
def test_merged_montgomery_mask_split_left_on_image_right(real_data: Path) -> None:
    for ident in ("MCUCXR_0001_0", "MCUCXR_0399_1"):
        merged = read_mask(real_data / MC_MERGED / "masks" / f"{ident}.png", strict=False)
        left, right = formats.split_lungs(merged)
        assert (left | right == merged).all() and not (left & right).any()
        assert _centroid_x(left) > _centroid_x(right)
        # The shared pack's left/right masks were split by the same documented rule.
        np.testing.assert_array_equal(left, read_mask(real_data / "montgomery/masks/left_lung" / f"{ident}.png"))
        np.testing.assert_array_equal(right, read_mask(real_data / "montgomery/masks/right_lung" / f"{ident}.png"))


@pytest.mark.realdata
def test_merged_layout_detected_on_real_compilation(real_data: Path) -> None:
    images, masks = formats.find_merged_layout(real_data / "originals/montgomery")
    assert images.name == "cxr" and masks.name == "masks"
    assert formats.find_montgomery_nlm(real_data / "originals/montgomery") is None


# ----------------------------------------------------------------------------------- synthetic JSRT


def _write_img(path: Path, raw: np.ndarray) -> Path:
    raw.astype(">u2").tofile(path)
    return path


def test_jsrt_img_big_endian_white_is_zero(tmp_path: Path) -> None:
    raw = np.zeros((2048, 2048), dtype=np.uint16)
    raw[0, 0], raw[0, 1], raw[5, 7] = 4095, 1000, 1  # dense (white-is-zero): 4095 is black
    path = _write_img(tmp_path / "JPCLN001.IMG", raw)
    array = formats.read_jsrt_img(path)
    assert array.dtype == np.uint16 and array.shape == (2048, 2048)
    assert (array[0, 0], array[0, 1], array[5, 7], array[1, 1]) == (0, 3095, 4094, 4095)
    image = formats.read_source_image(path)
    assert image.bits_stored == 12 and image.spacing_mm == (0.175, 0.175)


def test_jsrt_img_truncated_or_little_endian_rejected(tmp_path: Path) -> None:
    short = tmp_path / "short.IMG"
    short.write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError, match=r"short\.IMG: expected 8388608 bytes .* got 1000.*re-download"):
        formats.read_jsrt_img(short)
    little = tmp_path / "little.IMG"
    np.full((2048, 2048), 4095, dtype="<u2").tofile(little)  # 0x0FFF little-endian reads as 0xFF0F = 65295
    with pytest.raises(DataError, match=r"little\.IMG: expected 12-bit values .* got a maximum of 65295"):
        formats.read_jsrt_img(little)


def test_image_ids() -> None:
    assert formats.image_id("a/JPCLN001.IMG.png") == "JPCLN001"
    assert formats.image_id("JPCNN093.IMG") == "JPCNN093"
    assert formats.image_id("x/MCUCXR_0001_0.png") == "MCUCXR_0001_0"
    assert formats.shenzhen_mask_id("CHNCXR_0001_0_mask.png") == "CHNCXR_0001_0"
    assert formats.shenzhen_mask_id("CHNCXR_0001_0.png") is None


def _gif(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size, size), dtype=np.uint8)
    array[2:5, 2:5] = 255
    Image.fromarray(array).save(path, format="GIF")


def test_scr_folder_name_variants_and_folds(tmp_path: Path) -> None:
    for organ, fold, ident in [("left lung", "fold1", "A"), ("left_lung", "fold2", "B"), ("right lung", "fold1", "A"),
                               ("Right-Lung", "fold2", "B"), ("heart", "fold1", "A"), ("heart", "fold2", "B")]:
        _gif(tmp_path / "scratch" / fold / "masks" / organ / f"{ident}.gif")
    _gif(tmp_path / "scratch" / "fold1" / "masks" / "left_lung_png" / "C.gif")  # a copy folder: ignored
    found = formats.find_scr_masks(tmp_path / "scratch", ("left_lung", "right_lung", "heart"))
    assert {k: sorted(v) for k, v in found.items()} == {"left_lung": ["A", "B"], "right_lung": ["A", "B"],
                                                         "heart": ["A", "B"]}
    with pytest.raises(DataError, match=r"no SCR mask folder for left_clavicle.*--masks"):
        formats.find_scr_masks(tmp_path / "scratch", ("left_lung", "left_clavicle"))
    _gif(tmp_path / "scratch" / "fold2" / "masks" / "heart" / "A.gif")
    with pytest.raises(DataError, match=r"heart mask of 'A' also at .*remove the duplicate"):
        formats.find_scr_masks(tmp_path / "scratch", ("heart",))


# ------------------------------------------------------------------------------------- Montgomery


def test_nlm_layout_found_below_root(tmp_path: Path) -> None:
    base = tmp_path / "download" / "MontgomerySet"
    for sub in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask"):
        (base / sub).mkdir(parents=True)
    nlm = formats.find_montgomery_nlm(tmp_path)
    assert nlm is not None and nlm.images == base / "CXR_png" and nlm.right == base / "ManualMask/rightMask"
    assert formats.find_montgomery_nlm(tmp_path / "download" / "MontgomerySet" / "CXR_png") is None


def test_montgomery_spacing() -> None:
    assert formats.montgomery_spacing((4892, 4020)) == pytest.approx((0.0875, 0.0875))
    # A copy at 1/40 of each side, same aspect: spacing x 40 (0.0875 * 4892 / 122.3 = 3.5).
    assert formats.montgomery_spacing((4892 // 4, 4020 // 4)) == pytest.approx((0.35, 0.35), rel=1e-3)
    assert formats.montgomery_spacing((512, 512)) is None  # squashed square copy: aspect lost


def test_split_lungs_hand_computed() -> None:
    mask = np.zeros((6, 12), dtype=bool)
    mask[1:5, 1:4] = True      # image left: patient's right lung, 12 px, centroid x = 2
    mask[1:5, 7:11] = True     # image right: patient's left lung, 16 px, centroid x = 8.5
    mask[0, 11] = True         # a speck at x = 11 > midpoint 5.25: left lung
    mask[5, 0] = True          # touches the right lung diagonally: 8-connected, same component
    left, right = formats.split_lungs(mask)
    assert left.sum() == 17 and right.sum() == 13
    assert left[0, 11] and right[5, 0] and not (left & right).any()


def test_split_lungs_one_component_rejected() -> None:
    mask = np.zeros((6, 12), dtype=bool)
    mask[1:5, 1:11] = True
    with pytest.raises(DataError, match=r"m\.png: expected two lung components .* got 1.*--classes lungs"):
        formats.split_lungs(mask, "m.png")


# ------------------------------------------------------------------------------------ other files


def test_check_classes() -> None:
    assert formats.check_classes(["Left Lung", "heart"]) == ("left_lung", "heart")
    with pytest.raises(DataError, match=r"unknown organ name 'liver': expected one of left_lung"):
        formats.check_classes(["liver"])
    with pytest.raises(DataError, match=r"expected each class once, got 'heart' twice"):
        formats.check_classes(["heart", "Heart"])


def test_sixteen_bit_png_bits(tmp_path: Path) -> None:
    twelve = np.array([[0, 4095], [100, 2000]], dtype=np.uint16)
    Image.fromarray(twelve).save(tmp_path / "a.png")
    assert formats.read_source_image(tmp_path / "a.png").bits_stored == 12
    full = np.array([[0, 65535], [100, 2000]], dtype=np.uint16)
    Image.fromarray(full).save(tmp_path / "b.png")
    assert formats.read_source_image(tmp_path / "b.png").bits_stored == 16


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, bits: int, spacing: tuple[float, float] | None):
    """A minimal uncompressed single-frame grey DICOM file."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if spacing is not None:
        ds.ImagerPixelSpacing = [str(spacing[0]), str(spacing[1])]
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pydicom


def test_dicom_monochrome1_inverted_with_spacing(tmp_path: Path) -> None:
    pixels = np.array([[0, 4095, 10], [1000, 2000, 3000]], dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", pixels, "MONOCHROME1", 12, (0.139, 0.14))
    image = formats.read_source_image(tmp_path / "a.dcm")
    np.testing.assert_array_equal(image.array, 4095 - pixels)
    assert image.bits_stored == 12 and image.spacing_mm == pytest.approx((0.139, 0.14))
    write_dicom(tmp_path / "b.dcm", pixels, "MONOCHROME2", 12, None)
    image = formats.read_source_image(tmp_path / "b.dcm")
    np.testing.assert_array_equal(image.array, pixels)
    assert image.spacing_mm is None


def test_dicom_truncated_rejected(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    write_dicom(tmp_path / "a.dcm", pixels, "MONOCHROME2", 12, None)
    data = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "a.dcm").write_bytes(data[: len(data) - 60])
    with pytest.raises(DataError, match=r"a\.dcm: unreadable or truncated DICOM .*re-export"):
        formats.read_source_image(tmp_path / "a.dcm")
