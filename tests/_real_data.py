"""Small batches of the real data in ``../shared/data`` for the method tests (read in place)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from zoo.data.ct import load_ct, window_hu
from zoo.data.paths import data_path

__all__ = ["xray_batch", "ct_cubes"]


@functools.lru_cache(maxsize=8)
def _xrays(n: int, size: int) -> torch.Tensor:
    folder = data_path("cxr", "kermany", "train", "NORMAL")
    files = sorted(folder.glob("*.jpeg"))[:n]
    assert len(files) == n, f"expected {n} JPEGs in {folder}"
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)


def xray_batch(n: int = 4, size: int = 64) -> torch.Tensor:
    """``n`` Kermany chest X-rays (RGB JPEGs), resized to ``size`` px, ``(n, 3, size, size)`` in [0, 1]."""
    return _xrays(n, size).clone()


@functools.lru_cache(maxsize=1)
def _torso() -> torch.Tensor:
    vol = load_ct(data_path("ct", "volumes", "totalseg_example_ct.nii.gz"), spacing=None)
    return window_hu(vol.hu)  # (122, 101, 112) at 3 mm, [0, 1]


def ct_cubes(n: int = 2, size: tuple[int, int, int] = (32, 32, 32)) -> torch.Tensor:
    """``n`` cubes cut at fixed positions from a real torso CT (HU window [-1000, 1000] -> [0, 1])."""
    vol = _torso()
    starts = [(40, 30, 40), (50, 40, 20), (30, 35, 60), (60, 25, 50)]
    cubes = [vol[x:x + size[0], y:y + size[1], z:z + size[2]] for x, y, z in starts[:n]]
    assert all(c.shape == size for c in cubes), "cube outside the volume"
    return torch.stack(cubes)[:, None].contiguous()
