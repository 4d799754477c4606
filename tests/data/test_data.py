"""Datasets (real images, MedMNIST, fundus, NIfTI CT) and seeded tensor augmentations."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from zoo.data import augment as A
from zoo.data.ct import CTCubeDataset, find_volumes, load_ct, window_hu
from zoo.data.datasets import DatasetError, FundusDataset, ImageFolderDataset, MedMNISTDataset, open_dataset
from zoo.data.paths import data_root


@pytest.fixture(scope="module")
def data() -> Path:
    root = data_root()
    if not (root / "cxr" / "kermany").is_dir():
        pytest.skip(f"real data not found at {root}; set ZOO_DATA_DIR to the shared data directory")
    return root


def link_images(data: Path, dst: Path, per_class: int = 4) -> Path:
    """A small class-folder copy (symlinks) of Kermany training X-rays."""
    for cls in ("NORMAL", "PNEUMONIA"):
        (dst / cls).mkdir(parents=True)
        for f in sorted((data / "cxr/kermany/train" / cls).glob("*.jpeg"))[:per_class]:
            (dst / cls / f.name).symlink_to(f)
    return dst


# --- image folders -------------------------------------------------------------------------------
def test_image_folder_real_xrays_with_corrupt_files(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = link_images(data, tmp_path / "cxr")
    (root / "NORMAL" / "garbage.jpeg").write_bytes(b"not an image at all")
    real = next((data / "cxr/kermany/train/PNEUMONIA").glob("*.jpeg"))
    (root / "PNEUMONIA" / "truncated.jpeg").write_bytes(real.read_bytes()[:300])
    with caplog.at_level(logging.WARNING, logger="zoo.data.datasets"):
        ds = ImageFolderDataset(root, img_size=48)
    assert len(ds) == 8
    assert sorted(p.name for p, _ in ds.skipped) == ["garbage.jpeg", "truncated.jpeg"]
    assert "garbage.jpeg" in caplog.text and "skipped 2 of 10" in caplog.text
    assert ds.classes == ["NORMAL", "PNEUMONIA"]
    assert ds.targets.tolist() == [0] * 4 + [1] * 4
    assert ds.images is not None and ds.images.dtype == torch.uint8 and ds.images.shape[1] == 1  # gray stored once
    x, y = ds[5]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and y == 1
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert torch.equal(x[0], x[2])  # grayscale repeated to RGB
    gray = ImageFolderDataset(root, img_size=48, in_chans=1)
    assert gray[5][0].shape == (1, 48, 48) and torch.allclose(gray[5][0], x[:1])
    lazy = ImageFolderDataset(root, img_size=48, cache=False)
    assert not lazy.cached and torch.allclose(lazy[5][0], x)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a directory"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="no readable image"):
        ImageFolderDataset(tmp_path / "bad")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


def test_fundus_fov_masks(data: Path) -> None:
    drive = FundusDataset(data / "fundus/drive/training", img_size=64, limit=4)
    assert len(drive) == 4 and drive.masks is not None and drive.masks.shape == (4, 1, 64, 64)
    x, y = drive[0]
    assert x.shape == (3, 64, 64) and y == -1
    assert (x * ~drive.masks[0]).abs().max() == 0  # nothing outside the field of view
    assert 0.5 < drive.masks.float().mean() < 0.95  # the FOV disc fills most of its bounding square
    eyepacs = FundusDataset(data / "fundus/eyepacs", img_size=32, limit=6)  # no mask dir: thresholded FOV
    levels = {r.split(",")[0]: int(r.split(",")[1]) for r in (data / "fundus/eyepacs/labels.csv").read_text().split()[1:]}
    assert eyepacs.targets.tolist() == [levels[f.stem] for f in eyepacs.files]
    assert isinstance(open_dataset(data / "fundus/drive/training", img_size=32, limit=2), FundusDataset)


def test_medmnist_2d_3d(data: Path, tmp_path: Path) -> None:
    npz = data / "fundus/retinamnist.npz"
    sizes = {s: len(MedMNISTDataset(npz, split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1080, "val": 120, "test": 400}
    ds = MedMNISTDataset(npz, split="val", img_size=32)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and 0 <= y <= 4
    vol = MedMNISTDataset(data / "ct/adrenalmnist3d.npz", split="test")
    assert vol.spatial_dims == 3 and vol[0][0].shape == (1, 28, 28, 28) and len(vol) == 298
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match="not a MedMNIST file"):
        MedMNISTDataset(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="3D images but the method is 2D"):
        open_dataset(data / "ct/adrenalmnist3d.npz", spatial_dims=2)


# --- CT ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real volumes (a torso crop at 3 mm, a head CT) and a label map that must be left out."""
    d = tmp_path_factory.mktemp("ct")
    for name in ("totalseg_example_ct_crop.nii.gz", "totalseg_example_ct_crop_seg.nii.gz", "cranium_head_ct.nii.gz"):
        (d / name).symlink_to(data / "ct/volumes" / name)
    return d


def test_load_ct_resamples_in_ras(ct_dir: Path) -> None:
    vols = find_volumes(ct_dir)
    assert [v.name for v in vols] == ["cranium_head_ct.nii.gz", "totalseg_example_ct_crop.nii.gz"]
    v = load_ct(ct_dir / "cranium_head_ct.nii.gz", spacing=(2.0, 2.0, 2.0))
    assert v.shape == (round(255 * 0.9570312 / 2 + 1), round(255 * 0.9570312 / 2 + 1), round(107 * 1.5 / 2 + 1))
    assert v.hu.dtype == torch.int16 and v.hu.min() <= -900 and v.hu.max() >= 1000  # air and skull
    native = load_ct(ct_dir / "totalseg_example_ct_crop.nii.gz", spacing=None)
    assert native.shape == (122, 101, 30) and native.spacing == (3.0, 3.0, 3.0)
    w = window_hu(torch.tensor([-2000.0, -1000.0, 0.0, 1000.0, 3000.0]))
    assert w.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_ct_cubes_are_seeded_windowed_and_overlap(ct_dir: Path) -> None:
    ds = CTCubeDataset(ct_dir, cube_size=(32, 32, 16), spacing=(2.0, 2.0, 2.0), samples_per_volume=4,
                       pairs=True, min_overlap=0.5, seed=3)
    assert len(ds) == 8
    x, y = ds[1]
    assert x.shape == (2, 1, 32, 32, 16) and y == -1
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(ds[1][0], x)  # same (seed, epoch, index) -> same cubes
    vol, (s1, s2) = ds.positions(1)
    expected = window_hu(vol.hu[s1[0]:s1[0] + 32, s1[1]:s1[1] + 32, s1[2]:s1[2] + 16]).unsqueeze(0)
    assert torch.equal(x[0], expected)  # the cube is the windowed volume at its position
    for a, b, c in zip(s1, s2, ds.cube_size, strict=True):
        assert abs(a - b) <= c // 2  # overlap of at least half the cube along every axis
    for i in range(len(ds)):
        cube = ds[i][0][0]
        assert (cube > 0.05).float().mean() >= 0.5  # body, not air (min_foreground)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], x)
    single = CTCubeDataset(ct_dir, cube_size=(16, 16, 16), spacing=(4.0, 4.0, 4.0), samples_per_volume=2)
    assert single[0][0].shape == (1, 16, 16, 16)
    with pytest.raises(DatasetError, match="2D"):
        open_dataset(ct_dir, spatial_dims=2)


# --- augmentations -------------------------------------------------------------------------------
def test_augment_matches_torchvision_per_sample() -> None:
    x = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    f = torch.tensor([0.7, 1.3, 1.0])
    for ours, theirs in [(A._adjust_brightness, TF.adjust_brightness), (A._adjust_contrast, TF.adjust_contrast),
                         (A._adjust_saturation, TF.adjust_saturation)]:
        ref = torch.stack([theirs(x[i], float(f[i])) for i in range(3)])
        assert torch.allclose(ours(x.clone(), f), ref, atol=1e-4)
    h = torch.tensor([0.1, -0.3, 0.05])
    ref = torch.stack([TF.adjust_hue(x[i], float(h[i])) for i in range(3)])
    assert torch.allclose(A._adjust_hue(x, h), ref, atol=1e-5)
    blurred = A.gaussian_blur(x, (1.5, 1.5), p=1.0, kernel_size=9)
    ref = torch.stack([TF.gaussian_blur(x[i], 9, 1.5) for i in range(3)])
    assert torch.allclose(blurred, ref, atol=1e-5)


def test_augment_geometry() -> None:
    x = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    same = A.random_resized_crop(x, (20, 24), scale=(1, 1), ratio=(1.2, 1.2))
    assert torch.allclose(same, x, atol=1e-5)  # the full crop at the same size is the identity
    flipped = A.random_resized_crop(x, (20, 24), scale=(1, 1), ratio=(1.2, 1.2), hflip_p=1.0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    out, flags = A.random_flip(x, 0.5, torch.Generator().manual_seed(0), dims=(-1, -2))
    for i in range(4):
        ref = x[i]
        ref = ref.flip(-1) if flags[i, 0] else ref
        ref = ref.flip(-2) if flags[i, 1] else ref
        assert torch.equal(out[i], ref)
    cube = torch.rand(6, 1, 8, 8, 4)
    rot, k = A.random_rot90(cube, torch.Generator().manual_seed(0), dims=(2, 3))
    for i in range(6):
        assert torch.equal(rot[i], torch.rot90(cube[i], int(k[i]), dims=(1, 2)))
    holes = A.cutout(torch.ones(2, 1, 16, 16), holes=1, length=4, generator=torch.Generator().manual_seed(0))
    assert 4 <= (holes == 0).sum(dim=(1, 2, 3)).min() and (holes == 0).sum(dim=(1, 2, 3)).max() <= 16
    sub = A.random_resized_crop_3d(cube, (4, 4, 2), generator=torch.Generator().manual_seed(0))
    assert sub.shape == (6, 1, 4, 4, 2)
    with pytest.raises(ValueError, match="equal sizes"):
        A.random_rot90(torch.rand(1, 1, 4, 6))


def test_augment_pipeline_is_seeded() -> None:
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    aug = A.Augment2D(A.PCRL_AUG.scaled(64), out_size=48)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 48, 48) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert A.PCRL_AUG.scaled(112).cutout_length == 16  # 32 px at 224 -> 16 px at 112
    gray = A.Augment2D(A.MOCOV2_AUG)(x[:, :1], torch.Generator().manual_seed(0))  # 1-channel input works
    assert gray.shape == (8, 1, 64, 64)


# --- patients ------------------------------------------------------------------------------------
def test_patient_ids_and_eye_sides_of_the_real_file_names(data: Path) -> None:
    from zoo.data.patients import eye_side, group_by_patient, patient_id

    assert patient_id("person1000_bacteria_2931.jpeg") == patient_id("person1000_virus_1681.jpeg") == "person1000"
    assert patient_id("IM-0629-0001-0002.jpeg") == patient_id("IM-0629-0001.jpeg") == "IM-0629"
    assert patient_id("NORMAL2-IM-0383-0001.jpeg") == "NORMAL2-IM-0383" != patient_id("IM-0383-0001.jpeg")
    assert patient_id("10_left.jpeg") == patient_id("10_right.jpeg") == "10"
    assert patient_id("21_training.png") is None and eye_side("21_training.png") is None
    assert (eye_side("10_left.jpeg"), eye_side("/x/10_right.jpeg")) == ("left", "right")
    # every real Kermany train file has an id; 3,875 pneumonia images come from 1,636 patients (names)
    pneu = sorted((data / "cxr/kermany/train/PNEUMONIA").glob("*.jpeg"))
    assert all(patient_id(p) for p in pneu)
    groups = group_by_patient(pneu)
    assert len(groups) == len({patient_id(p) for p in pneu}) < len(pneu)
    assert sorted(i for g in groups for i in g) == list(range(len(pneu)))
    eyes = sorted((data / "fundus/eyepacs/images").glob("*.jpeg"))
    pairs = [g for g in group_by_patient(eyes) if len(g) == 2]
    assert pairs and all({eye_side(eyes[i]) for i in g} == {"left", "right"} for g in pairs)
    # names without an id stand alone
    assert group_by_patient(["a.png", "b.png", "10_left.jpeg", "10_right.jpeg"]) == [[0], [1], [2, 3]]
