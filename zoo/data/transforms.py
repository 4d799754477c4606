"""Preprocessing that matches a checkpoint: ``resolve_data_config`` and ``create_transform``.

2D: PIL images, numpy arrays (HW, HWC or CHW; uint8 or float) and tensors, grayscale or RGB, become a
normalised ``(C, H, W)`` float tensor: channels matched to the model, shorter side resized, centre crop,
intensity preset. 3D: numpy/tensor volumes in HU (or a NIfTI path) become ``(C, X, Y, Z)``: reoriented to
RAS, resampled to the checkpoint's voxel spacing, HU-windowed to [0, 1], zero-padded to the cube size (a
larger volume raises: ``zoo predict`` tiles whole volumes).

``create_transform(cfg, is_training=True)`` gives training augmentation instead, as timm's does: 2D
random resized crop (timm's scale and ratio) with a horizontal flip, 3D a cube at a random position
with a left-right flip (:mod:`zoo.data.augment`); intensity as at evaluation.

timm interop: ``resolve_data_config`` also takes a timm model or timm's data-config dict, and zoo models
answer ``timm.data.resolve_model_data_config(model)`` (their ``pretrained_cfg`` reads like timm's dict).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..meta.cfg import Intensity, PretrainedCfg
from ..meta.registry import get_pretrained_cfg

__all__ = [
    "DataConfig",
    "resolve_data_config",
    "create_transform",
    "ImageTransform",
    "VolumeTransform",
    "TrainImageTransform",
    "TrainVolumeTransform",
]

_TIMM_DEFAULTS = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875,
                  "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

_logger = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        _logger.warning(msg)


@dataclass(frozen=True)
class DataConfig:
    """What a model expects as input (a subset of its :class:`PretrainedCfg`)."""

    input_size: tuple[int, ...]
    spatial_dims: int
    intensity: Intensity
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    voxel_spacing: tuple[float, ...] | None = None

    @property
    def in_chans(self) -> int:
        return self.input_size[0]


def _from_timm(d: Mapping[str, Any]) -> dict[str, Any]:
    """DataConfig fields from timm's ``pretrained_cfg`` or data-config dict (timm's defaults fill gaps)."""
    get = {k: d.get(k) if d.get(k) is not None else v for k, v in _TIMM_DEFAULTS.items()}
    input_size = tuple(int(v) for v in get["input_size"])
    c = input_size[0]
    mean, std = tuple(float(v) for v in get["mean"]), tuple(float(v) for v in get["std"])
    if len(mean) == 1:
        mean, std = mean * c, std * c
    return dict(input_size=input_size, spatial_dims=len(input_size) - 1,
                intensity=Intensity(kind="mean_std", mean=mean, std=std),
                interpolation=str(get["interpolation"]), crop_pct=float(get["crop_pct"]), voxel_spacing=None)


def resolve_data_config(model_or_name: Any = None, **overrides: Any) -> DataConfig:
    """The input config of a model, a model name or a :class:`PretrainedCfg`; keyword overrides win.

    A model built by :func:`zoo.create_model` carries its ``pretrained_cfg`` (with its actual ``in_chans``).
    A timm model (its ``pretrained_cfg`` dict) or a timm data-config dict (from
    ``timm.data.resolve_model_data_config``) gives the same preprocessing timm would apply.
    """
    timm_cfg = getattr(model_or_name, "pretrained_cfg", None) if model_or_name is not None else None
    if isinstance(model_or_name, PretrainedCfg):
        cfg = model_or_name
    elif isinstance(model_or_name, str):
        cfg = get_pretrained_cfg(model_or_name)
    elif isinstance(timm_cfg, PretrainedCfg):
        cfg = timm_cfg
    elif isinstance(model_or_name, Mapping) or isinstance(timm_cfg, Mapping):
        values = _from_timm(model_or_name if isinstance(model_or_name, Mapping) else timm_cfg)
        return _finish(values, overrides)
    else:
        raise TypeError(
            "resolve_data_config needs a zoo model, a model name, a PretrainedCfg, a timm model or a timm "
            f"data-config dict, got {type(model_or_name).__name__}"
        )
    values = dict(
        input_size=cfg.input_size, spatial_dims=cfg.spatial_dims, intensity=cfg.intensity,
        interpolation=cfg.interpolation, crop_pct=cfg.crop_pct, voxel_spacing=cfg.voxel_spacing,
    )
    return _finish(values, overrides)


def _finish(values: dict[str, Any], overrides: dict[str, Any]) -> DataConfig:
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"unknown data config fields: {sorted(unknown)}")
    values.update(overrides)
    values["input_size"] = tuple(values["input_size"])
    return DataConfig(**values)


def _to_chw_float(img: Any) -> tuple[torch.Tensor, bool]:
    """Any 2D image -> (C, H, W) float tensor, and whether it was integer-typed (0-255 scale)."""
    if hasattr(img, "mode") and hasattr(img, "convert"):  # PIL, without importing PIL eagerly
        if img.mode not in ("L", "RGB", "I;16", "I", "F"):
            img = img.convert("RGB")
        arr = np.asarray(img)
        if img.mode in ("I;16", "I"):
            arr = arr.astype(np.float32) / float(max(int(arr.max()), 1))
            return torch.from_numpy(arr)[None], False
        img = arr
    if isinstance(img, np.ndarray):
        integer = np.issubdtype(img.dtype, np.integer)
        t = torch.from_numpy(np.array(img, copy=True))
        if t.ndim == 2:
            t = t[None]
        elif t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
            t = t.permute(2, 0, 1)
    elif isinstance(img, torch.Tensor):
        integer = not img.is_floating_point()
        t = img[None] if img.ndim == 2 else img
    else:
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(img).__name__}")
    if t.ndim != 3:
        raise ValueError(f"expected a 2D image (HW, HWC or CHW), got shape {tuple(t.shape)}")
    if t.shape[0] == 4:
        t = t[:3]  # drop alpha
    t = t.float()
    if integer:
        t = t / 255.0
    return t, integer


def _match_channels(t: torch.Tensor, in_chans: int) -> torch.Tensor:
    c = t.shape[0]
    if c == in_chans:
        return t
    if c == 1:
        return t.expand(in_chans, *t.shape[1:]).clone()
    if in_chans == 1 and c == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=t.dtype).view(3, 1, 1)
        return (t * weights).sum(0, keepdim=True)
    raise ValueError(f"cannot map a {c}-channel image to the model's {in_chans} channels")


def _apply_intensity(t: torch.Tensor, intensity: Intensity) -> torch.Tensor:
    if intensity.kind == "mean_std":
        mean = torch.tensor(intensity.mean, dtype=t.dtype).view(-1, *([1] * (t.ndim - 1)))
        std = torch.tensor(intensity.std, dtype=t.dtype).view(-1, *([1] * (t.ndim - 1)))
        if mean.shape[0] != t.shape[0]:  # the model was created with another in_chans
            mean, std = mean.mean().expand(t.shape[0], *mean.shape[1:]), std.mean().expand(t.shape[0], *std.shape[1:])
        return (t - mean) / std
    if intensity.kind == "zscore":
        return (t - t.mean()) / t.std().clamp_min(1e-6)
    return t


class ImageTransform:
    """2D preprocessing for one image (see module docstring)."""

    def __init__(self, config: DataConfig) -> None:
        if config.spatial_dims != 2:
            raise ValueError("ImageTransform is for 2D models; use VolumeTransform for 3D")
        self.config = config

    def __call__(self, img: Any) -> torch.Tensor:
        cfg = self.config
        t, integer = _to_chw_float(img)
        if not integer and cfg.intensity.kind in ("mean_std", "unit") and (t.max() > 1.5 or t.min() < -0.5):
            _warn_once(
                "2d-range",
                f"float image with values in [{t.min():.3g}, {t.max():.3g}], but the checkpoint expects [0, 1] "
                "before normalisation; divide by 255 (or pass uint8)",
            )
        t = _match_channels(t, cfg.in_chans)
        h, w = cfg.input_size[1:]
        scale_size = int(round(min(h, w) / cfg.crop_pct))
        ih, iw = t.shape[1:]
        s = scale_size / min(ih, iw)
        new = (max(h, round(ih * s)), max(w, round(iw * s)))
        if new != (ih, iw):
            mode = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
            kw = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
            t = F.interpolate(t[None], size=new, mode=mode, **kw)[0]
        top, left = (new[0] - h) // 2, (new[1] - w) // 2
        t = t[:, top : top + h, left : left + w]
        return _apply_intensity(t, cfg.intensity).contiguous()

    def __repr__(self) -> str:
        return f"ImageTransform({self.config})"


class VolumeTransform:
    """3D preprocessing for one CT volume in HU: a NIfTI path, a nibabel image, or an array
    ``(X, Y, Z)`` / ``(C, X, Y, Z)``.

    Paths and images are read with their affine, reoriented to RAS and resampled to the checkpoint's voxel
    spacing, exactly as the pretraining cubes (:func:`zoo.data.ct.load_ct`). An array is reoriented the same
    way when its ``affine`` is given (``spacing`` may be that 4 x 4 affine too); with ``spacing`` alone (3
    values) it is taken to be in RAS order already. The result is HU-windowed and zero-padded up to the
    model's input size. A volume larger than the input size is never cropped: it raises, naming
    ``zoo predict`` (:func:`zoo.eval.predict.predict_volume`), which tiles a whole volume with a sliding window.
    """

    def __init__(self, config: DataConfig) -> None:
        if config.spatial_dims != 3:
            raise ValueError("VolumeTransform is for 3D models; use ImageTransform for 2D")
        self.config = config

    def prepare(self, volume: Any, spacing: Any = None, affine: Any = None) -> torch.Tensor:
        """The whole volume, reoriented, resampled and windowed: ``(C, X, Y, Z)`` float32 of any size."""
        from .ct import load_ct, resample, to_ras

        cfg = self.config
        if isinstance(volume, (str, os.PathLike)):
            ct = load_ct(volume, spacing=cfg.voxel_spacing)  # reoriented to RAS, as in pretraining
            t = ct.hu.float()[None]
        else:
            if hasattr(volume, "dataobj") and hasattr(volume, "affine"):  # a nibabel image
                volume, affine = np.asarray(volume.dataobj, dtype=np.float32), volume.affine
            if spacing is not None and np.asarray(spacing).shape == (4, 4):
                affine, spacing = spacing, None
            arr = volume.numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
            if arr.ndim not in (3, 4):
                raise ValueError(f"expected a 3D volume (X, Y, Z) or (C, X, Y, Z), got shape {tuple(arr.shape)}")
            if affine is not None:
                chans = arr if arr.ndim == 4 else arr[None]
                parts = [to_ras(c, affine) for c in chans]
                arr, spacing = np.stack([p[0] for p in parts]), parts[0][1]
            elif spacing is not None and cfg.voxel_spacing is not None:
                _warn_once("3d-ras", "an array given with spacing= only is taken to be in RAS order; pass "
                           "affine= (e.g. nibabel's img.affine) to reorient it like a NIfTI path")
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            if t.ndim == 3:
                t = t[None]
            if cfg.voxel_spacing is not None and spacing is not None:
                t = resample(t, spacing, cfg.voxel_spacing)
        it = cfg.intensity
        if it.kind == "hu_window":
            from .ct import window_hu

            if t.min() >= 0.0 and t.max() <= 1.0:
                _warn_once(
                    "3d-range",
                    "volume values lie in [0, 1] but the checkpoint expects Hounsfield units "
                    f"(window [{it.hu_min:g}, {it.hu_max:g}]); pass the raw HU volume",
                )
            t = window_hu(t, it.hu_min, it.hu_max)
        else:
            t = _apply_intensity(t, it)
        return _match_channels(t, cfg.in_chans) if t.shape[0] != cfg.in_chans else t

    def __call__(self, volume: Any, spacing: Any = None, affine: Any = None) -> torch.Tensor:
        """One model input ``(C, *input_size)``: :meth:`prepare`, then zero-padding (never cropping)."""
        t = self.prepare(volume, spacing, affine)
        size = tuple(self.config.input_size[1:])
        if any(n > s for n, s in zip(t.shape[1:], size, strict=True)):
            sp = self.config.voxel_spacing
            at = f" at {tuple(sp)} mm" if sp else ""
            raise ValueError(
                f"the volume is {tuple(t.shape[1:])} voxels{at} but the model takes {size}; a transform does not "
                "crop it (that would drop most of the scan): run `zoo predict MODEL VOLUME.nii.gz` (or "
                "zoo.eval.predict.predict_volume) for sliding-window inference over the whole volume, or cut "
                f"a region of at most {size} voxels yourself"
            )
        return _pad_to(t, size).contiguous()

    def __repr__(self) -> str:
        return f"VolumeTransform({self.config})"


def _pad_to(t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad the spatial dims of ``(C, *spatial)`` symmetrically up to ``size`` (the extra voxel after)."""
    pads: list[int] = []
    for n, target in zip(reversed(t.shape[1:]), reversed(tuple(size)), strict=True):  # F.pad: last dim first
        before = max(target - n, 0) // 2
        pads += [before, max(target - n, 0) - before]
    return F.pad(t, pads) if any(pads) else t


class TrainImageTransform:
    """2D training augmentation for one image, as timm's ``create_transform(is_training=True)``: random
    resized crop to the input size (area fraction ``scale``, aspect ``ratio``) with a horizontal flip
    (probability ``hflip``), resampled once; then the checkpoint's intensity normalisation."""

    def __init__(self, config: DataConfig, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5, seed: int | None = None) -> None:
        if config.spatial_dims != 2:
            raise ValueError("TrainImageTransform is for 2D models; use TrainVolumeTransform for 3D")
        self.config, self.scale, self.ratio, self.hflip = config, tuple(scale), tuple(ratio), hflip
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __call__(self, img: Any) -> torch.Tensor:
        from .augment import random_resized_crop

        cfg = self.config
        t = _match_channels(_to_chw_float(img)[0], cfg.in_chans)
        t = random_resized_crop(t[None], tuple(cfg.input_size[1:]), scale=self.scale, ratio=self.ratio,
                                generator=self.generator, hflip_p=self.hflip)[0]
        return _apply_intensity(t, cfg.intensity).contiguous()

    def __repr__(self) -> str:
        return f"TrainImageTransform({self.config}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip})"


class TrainVolumeTransform:
    """3D training augmentation for one CT volume: the evaluation preprocessing (voxel spacing, HU
    window) of the whole volume, then a cube of the input size at a uniformly random position (zero
    padded where the volume is smaller), flipped left-right (axis X of RAS) with probability ``flip``."""

    def __init__(self, config: DataConfig, flip: float = 0.5, seed: int | None = None) -> None:
        if config.spatial_dims != 3:
            raise ValueError("TrainVolumeTransform is for 3D models; use TrainImageTransform for 2D")
        self.config, self.flip = config, flip
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._prep = VolumeTransform(config)

    def __call__(self, volume: Any, spacing: Sequence[float] | None = None) -> torch.Tensor:
        from .augment import random_flip

        size = self.config.input_size[1:]
        t = self._prep.prepare(volume, spacing)
        t = _pad_to(t, size)  # pad only: a larger volume keeps its size for the random cube
        starts = [int(torch.randint(0, n - s + 1, (1,), generator=self.generator)) for n, s in zip(t.shape[1:], size, strict=True)]
        t = t[(slice(None), *(slice(a, a + s) for a, s in zip(starts, size, strict=True)))]
        t, _ = random_flip(t[None], self.flip, generator=self.generator, dims=(2,))  # X of (B, C, X, Y, Z)
        return t[0].contiguous()

    def __repr__(self) -> str:
        return f"TrainVolumeTransform({self.config}, flip={self.flip})"


def create_transform(
    config: DataConfig | Any = None,
    is_training: bool = False,
    *,
    scale: tuple[float, float] | None = None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    seed: int | None = None,
    **overrides: Any,
) -> ImageTransform | VolumeTransform | TrainImageTransform | TrainVolumeTransform:
    """The preprocessing transform for a :class:`DataConfig` (or anything ``resolve_data_config`` takes).

    ``is_training=True`` returns the training augmentation (as timm's ``create_transform``): 2D random
    resized crop (``scale`` default (0.08, 1), ``ratio``) with horizontal flip ``hflip``; 3D a cube at
    a random position with a left-right flip ``hflip`` (``scale``/``ratio`` are 2D only). ``seed``
    makes the draws reproducible.
    """
    if not isinstance(config, DataConfig) or overrides:
        config = resolve_data_config(config, **overrides) if not isinstance(config, DataConfig) else \
            DataConfig(**{**config.__dict__, **overrides})
    if not is_training:
        return ImageTransform(config) if config.spatial_dims == 2 else VolumeTransform(config)
    if config.spatial_dims == 2:
        return TrainImageTransform(config, scale=scale or (0.08, 1.0), ratio=ratio, hflip=hflip, seed=seed)
    if scale is not None:
        raise ValueError("scale is for 2D random resized crops; a 3D training transform crops cubes at the "
                         "checkpoint's voxel spacing (leave scale unset)")
    return TrainVolumeTransform(config, flip=hflip, seed=seed)
