"""Built-in tasks at any image size: a vessel data set laid out like DRIVE, at another size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.eval.harness import EvalConfig, run_eval
from zoo.eval.tasks import get_task


def _drive_like(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """fundus/drive/{training,test}/{images,1st_manual,mask} with DRIVE's names, at the given (H, W)."""
    rng = np.random.default_rng(0)
    for split, first in (("training", 21), ("test", 1)):
        base = root / "fundus" / "drive" / split
        for d in ("images", "1st_manual", "mask"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for k, (h, w) in enumerate(sizes[split]):
            i = f"{first + k:02d}"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "images" / f"{i}_{split}.tif")
            vessels = np.zeros((h, w), np.uint8)
            vessels[:, w // 3: w // 3 + 3] = 255
            Image.fromarray(vessels).save(base / "1st_manual" / f"{i}_manual1.gif")
            Image.fromarray(np.full((h, w), 255, np.uint8)).save(base / "mask" / f"{i}_{split}_mask.gif")
    return root


def test_drive_like_data_of_another_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 96 x 80 images (DRIVE is 584 x 565), and one test image of yet another size: resized with its masks
    monkeypatch.setenv("ZOO_DATA_DIR", str(_drive_like(tmp_path, {"training": [(96, 80), (96, 80)],
                                                                    "test": [(96, 80), (120, 70)]})))
    task = get_task("drive_vessels")
    assert task.native_size() == (96, 80)
    test = task.load("test")
    assert test.images.shape == (2, 96, 80, 3) and test.labels.shape == test.fov.shape == (2, 96, 80)
    assert test.labels[1].any() and test.labels.dtype == bool
    cfg = zoo.get_pretrained_cfg("resnet18")
    assert task.data_config(cfg).input_size == (3, 96, 80)


@pytest.mark.slow
def test_drive_like_data_of_another_size_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_DATA_DIR", str(_drive_like(tmp_path, {"training": [(96, 80)], "test": [(96, 80), (120, 70)]})))
    torch.manual_seed(0)
    # the whole evaluation runs on it (DRIVE's size in the task crashed in _segmentation_seed)
    res = run_eval(EvalConfig("resnet18", "drive_vessels", protocol="linear", seeds=1, epochs=1, img_size=32,
                              batch_size=2, max_train=1, cache=False))
    r = res["runs"]["random_init"]["per_seed"][0]
    assert r["n_train"] == 1 and 0.0 <= r["f1"] <= 1.0 and res["n_test"] == 2


def test_image_folder_task_decodes_at_the_input_size_when_larger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Kermany-like folders: decoded at 224 px by default, at the input size when --img-size asks for more
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in ("NORMAL", "PNEUMONIA"):
            d = tmp_path / "cxr" / "kermany" / split / c
            d.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (300, 320), dtype=np.uint8)).save(d / "a.jpeg")
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    task = get_task("kermany_pneumonia")
    assert task.load("test").images.shape[-2:] == (224, 224)
    assert task.load("test", img_size=256).images.shape[-2:] == (256, 256)
