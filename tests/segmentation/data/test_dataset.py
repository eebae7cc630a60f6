"""Tests of segmentation.data.dataset: classes by name, CXRData, load_dataset, exclusive encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segmentation.data.dataset import CLASS_GROUPS, CXRData, from_exclusive, load_dataset, to_exclusive
from segmentation.data.preprocessing import resize_masks
from segmentation.data.io import DataError, write_png

ORGANS = ("left_lung", "right_lung", "heart")


def _write_dataset(root, n=3, size=(20, 16), organs=ORGANS, bits=8):
    """A tiny prepared folder: image i has a bright square that is also its left_lung mask."""
    rng = np.random.default_rng(0)
    for i in range(n):
        top = 65535 if bits == 16 else 255
        image = rng.integers(0, top // 4, size=size).astype(np.uint16 if bits == 16 else np.uint8)
        mask = np.zeros(size, bool)
        mask[2 + i : 10 + i, 4:12] = True
        image[mask] = top
        write_png(root / "images" / f"img{i}.png", image)
        for organ in organs:
            organ_mask = mask if organ == "left_lung" else np.roll(mask, 3 * (organs.index(organ)), axis=1)
            write_png(root / "masks" / organ / f"img{i}.png", organ_mask)
    return root


def test_class_groups():
    assert CLASS_GROUPS["lungs"] == ("left_lung", "right_lung")
    assert CLASS_GROUPS["clavicles"] == ("left_clavicle", "right_clavicle")
    assert CLASS_GROUPS["heart"] == ("heart",)
    assert CLASS_GROUPS["right_clavicle"] == ("right_clavicle",)


def test_load_native_size_values_and_union(tmp_path):
    root = _write_dataset(tmp_path / "ds")
    data = load_dataset(root, classes=("lungs", "left_lung", "heart"), size=None)
    assert data.images.shape == (3, 1, 20, 16) and data.masks.shape == (3, 3, 20, 16)
    assert data.ids == ["img0", "img1", "img2"] and data.classes == ("lungs", "left_lung", "heart")
    assert data.images.dtype == torch.float32 and float(data.images.max()) == 1.0
    left = data.masks[:, 1].bool()
    # the bright square is exactly the left lung; lungs = left | right (shifted by 3 columns)
    assert torch.equal(data.images[:, 0] == 1.0, left)
    right = torch.roll(left, 3, dims=2)
    assert torch.equal(data.masks[:, 0].bool(), left | right)
    assert int(data.masks[0, 0].sum()) == 8 * 8 + 3 * 8
    assert data.spacing_mm is None


def test_load_resized_label_safe_and_16bit(tmp_path):
    root = _write_dataset(tmp_path / "ds", size=(32, 32), bits=16)
    data = load_dataset(root, classes=("left_lung",), size=16)
    assert data.images.shape == (3, 1, 16, 16)
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert set(data.masks.unique().tolist()) <= {0.0, 1.0}
    # an 8x8 square at 32 px is 4x4 = 16 pixels at 16 px
    assert int(data.masks[0].sum()) == 16
    assert load_dataset(root, classes="left_lung", size=16).classes == ("left_lung",)  # a single name
    unlabelled = load_dataset(root, size=(8, 12), masks=False)
    assert unlabelled.masks is None and unlabelled.images.shape == (3, 1, 8, 12)


def test_spacing_from_dataset_json(tmp_path):
    root = _write_dataset(tmp_path / "ds", size=(32, 32))
    meta = {"pixel_spacing_mm": 0.5, "images": {"img1": {"pixel_spacing_mm": 0.25}}}
    (root / "dataset.json").write_text(json.dumps(meta))
    data = load_dataset(root, classes=("heart",), size=16)
    assert data.spacing_mm == [1.0, 0.5, 1.0]  # stored spacing x 32/16
    # prepare's layout: a list of records, [row, col] when anisotropic, null when unknown
    meta = {"images": [{"id": "img0", "pixel_spacing_mm": [0.25, 0.75]}, {"id": "img1", "pixel_spacing_mm": None}]}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert load_dataset(root, size=(16, 8)).spacing_mm == [0.5 * (0.25 * 2 + 0.75 * 4), None, None]
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        load_dataset(root)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: None, "no such dataset folder"),
        (lambda r: (r / "images" / "img1.png").unlink(), "mask without an image"),
        (lambda r: (r / "masks" / "right_lung" / "img2.png").unlink(), "image without a mask"),
        (lambda r: write_png(r / "masks" / "heart" / "img0.png", np.zeros((5, 5), bool)), "mask of size"),
        (lambda r: (r / "images" / "img0.png").write_bytes(b"\x89PNG broken"), "unreadable"),
    ],
)
def test_bad_folders(tmp_path, damage, message):
    root = tmp_path / "ds"
    if message != "no such dataset folder":
        _write_dataset(root)
    damage(root)
    with pytest.raises(DataError, match=message):
        load_dataset(root, classes=("lungs", "heart"), size=None)


def test_missing_organ_and_bad_arguments(tmp_path):
    root = _write_dataset(tmp_path / "ds", organs=("left_lung",))
    with pytest.raises(DataError, match="missing mask folder for organ 'right_lung'"):
        load_dataset(root, classes=("lungs",))
    with pytest.raises(ValueError, match="expected a class name in"):
        load_dataset(root, classes=("liver",))
    with pytest.raises(ValueError, match="expected size >= 1"):
        load_dataset(root, classes=("left_lung",), size=0)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="no PNG images"):
        load_dataset(tmp_path / "empty")


def test_cxrdata_subset_to_without_masks():
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    data = CXRData(images, torch.zeros(4, 2, 2, 2), ["a", "b", "c", "d"], ("lungs", "heart"), [1.0, 2.0, None, 4.0])
    sub = data.subset(["d", "b"])
    assert sub.ids == ["d", "b"] and sub.images[:, 0, 0, 0].tolist() == [3.0, 1.0] and sub.spacing_mm == [4.0, 2.0]
    assert data.subset([2]).ids == ["c"] and data.subset(torch.tensor([True, False, False, True])).ids == ["a", "d"]
    assert len(data) == 4 and data.to("cpu").images.device.type == "cpu"
    assert data.without_masks().masks is None and data.masks is not None
    with pytest.raises(KeyError, match="unknown id 'z'"):
        data.subset(["z"])
    with pytest.raises(ValueError, match=r"expected masks of shape \[4, 1, 2, 2\]"):
        CXRData(images, torch.zeros(4, 2, 2, 2), ["a", "b", "c", "d"], ("lungs",))
    with pytest.raises(ValueError, match="expected 4 ids"):
        CXRData(images, None, ["a"], ("lungs",))


def test_exclusive_round_trip_and_overlap():
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 0] = 1.0  # lungs everywhere
    masks[0, 1, 0, 0] = 1.0  # heart at (0, 0)
    masks[0, 2, 0, 0] = masks[0, 2, 1, 1] = 1.0  # clavicle at (0, 0) and (1, 1): later class wins
    labels = to_exclusive(masks)
    assert labels.dtype == torch.long and labels.tolist() == [[[3, 1], [1, 3]]]
    back = from_exclusive(labels, 3)
    assert back.shape == (1, 3, 2, 2) and back.sum(1).eq(1).all()
    assert torch.equal(to_exclusive(back), labels)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 2\]"):
        from_exclusive(labels, 2)
    with pytest.raises(ValueError, match="expected masks of shape"):
        to_exclusive(torch.zeros(2, 2, 2))


def test_resize_masks_keeps_binary():
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 2:7, 2:7] = 1.0
    out = resize_masks(mask, (17, 17))
    assert set(out.unique().tolist()) == {0.0, 1.0}


@pytest.mark.realdata
def test_real_jsrt_loads(real_data):
    data = load_dataset(real_data / "jsrt", classes=("lungs", "heart"), size=64)
    assert len(data) == 247 and data.masks.shape == (247, 2, 64, 64)
    # lungs cover roughly a quarter to a half of a JSRT radiograph; the heart is smaller than the lungs
    lung_area = float(data.masks[:, 0].mean())
    assert 0.15 < lung_area < 0.5 and float(data.masks[:, 1].mean()) < lung_area
    # lungs are darker than the rest of the image
    assert float(data.images[data.masks[:, :1].bool()].mean()) < float(data.images.mean())


def test_class_stored_as_its_own_mask_folder_is_read_directly(tmp_path):
    """`prepare --classes lungs` writes masks/lungs/; a new dataset may name classes the organ table does not know."""
    import numpy as np

    from segmentation.data.dataset import load_dataset
    from segmentation.data.io import write_png

    for name in ("a", "b"):
        write_png(tmp_path / "images" / f"{name}.png", np.full((16, 16), 100, np.uint8))
        mask = np.zeros((16, 16), bool)
        mask[4:12, 2:8] = True
        write_png(tmp_path / "masks" / "lungs" / f"{name}.png", mask)
        write_png(tmp_path / "masks" / "tumour" / f"{name}.png", ~mask)
    data = load_dataset(tmp_path, classes=("lungs", "tumour"), size=None)
    assert data.masks.shape == (2, 2, 16, 16)
    assert data.masks[:, 0].sum().item() == 2 * 48 and data.masks[:, 1].sum().item() == 2 * (256 - 48)
