"""Preprocessing for 2D images and 3D volumes, on real data."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.data.paths import data_root
from zoo.data.transforms import _warned
from zoo.meta.cfg import IMAGENET_MEAN


def _xray() -> Image.Image:
    path = next((data_root() / "cxr" / "kermany" / "test" / "NORMAL").glob("*.jpeg"))
    return Image.open(path)


def test_resolve_data_config_from_name_model_and_overrides() -> None:
    cfg = zoo.resolve_data_config("resnet50")
    assert cfg.input_size == (3, 224, 224) and cfg.intensity.mean == IMAGENET_MEAN
    model = zoo.create_model("resnet50", in_chans=1)
    assert zoo.resolve_data_config(model).in_chans == 1
    assert zoo.resolve_data_config("resnet50", input_size=(3, 64, 64)).input_size == (3, 64, 64)
    # a shipped checkpoint carries the preprocessing it was trained with
    assert zoo.resolve_data_config("resnet18").input_size == (3, 64, 64)
    with pytest.raises(TypeError, match="unknown data config"):
        zoo.resolve_data_config("resnet50", size=3)
    with pytest.raises(TypeError, match="needs a zoo model"):
        zoo.resolve_data_config(42)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_real_xray_pil_in_both_modes(mode: str) -> None:
    tf = zoo.create_transform(zoo.resolve_data_config("resnet18", input_size=(3, 96, 96)))
    x = tf(_xray().convert(mode))
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32
    # grey X-ray replicated to 3 channels, normalised with ImageNet statistics
    assert torch.allclose((x[0] * 0.229 + 0.485), (x[1] * 0.224 + 0.456), atol=1e-5)
    model = zoo.create_model("resnet18", num_classes=2).eval()
    with torch.no_grad():
        assert model(x[None]).shape == (1, 2)


def test_numpy_tensor_and_grayscale_models() -> None:
    tf1 = zoo.create_transform(zoo.create_model("resnet50", in_chans=1))
    arr = np.asarray(_xray().convert("RGB"))
    a = tf1(arr)
    assert a.shape == (1, 224, 224)
    b = tf1(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    assert torch.allclose(a, b, atol=1e-5)
    assert tf1(np.zeros((50, 80), dtype=np.uint8)).shape == (1, 224, 224)


def test_float_images_outside_unit_range_warn_once(caplog) -> None:
    _warned.clear()
    tf = zoo.create_transform("resnet18", input_size=(3, 32, 32))
    with caplog.at_level(logging.WARNING):
        tf(np.full((40, 40), 200.0, dtype=np.float32))
        tf(np.full((40, 40), 200.0, dtype=np.float32))
    assert caplog.text.count("expects [0, 1]") == 1


def test_real_ct_volume_resampled_windowed_and_never_cropped() -> None:
    path = data_root() / "ct" / "volumes" / "lungdx_a0001_series3.nii.gz"
    with pytest.raises(ValueError, match="zoo predict"):  # (108, 108, 40) voxels at 4 x 4 x 8 mm: too large
        zoo.create_transform("unet3d", voxel_spacing=(4.0, 4.0, 8.0))(path)
    tf = zoo.create_transform("unet3d", voxel_spacing=(8.0, 8.0, 10.0))
    x = tf(path)
    assert x.shape == (1, 64, 64, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.05
    with torch.no_grad():
        assert zoo.create_model("unet3d", num_classes=2).eval()(x[None]).shape == (1, 2)


def test_volume_pad_and_already_normalised_warning(caplog) -> None:
    _warned.clear()
    tf = zoo.create_transform("unet3d.genesis_chest_ct", input_size=(1, 16, 16, 8))
    with caplog.at_level(logging.WARNING):
        x = tf(np.random.default_rng(0).random((10, 14, 4)).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    assert x.shape == (1, 16, 16, 8)
    assert "Hounsfield" in caplog.text
    hu = np.full((16, 16, 8), -2000, dtype=np.int16)
    assert float(tf(hu).max()) == 0.0
    with pytest.raises(ValueError, match="3D volume"):
        tf(np.zeros((4, 4)))


# --- timm interop and training transforms ------------------------------------------------------------
def test_timm_data_helpers_read_zoo_models() -> None:
    from timm.data import create_transform as timm_transform
    from timm.data import resolve_model_data_config

    model = zoo.create_model("resnet18.pcrl_kermany64")
    cfg = resolve_model_data_config(model)
    assert cfg["input_size"] == (3, 64, 64) and cfg["mean"] == IMAGENET_MEAN and cfg["interpolation"] == "bilinear"
    assert cfg["crop_pct"] == 1.0 and cfg["crop_mode"] == "center"
    x = timm_transform(**cfg)(_xray().convert("RGB"))
    assert x.shape == (3, 64, 64)
    ours = zoo.create_transform(model)(_xray().convert("RGB"))
    assert (x - ours).abs().mean() < 0.05  # PIL's resize vs torch's: close, not bitwise
    # a model created with another in_chans: one mean per channel
    grey = resolve_model_data_config(zoo.create_model("resnet18", in_chans=1))
    assert grey["input_size"] == (1, 64, 64) and len(grey["mean"]) == len(grey["std"]) == 1
    # a CT model: timm's mean/std that leave the [0, 1] window untouched
    ct = resolve_model_data_config(zoo.create_model("unet3d"))
    assert ct["mean"] == (0.0,) and ct["std"] == (1.0,) and ct["input_size"] == (1, 64, 64, 32)


def test_zoo_resolve_data_config_reads_timm_models_and_dicts() -> None:
    import timm
    from timm.data import resolve_model_data_config

    model = timm.create_model("resnet18", pretrained=False)
    cfg = zoo.resolve_data_config(model)
    ref = resolve_model_data_config(model)
    assert cfg.input_size == ref["input_size"] and cfg.intensity.mean == tuple(ref["mean"])
    assert cfg.intensity.std == tuple(ref["std"]) and cfg.interpolation == ref["interpolation"]
    assert cfg.crop_pct == ref["crop_pct"] and cfg.spatial_dims == 2
    assert zoo.resolve_data_config(ref, input_size=(3, 96, 96)).input_size == (3, 96, 96)
    assert zoo.create_transform(model)(_xray()).shape == ref["input_size"]


def test_training_transform_2d_crops_and_flips_reproducibly() -> None:
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    eval_x = zoo.create_transform("resnet18")(img)
    # the whole square image at its own size: each draw is the image or its mirror
    tf = zoo.create_transform("resnet18", is_training=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    flips = []
    for _ in range(20):
        y = tf(img)
        assert torch.allclose(y, eval_x, atol=1e-5) or torch.allclose(y, eval_x.flip(-1), atol=1e-5)
        flips.append(torch.allclose(y, eval_x.flip(-1), atol=1e-5))
    assert 0 < sum(flips) < 20
    a = zoo.create_transform("resnet18", is_training=True, seed=3)
    b = zoo.create_transform("resnet18", is_training=True, seed=3)
    xa, xb = [a(_xray()) for _ in range(2)], [b(_xray()) for _ in range(2)]
    assert xa[0].shape == (3, 64, 64) and torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])
    assert not torch.equal(xa[0], xa[1])  # random resized crops differ between draws


def test_training_transform_3d_random_cubes_with_flips() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 400, (48, 40, 36)).astype(np.float32)
    tf = zoo.create_transform("unet3d", input_size=(1, 16, 16, 8), is_training=True, seed=0)
    xs = [tf(vol) for _ in range(4)]
    assert all(x.shape == (1, 16, 16, 8) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 for x in xs)
    assert not torch.equal(xs[0], xs[1])
    # a volume of exactly the cube size: the crop is the whole cube, flipped on X with probability 1
    cube = vol[:16, :16, :8]
    flip = zoo.create_transform("unet3d", input_size=(1, 16, 16, 8), is_training=True, hflip=1.0)
    plain = zoo.create_transform("unet3d", input_size=(1, 16, 16, 8))
    assert torch.equal(flip(cube), plain(cube).flip(1))
    with pytest.raises(ValueError, match="2D"):
        zoo.create_transform("unet3d", is_training=True, scale=(0.5, 1.0))
