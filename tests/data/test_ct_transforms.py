"""3D preprocessing: MONAI's Spacing grid, reorientation of arrays with an affine, and no silent crop."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import zoo
from zoo.data.ct import from_ras, resample, resampled_shape, to_ras
from zoo.data.transforms import _warned

LPS = np.diag([-1.5, -1.0, 3.0, 1.0])  # x flipped, y flipped: what DICOM-derived CT often stores
LPS[:3, 3] = [40.0, 30.0, -20.0]


def _volume(shape: tuple[int, int, int] = (30, 24, 10), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1000, 1000, size=shape).astype(np.float32)


@pytest.mark.parametrize(("shape", "spacing", "target"), [
    ((20, 17, 9), (0.84, 0.84, 5.0), (1.0, 1.0, 1.0)),
    ((30, 31, 12), (3.0, 3.0, 3.0), (1.0, 1.5, 2.0)),  # (n - 1) * s / t = 16.5: numpy's round-half-even
    ((25, 20, 14), (0.7, 1.3, 2.5), (2.0, 2.0, 2.0)),
])
def test_resample_matches_monai_spacing(shape, spacing, target) -> None:
    monai = pytest.importorskip("monai")
    from monai.data import MetaTensor

    x = torch.from_numpy(_volume(shape))
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    ref = monai.transforms.Spacing(pixdim=target, mode="bilinear", padding_mode="border")(MetaTensor(x[None], affine=affine))
    out = resample(x, spacing, target)
    assert tuple(out.shape) == tuple(ref.shape[1:]) == resampled_shape(shape, spacing, target)
    assert torch.allclose(out, ref[0].as_tensor(), atol=1e-3)  # HU scale: float error only


def test_resample_back_onto_the_input_grid_and_nearest_labels() -> None:
    x = torch.from_numpy(_volume((16, 12, 6)))
    up = resample(x, (2.0, 2.0, 3.0), (1.0, 1.0, 1.0))
    back = resample(up, (1.0, 1.0, 1.0), (2.0, 2.0, 3.0), shape=x.shape)
    assert back.shape == x.shape and torch.allclose(back, x, atol=1e-2)  # every input centre is on the fine grid
    labels = torch.randint(0, 4, (16, 12, 6), dtype=torch.uint8)
    near = resample(labels, (2.0, 2.0, 3.0), (1.0, 1.0, 1.0), mode="nearest")
    assert near.dtype == torch.uint8 and set(near.unique().tolist()) <= {0, 1, 2, 3}


def test_to_ras_and_back() -> None:
    data = _volume()
    ras, spacing = to_ras(data, LPS)
    assert spacing == (1.5, 1.0, 3.0)
    assert np.array_equal(ras, data[::-1, ::-1, :])
    assert np.array_equal(from_ras(ras, LPS), data)
    img = nib.as_closest_canonical(nib.Nifti1Image(data, LPS))
    assert np.array_equal(ras, np.asarray(img.dataobj))


def test_array_with_affine_is_reoriented_like_the_path(tmp_path: Path) -> None:
    data = _volume((40, 36, 12))
    data[:10] = 800.0  # an asymmetric block: a missed flip cannot go unnoticed
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, LPS), path)
    tf = zoo.create_transform("unet3d", input_size=(1, 64, 48, 48), voxel_spacing=(1.0, 1.0, 1.0))
    from_path = tf(path)
    assert from_path.shape == (1, 64, 48, 48)
    for kwargs in ({"affine": LPS}, {"spacing": LPS}):
        from_array = tf(data, **kwargs)
        assert float((from_array - from_path).abs().max()) <= 0.5 / 2000 + 1e-6  # HU rounded to int16 on the path
    assert float((tf(nib.load(path)) - from_path).abs().max()) <= 0.5 / 2000 + 1e-6
    _warned.clear()
    flipped = tf(data, spacing=(1.5, 1.0, 3.0))  # spacing alone: taken as RAS (and said so)
    assert float((flipped - from_path).abs().max()) > 0.3


def test_spacing_only_warns_once(caplog) -> None:
    _warned.clear()
    tf = zoo.create_transform("unet3d", input_size=(1, 32, 32, 32))
    with caplog.at_level(logging.WARNING):
        tf(_volume((10, 10, 5)), spacing=(2.0, 2.0, 2.0))
        tf(_volume((10, 10, 5)), spacing=(2.0, 2.0, 2.0))
    assert caplog.text.count("affine=") == 1


def test_whole_volume_is_never_cropped() -> None:
    tf = zoo.create_transform("unet3d_small", input_size=(1, 32, 32, 32))
    with pytest.raises(ValueError, match=r"zoo predict.*\(32, 32, 32\)"):
        tf(_volume((40, 30, 20)), spacing=(1.0, 1.0, 1.0))
    x = tf(np.full((20, 31, 9), 1000.0, dtype=np.float32), spacing=(1.0, 1.0, 1.0))
    assert x.shape == (1, 32, 32, 32)
    assert float(x.sum()) == 20 * 31 * 9  # padded with zeros around the whole volume, nothing cut
    assert float(x[0, 6:26, 0:31, 11:20].min()) == 1.0  # symmetric padding, the extra voxel after
