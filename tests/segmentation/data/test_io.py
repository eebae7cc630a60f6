import numpy as np
import pytest
from PIL import Image

from segmentation.data.io import DataError, read_image, read_mask, write_png


def test_16_bit_roundtrip(tmp_path):
    array = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    back = read_image(write_png(tmp_path / "x.png", array))
    assert back.dtype == np.uint16 and np.array_equal(back, array)


def test_palette_image_is_read_as_displayed(tmp_path):
    index = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette([v for i in range(256) for v in (255 - i,) * 3])  # inverted grey palette, as in JSRT PNGs
    im.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").tolist() == [[255, 254], [253, 252]]


def test_truncated_file_names_the_file(tmp_path):
    write_png(tmp_path / "ok.png", np.zeros((32, 32), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_non_binary_mask_is_rejected_unless_thresholding(tmp_path):
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (4, 1))
    write_png(tmp_path / "m.png", ramp)
    with pytest.raises(DataError, match="binary"):
        read_mask(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", strict=False).sum() == 4 * 16


def test_binary_mask_values(tmp_path):
    write_png(tmp_path / "b.png", np.array([[0, 255], [255, 0]], np.uint8))
    assert read_mask(tmp_path / "b.png").tolist() == [[False, True], [True, False]]
