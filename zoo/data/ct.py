"""CT volumes (NIfTI, read with nibabel) and random cube sampling for 3D pretraining.

A volume is reoriented to the closest canonical (RAS) orientation, so axis 0 runs left->right,
axis 1 posterior->anterior and axis 2 (slices) inferior->superior, resampled to a voxel spacing in
mm (trilinear, with ``torch.nn.functional.interpolate``) and kept in memory as int16 Hounsfield
units. Cubes are cut at random positions, as Models Genesis and PCRL do, and windowed to [0, 1]
(``[-1000, 1000]`` HU by default). The position of cube ``i`` in epoch ``e`` is a function of
``(seed, e, i)`` only, so data loader workers and resumed runs see the same cubes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError

__all__ = [
    "CTVolume", "load_ct", "read_nifti", "to_ras", "from_ras", "window_hu", "resample", "resampled_shape",
    "CTCubeDataset", "find_volumes",
]

_logger = logging.getLogger(__name__)
_LABEL_HINTS = ("_seg", "label", "mask")


@dataclass
class CTVolume:
    """One CT volume: ``hu`` (int16, ``(X, Y, Z)`` in RAS order) and its voxel ``spacing`` in mm."""

    hu: torch.Tensor
    spacing: tuple[float, float, float]
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]


def window_hu(hu: torch.Tensor, hu_min: float = -1000.0, hu_max: float = 1000.0) -> torch.Tensor:
    """Clip Hounsfield units to ``[hu_min, hu_max]`` and map them linearly to [0, 1] (float32)."""
    if not hu_min < hu_max:
        raise ValueError(f"HU window needs hu_min < hu_max, got [{hu_min}, {hu_max}]")
    return ((hu.float() - hu_min) / (hu_max - hu_min)).clamp_(0.0, 1.0)


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """The grid a resampling keeps: ``round((n - 1) * spacing / target + 1)`` voxels per axis (numpy rounding).

    This is MONAI's ``Spacing`` convention (``compute_shape_offset``): the first voxel centre stays where
    it is and the new centres are ``target`` mm apart, up to the last input centre.
    """
    if len(spacing) != 3 or len(target) != 3 or min(target) <= 0 or min(spacing) <= 0:
        raise ValueError(f"spacings must be 3 positive values, got {tuple(spacing)} -> {tuple(target)}")
    return tuple(max(1, int(np.round((n - 1) * s / t + 1.0))) for n, s, t in zip(shape, spacing, target, strict=True))


def _interp_axis(t: torch.Tensor, axis: int, step: float, size: int, mode: str) -> torch.Tensor:
    """Sample ``t`` along ``axis`` at positions ``0, step, 2 step, ...`` (``size`` of them; voxel units,
    clamped to the border), linearly or at the nearest voxel."""
    n = t.shape[axis]
    if n == size and step == 1.0:
        return t
    pos = torch.arange(size, dtype=torch.float64) * step
    if mode == "nearest":
        idx = pos.round().clamp_(0, n - 1).long()
        return t.index_select(axis, idx)
    lo = pos.floor().clamp_(0, n - 1)
    w = (pos - lo).clamp_(0.0, 1.0).to(t.dtype)
    lo_i = lo.long()
    hi_i = (lo_i + 1).clamp_(max=n - 1)
    shape = [1] * t.ndim
    shape[axis] = size
    w = w.view(shape)
    a = t.index_select(axis, lo_i)
    return a.add_(t.index_select(axis, hi_i).sub_(a).mul_(w)) if t.is_floating_point() else a


def resample(
    volume: torch.Tensor, spacing: Sequence[float], target: Sequence[float], mode: str = "trilinear",
    shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """Resample the last three axes of ``(..., X, Y, Z)`` from ``spacing`` to ``target`` mm (float32).

    MONAI's ``Spacing`` grid (:func:`resampled_shape`; voxel 0 stays put, border values beyond the last
    voxel); ``mode`` is ``trilinear`` (separable linear, exact trilinear) or ``nearest`` (label maps).
    ``shape`` forces the output grid (to go back onto an input's grid: swap the spacings and pass its shape).
    """
    if mode not in ("trilinear", "nearest"):
        raise ValueError(f"mode must be 'trilinear' or 'nearest', got {mode!r}")
    size = tuple(shape) if shape is not None else resampled_shape(volume.shape[-3:], spacing, target)
    out = volume if volume.is_floating_point() or mode == "nearest" else volume.float()
    if out.dtype not in (torch.float32, torch.float64) and mode != "nearest":
        out = out.float()
    for i in range(3):
        axis = volume.ndim - 3 + i
        out = _interp_axis(out, axis, float(target[i]) / float(spacing[i]), size[i], mode)
    return out.float() if mode != "nearest" else out


def _ras_ornt(affine: np.ndarray) -> np.ndarray:
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorient the first three axes of ``data`` to the closest RAS orientation of ``affine`` (as
    ``nibabel.as_closest_canonical`` does) and return it with its voxel spacing in mm in RAS order."""
    from nibabel.orientations import apply_orientation

    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4 x 4 matrix, got shape {affine.shape}")
    ornt = _ras_ornt(affine)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing = tuple(float(zooms[int(ax)]) for ax in np.argsort(ornt[:, 0]))
    return apply_orientation(data, ornt), spacing  # type: ignore[return-value]


def from_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_ras`: a RAS-ordered array back into the axis order and directions of ``affine``."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    back = ornt_transform(axcodes2ornt("RAS"), io_orientation(np.asarray(affine, dtype=np.float64)))
    return apply_orientation(data, back)


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, Any]:
    """The voxels (float32, 3D) and the nibabel image of a NIfTI file, as stored (not reoriented)."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CT volume {path} does not exist.")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for bad files
        raise DatasetError(f"{path} is not a readable NIfTI volume ({type(err).__name__}: {err}).") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data, img


def load_ct(path: str | os.PathLike[str], spacing: Sequence[float] | None = (1.0, 1.0, 1.0)) -> CTVolume:
    """Read a NIfTI CT volume (HU), reorient it to RAS and resample it to ``spacing`` mm (None: keep)."""
    path = Path(path)
    data, img = read_nifti(path)
    ras, native = to_ras(data, img.affine)
    vol = torch.from_numpy(np.ascontiguousarray(ras, dtype=np.float32))
    if spacing is not None:
        vol = resample(vol, native, spacing)
        out_spacing = tuple(float(s) for s in spacing)
    else:
        out_spacing = native
    hu = vol.round_().clamp_(-32768, 32767).to(torch.int16)
    return CTVolume(hu=hu, spacing=out_spacing, path=path)  # type: ignore[arg-type]


def find_volumes(path: str | os.PathLike[str]) -> list[Path]:
    """The NIfTI CT files of a directory (or the file itself), leaving out label maps (``*_seg*``, ``*label*``, ``*mask*``)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DatasetError(f"{p} is neither a NIfTI file nor a directory of them.")
    files = sorted(f for f in p.iterdir() if f.name.endswith((".nii", ".nii.gz")))
    volumes = [f for f in files if not any(h in f.name.lower() for h in _LABEL_HINTS)]
    for f in sorted(set(files) - set(volumes)):
        _logger.info("leaving out %s (a label map, not CT)", f.name)
    if not volumes:
        raise DatasetError(f"{p} contains no NIfTI CT volume (*.nii, *.nii.gz).")
    return volumes


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class CTCubeDataset(Dataset):
    """Random ``cube_size`` cubes from CT volumes, windowed to [0, 1]: ``(1, X, Y, Z)`` float32.

    Args:
        path: a NIfTI file or a directory of them (label maps are left out).
        cube_size: cube size in voxels (Models Genesis / PCRL: 64 x 64 x 32).
        spacing: resample every volume to this spacing in mm first (None keeps each native spacing).
        hu_window: the HU range mapped to [0, 1].
        samples_per_volume: cubes per volume per epoch (the dataset length is this x the number of volumes).
        min_foreground: retry (up to 10 times) positions whose fraction of voxels above -900 HU
            (body, not air) is below this; the last try is kept.
        pairs: return two overlapping cubes ``(2, 1, X, Y, Z)`` instead of one; along each axis the
            second box is shifted by at most ``(1 - min_overlap)`` of the cube size.
        seed: base seed of the positions (with the epoch set by :meth:`set_epoch`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cube_size: Sequence[int] = (64, 64, 32),
        spacing: Sequence[float] | None = (1.0, 1.0, 1.0),
        hu_window: tuple[float, float] = (-1000.0, 1000.0),
        samples_per_volume: int = 64,
        min_foreground: float = 0.5,
        pairs: bool = False,
        min_overlap: float = 0.5,
        seed: int = 0,
    ) -> None:
        if len(cube_size) != 3 or min(cube_size) <= 0:
            raise ValueError(f"cube_size must be 3 positive ints, got {tuple(cube_size)}")
        if not 0.0 < min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
        if samples_per_volume <= 0:
            raise ValueError(f"samples_per_volume must be > 0, got {samples_per_volume}")
        self.root = Path(path)
        self.cube_size = tuple(int(c) for c in cube_size)
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))
        window_hu(torch.zeros(1), *self.hu_window)  # validates the window
        self.samples_per_volume = samples_per_volume
        self.min_foreground = min_foreground
        self.pairs, self.min_overlap = pairs, min_overlap
        self.seed, self.epoch = seed, 0
        self.volumes = [load_ct(f, spacing) for f in find_volumes(path)]
        self.spacing = tuple(spacing) if spacing is not None else None
        for v in self.volumes:
            _logger.info("CT %s: %s voxels at %s mm", v.path.name, v.shape, tuple(round(s, 3) for s in v.spacing))
        self._fg_threshold = -900.0

    def set_epoch(self, epoch: int) -> None:
        """Positions depend on the epoch (call before each epoch, as with a DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.volumes) * self.samples_per_volume

    def _crop(self, vol: CTVolume, start: Sequence[int]) -> torch.Tensor:
        """The cube at ``start`` (may reach outside the volume: padded with air, i.e. 0 after windowing)."""
        hu = vol.hu
        out = torch.full(self.cube_size, int(self.hu_window[0]) - 1, dtype=torch.int16)
        src, dst = [], []
        for s, n, c in zip(start, hu.shape, self.cube_size, strict=True):
            a, b = max(s, 0), min(s + c, n)
            src.append(slice(a, b))
            dst.append(slice(a - s, b - s))
        out[tuple(dst)] = hu[tuple(src)]
        return out

    def _random_start(self, vol: CTVolume, g: torch.Generator) -> list[int]:
        # uniform over positions that keep the cube inside the volume (centred when the volume is smaller)
        starts = []
        for n, c in zip(vol.shape, self.cube_size, strict=True):
            hi = n - c
            starts.append(int(torch.randint(0, hi + 1, (1,), generator=g)) if hi >= 0 else hi // 2)
        return starts

    def positions(self, index: int) -> tuple[CTVolume, list[list[int]]]:
        """The volume of sample ``index`` and the start corner(s) of its cube(s) in this epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        vol = self.volumes[index % len(self.volumes)]
        g = torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))
        for _ in range(10):
            start = self._random_start(vol, g)
            if (self._crop(vol, start) > self._fg_threshold).float().mean().item() >= self.min_foreground:
                break
        starts = [start]
        if self.pairs:
            start2 = []
            for s, n, c in zip(start, vol.shape, self.cube_size, strict=True):
                max_shift = int((1.0 - self.min_overlap) * c)
                shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=g))
                lo, hi = min(0, n - c), max(0, n - c)
                start2.append(min(max(s + shift, lo), hi))
            starts.append(start2)
        return vol, starts

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        vol, starts = self.positions(index)
        out = torch.stack([window_hu(self._crop(vol, s), *self.hu_window).unsqueeze(0) for s in starts])
        return (out if self.pairs else out[0]), -1

    def describe(self) -> str:
        sp = f"{self.spacing} mm" if self.spacing else "native spacing"
        return (f"{self.root} ({len(self.volumes)} CT volumes at {sp}, {self.samples_per_volume} "
                f"cubes {self.cube_size} per volume per epoch, HU {self.hu_window})")
