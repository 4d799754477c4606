"""Image corruptions for robustness evaluation: Gaussian blur, Gaussian noise, contrast and JPEG.

Each works on a batch in [0, 1] at the model's input resolution, before intensity normalisation: 2D
images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``. Blur and contrast are :mod:`zoo.data.augment`'s
(:mod:`zoo.data.augment3d`'s blur for volumes) at fixed strength; a volume is JPEG-compressed slice by
slice along its first spatial axis, as a CT series stored as lossy JPEG would be. Three severities each,
in the spirit of ImageNet-C; the blur width is a fraction of the image size so a severity means the same
at 28 and 224 px.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from ..data import augment, augment3d

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "gaussian_blur", "gaussian_noise", "contrast", "jpeg"]

# severity 1..3 -> parameter
SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (0.01, 0.02, 0.04),  # sigma as a fraction of the smaller spatial size
    "gaussian_noise": (0.04, 0.08, 0.16),  # noise std in [0, 1] intensity units
    "contrast": (0.6, 0.4, 0.2),  # factor applied around each image's mean
    "jpeg": (30, 15, 5),  # JPEG quality
}
CORRUPTIONS = tuple(SEVERITIES)


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim not in (4, 5):
        raise ValueError("corruptions take a float (N, C, H, W) or (N, C, D, H, W) batch in [0, 1], "
                         f"got {getattr(x, 'shape', type(x))}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (voxels) along every spatial axis, reflect padding."""
    _check(x)
    if sigma <= 0:
        return x.clone()
    if x.ndim == 5:
        return augment3d.gaussian_blur3d(x, torch.full((x.shape[0], 3), float(sigma)))
    return augment.gaussian_blur(x, sigma=(sigma, sigma), p=1.0)


def gaussian_noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Add seeded i.i.d. Gaussian noise, clipped to [0, 1]."""
    _check(x)
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0.0, 1.0)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend each image with its mean grey level: deviations scaled by ``factor`` (torchvision's contrast)."""
    _check(x)
    return augment._adjust_contrast(x, torch.full((x.shape[0],), factor, dtype=x.dtype))


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode each 2D image (1 or 3 channels) as JPEG at ``quality`` with PIL.

    A volume ``(N, C, D, H, W)`` is compressed as its ``D`` slices ``(H, W)``.
    """
    from PIL import Image

    _check(x)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs images with 1 or 3 channels, got shape {tuple(x.shape)}")
    if x.ndim == 5:
        n, c, d, h, w = x.shape
        slices = x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w)
        return jpeg(slices, quality).reshape(n, d, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
    arr = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for a in arr:
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, mode="L" if a.shape[-1] == 1 else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as dec:
            d = np.asarray(dec.convert(img.mode))
        out.append(d[..., None] if d.ndim == 2 else d)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype) / 255.0


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` 1, 2 or 3 (0 returns ``x`` unchanged)."""
    if name not in SEVERITIES:
        raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS}")
    if severity == 0:
        return x
    if severity not in (1, 2, 3):
        raise ValueError(f"severity must be 0, 1, 2 or 3, got {severity}")
    p = SEVERITIES[name][severity - 1]
    if name == "gaussian_blur":
        return gaussian_blur(x, p * min(x.shape[2:]))
    if name == "gaussian_noise":
        return gaussian_noise(x, p, seed=seed)
    if name == "contrast":
        return contrast(x, p)
    return jpeg(x, int(p))
