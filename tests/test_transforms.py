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
    cfg = zoo.resolve_data_config("mocov2_resnet50")
    assert cfg.input_size == (3, 224, 224) and cfg.intensity.mean == IMAGENET_MEAN
    model = zoo.create_model("mocov2_resnet50", in_chans=1)
    assert zoo.resolve_data_config(model).in_chans == 1
    assert zoo.resolve_data_config("mocov2_resnet50", input_size=(3, 64, 64)).input_size == (3, 64, 64)
    # a shipped checkpoint carries the preprocessing it was trained with
    assert zoo.resolve_data_config("pcrl_resnet18").input_size == (3, 64, 64)
    with pytest.raises(TypeError, match="unknown data config"):
        zoo.resolve_data_config("mocov2_resnet50", size=3)
    with pytest.raises(TypeError, match="needs a zoo model"):
        zoo.resolve_data_config(42)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_real_xray_pil_in_both_modes(mode: str) -> None:
    tf = zoo.create_transform(zoo.resolve_data_config("pcrl_resnet18", input_size=(3, 96, 96)))
    x = tf(_xray().convert(mode))
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32
    # grey X-ray replicated to 3 channels, normalised with ImageNet statistics
    assert torch.allclose((x[0] * 0.229 + 0.485), (x[1] * 0.224 + 0.456), atol=1e-5)
    model = zoo.create_model("pcrl_resnet18", num_classes=2).eval()
    with torch.no_grad():
        assert model(x[None]).shape == (1, 2)


def test_numpy_tensor_and_grayscale_models() -> None:
    tf1 = zoo.create_transform(zoo.create_model("mocov2_resnet50", in_chans=1))
    arr = np.asarray(_xray().convert("RGB"))
    a = tf1(arr)
    assert a.shape == (1, 224, 224)
    b = tf1(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    assert torch.allclose(a, b, atol=1e-5)
    assert tf1(np.zeros((50, 80), dtype=np.uint8)).shape == (1, 224, 224)


def test_float_images_outside_unit_range_warn_once(caplog) -> None:
    _warned.clear()
    tf = zoo.create_transform("pcrl_resnet18", input_size=(3, 32, 32))
    with caplog.at_level(logging.WARNING):
        tf(np.full((40, 40), 200.0, dtype=np.float32))
        tf(np.full((40, 40), 200.0, dtype=np.float32))
    assert caplog.text.count("expects [0, 1]") == 1


def test_real_ct_volume_resampled_windowed_and_cropped() -> None:
    path = data_root() / "ct" / "volumes" / "lungdx_a0001_series3.nii.gz"
    tf = zoo.create_transform("pcrl_unet3d", voxel_spacing=(4.0, 4.0, 8.0))
    x = tf(path)
    assert x.shape == (1, 64, 64, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.05
    with torch.no_grad():
        assert zoo.create_model("pcrl_unet3d", num_classes=2).eval()(x[None]).shape == (1, 2)


def test_volume_pad_and_already_normalised_warning(caplog) -> None:
    _warned.clear()
    tf = zoo.create_transform("genesis_unet3d", input_size=(1, 16, 16, 8))
    with caplog.at_level(logging.WARNING):
        x = tf(np.random.default_rng(0).random((10, 20, 4)).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    assert x.shape == (1, 16, 16, 8)
    assert "Hounsfield" in caplog.text
    hu = np.full((16, 16, 8), -2000, dtype=np.int16)
    assert float(tf(hu).max()) == 0.0
    with pytest.raises(ValueError, match="3D volume"):
        tf(np.zeros((4, 4)))
