"""The user's data layouts (zoo.data.userdata): each format on small files written here, the bad-data
errors (each names the file and the fix), and the real HRF files where cheap."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from zoo.data.ct import resampled_shape
from zoo.data.errors import DatasetError
from zoo.data.paths import data_path
from zoo.data.userdata import (
    load_image_mask_pairs,
    load_images,
    load_volume_pairs,
    load_volumes,
    open_user_data,
    train_val_split,
)


def _png(path: Path, size: tuple[int, int] = (40, 30), value: int = 128, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    arr = rng.integers(0, 255, shape, dtype=np.uint8) // 2 + value // 2
    Image.fromarray(arr.astype(np.uint8), mode).save(path)
    return path


def _nii(path: Path, shape: tuple[int, int, int] = (12, 10, 8), label: bool = False, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) > 0.7).astype(np.int16) if label else rng.integers(-1000, 1000, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return path


# --- class folders -------------------------------------------------------------------------------------
def test_class_folders(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "cats" / f"c{i}.png", value=10 * i)
        _png(tmp_path / "dogs" / f"d{i}.jpg", value=200 - 10 * i)
    data = open_user_data(tmp_path)
    assert data.format == "class-folders" and data.kind == "classification" and data.spatial_dims == 2
    assert data.classes == ("cats", "dogs") and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x = load_images(data.files, 16)
    assert x.shape == (6, 3, 16, 16) and x.dtype.is_floating_point is False


def test_class_folder_without_images_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match=r"b.*hold no image.*Add images"):
        open_user_data(tmp_path)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "b" / "2.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"broken\.png.*not a readable image.*Replace the file"):
        open_user_data(tmp_path)


# --- CSV ------------------------------------------------------------------------------------------------------
def test_csv_path_label_with_extensionless_paths_in_images_folder(tmp_path: Path) -> None:
    for name in ("x1", "x2", "y1", "y2"):
        _png(tmp_path / "images" / f"{name}.png")
    (tmp_path / "labels.csv").write_text("image,label\nx1,healthy\nx2,healthy\ny1,sick\ny2,sick\n")
    data = open_user_data(tmp_path / "labels.csv")
    assert data.format == "csv" and data.classes == ("healthy", "sick") and data.labels.tolist() == [0, 0, 1, 1]
    assert open_user_data(tmp_path).files == data.files  # a directory with images/ and one CSV


def test_csv_missing_file_names_row_and_fix(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,0\nmissing.png,1\n")
    with pytest.raises(DatasetError, match=r"row 3: file 'missing.png' not found.*Fix the path"):
        open_user_data(tmp_path / "l.csv")


def test_csv_label_outside_given_classes(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,bird\n")
    with pytest.raises(DatasetError, match=r"row 3: label 'bird' is not one of the classes \['cat', 'dog'\]"):
        open_user_data(tmp_path / "l.csv", classes=("cat", "dog"))


def test_csv_with_a_single_class_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,cat\n")
    with pytest.raises(DatasetError, match="at least 2 classes"):
        open_user_data(tmp_path / "l.csv")


@pytest.mark.parametrize("layout", ["separated", "onehot"])
def test_multilabel_csv(tmp_path: Path, layout: str) -> None:
    for name in ("a", "b", "c"):
        _png(tmp_path / f"{name}.png")
    if layout == "separated":
        text = "path,labels\na.png,edema|effusion\nb.png,effusion\nc.png,edema;nodule\n"
    else:
        text = "path,edema,effusion,nodule\na.png,1,1,0\nb.png,0,1,0\nc.png,1,0,1\n"
    (tmp_path / "l.csv").write_text(text)
    data = open_user_data(tmp_path / "l.csv")
    assert data.kind == "multilabel" and data.format == "csv-multilabel"
    assert data.classes == ("edema", "effusion", "nodule")
    assert data.labels.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


# --- 2D image / mask pairs ------------------------------------------------------------------------------------
def test_image_mask_folders_of_any_size(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", (40, 30))
    _png(tmp_path / "images" / "b.jpg", (25, 50))
    _png(tmp_path / "masks" / "a.png", (40, 30), mode="L")
    _png(tmp_path / "masks" / "b_mask.png", (25, 50), mode="L")
    data = open_user_data(tmp_path)
    assert data.format == "image-mask-folders" and data.kind == "segmentation"
    images, masks = load_image_mask_pairs(data)
    assert [im.shape for im in images] == [(30, 40, 3), (50, 25, 3)]
    assert [m.shape for m in masks] == [(30, 40), (50, 25)] and masks[0].dtype == bool


def test_missing_mask_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "lonely.png")
    _png(tmp_path / "masks" / "a.png", mode="L")
    with pytest.raises(DatasetError, match=r"no mask for 1 image.*lonely\.png.*Add a mask"):
        open_user_data(tmp_path)


def test_mask_of_another_size_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", (40, 30))
    _png(tmp_path / "masks" / "a.png", (20, 15), mode="L")
    with pytest.raises(DatasetError, match=r"masks/a\.png has size \(20, 15\) but its image .*a\.png has size "
                                           r"\(40, 30\).*nearest-neighbour"):
        open_user_data(tmp_path)


# --- 3D ---------------------------------------------------------------------------------------------------------
def test_nifti_csv(tmp_path: Path) -> None:
    for i in range(4):
        _nii(tmp_path / f"v{i}.nii.gz", seed=i)
    (tmp_path / "l.csv").write_text("path,label\n" + "".join(f"v{i}.nii.gz,{'ab'[i % 2]}\n" for i in range(4)))
    data = open_user_data(tmp_path / "l.csv")
    assert data.format == "nifti-csv" and data.spatial_dims == 3 and data.labels.tolist() == [0, 1, 0, 1]
    x = load_volumes(data.files, (8, 8, 8), spacing=(1.0, 1.0, 1.0))
    assert x.shape == (4, 1, 8, 8, 8) and int(x.max()) > 0


def test_nifti_pairs_and_shape_mismatch(tmp_path: Path) -> None:
    _nii(tmp_path / "images" / "ct1.nii.gz")
    _nii(tmp_path / "labels" / "ct1.nii.gz", label=True)
    data = open_user_data(tmp_path)
    assert data.format == "nifti-pairs" and data.spatial_dims == 3
    vols, labels = load_volume_pairs(data, spacing=(4.0, 4.0, 4.0))
    expected = resampled_shape((12, 10, 8), (2.0, 2.0, 3.0), (4.0, 4.0, 4.0))  # zoo's (MONAI's) grid rule
    assert vols[0].shape == labels[0].shape == expected and set(labels[0].unique().tolist()) <= {0, 1}
    _nii(tmp_path / "images" / "ct2.nii.gz", (12, 10, 8))
    _nii(tmp_path / "labels" / "ct2.nii.gz", (12, 10, 7), label=True)
    with pytest.raises(DatasetError, match=r"ct2\.nii\.gz has size \(12, 10, 7\) but its image"):
        open_user_data(tmp_path)


def test_unreadable_nifti_is_named(tmp_path: Path) -> None:
    _nii(tmp_path / "v0.nii.gz")
    (tmp_path / "v1.nii.gz").write_bytes(b"\x1f\x8b garbage")
    (tmp_path / "l.csv").write_text("path,label\nv0.nii.gz,a\nv1.nii.gz,b\n")
    with pytest.raises(DatasetError, match=r"v1\.nii\.gz .*not a readable NIfTI file.*Replace the file"):
        open_user_data(tmp_path / "l.csv")


# --- split -------------------------------------------------------------------------------------------------------
def test_train_val_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    for c, n in (("a", 10), ("b", 5)):
        for i in range(n):
            _png(tmp_path / c / f"{i}.png", (8, 8))
    data = open_user_data(tmp_path)
    tr, va = train_val_split(data, 0.2, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(15))
    assert data.labels[va].tolist().count(0) == 2 and data.labels[va].tolist().count(1) == 1
    assert np.array_equal(train_val_split(data, 0.2, seed=0)[1], va)
    assert not all(np.array_equal(train_val_split(data, 0.2, seed=s)[1], va) for s in range(1, 4))


# --- real files ---------------------------------------------------------------------------------------------------
def test_real_hrf_labels_and_vessel_masks() -> None:
    try:
        labels = data_path("fundus", "hrf", "labels.csv")
    except FileNotFoundError:
        pytest.skip("HRF is not under $ZOO_DATA_DIR")
    data = open_user_data(labels)
    assert len(data) == 45 and data.counts() == {"diabetic_retinopathy": 15, "glaucoma": 15, "healthy": 15}
    with pytest.raises(DatasetError, match=r"no mask for 3 image.*11_h\.jpg, 12_h\.jpg, 13_h\.jpg"):
        open_user_data(labels.parent / "images", masks=labels.parent / "manual1")
