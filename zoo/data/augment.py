"""Seeded augmentations on batched tensors (2D ``(B, C, H, W)`` and 3D ``(B, C, X, Y, Z)``, values in [0, 1]).

Every random draw comes from the ``generator`` argument (a CPU :class:`torch.Generator`), one
vector of draws per batch, so the same generator state gives the same views on any device, and no
function loops over pixels in Python. Each sample gets its own parameters, as with torchvision's
per-image transforms. Functions that a method may need to know the parameters of (flips, rot90)
return them.

The 2D pipeline :class:`Augment2D` covers the MoCo v2 / SimCLR / PCRL / SWCL recipes: random resized
crop (+ rotation + flip, resampled once with ``grid_sample``), colour jitter in a random order per
sample, grayscale, Gaussian blur, solarisation and cutout.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "no_autocast",
    "Augment2DConfig",
    "Augment2D",
    "MOCOV2_AUG",
    "SIMCLR_AUG",
    "PCRL_AUG",
    "CXR_AUG",
    "SWCL_AUG",
    "random_resized_crop",
    "random_flip",
    "random_rot90",
    "color_jitter",
    "random_grayscale",
    "gaussian_blur",
    "random_solarize",
    "cutout",
    "normalize",
    "rgb_to_grayscale",
    "random_resized_crop_3d",
]


_F = TypeVar("_F", bound=Callable[..., Any])


def no_autocast(fn: _F) -> _F:
    """Run ``fn`` with autocast off (CPU and CUDA), so views are made in float32 under a bf16/fp16 run.

    Augmentations resample with matrix products and convolutions, which autocast would round to the
    lower precision; the objective's inputs and targets must not depend on the training precision.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        on = [dev for dev in ("cpu", "cuda") if torch.is_autocast_enabled(dev)]
        if not on:
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for dev in on:
                stack.enter_context(torch.autocast(device_type=dev, enabled=False))
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _rand(n: int, generator: torch.Generator | None, device: torch.device, *shape: int) -> torch.Tensor:
    """``n x shape`` uniform draws on the CPU generator, moved to ``device``."""
    return torch.rand((n, *shape), generator=generator).to(device)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * _rand(n, generator, device)


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return _rand(n, generator, device) < p


def _check(x: torch.Tensor, ndim: int, name: str) -> None:
    if x.ndim != ndim or not x.is_floating_point():
        layout = "(B, C, H, W)" if ndim == 4 else "(B, C, X, Y, Z)"
        raise ValueError(f"{name} expects a float tensor {layout}, got {x.dtype} {tuple(x.shape)}")


# --- geometry ------------------------------------------------------------------------------------
def _sample_crop_fractions(
    n: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    aspect: float,
    generator: torch.Generator | None,
    device: torch.device,
    tries: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop width and height as fractions of the image, torchvision's rule (10 tries, else whole image)."""
    area = _uniform(n * tries, scale[0], scale[1], generator, device).view(n, tries)
    log_r = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator, device).view(n, tries)
    r = torch.exp(log_r)
    # area is a fraction of H*W; w_px = sqrt(area*H*W*r) -> w_frac = sqrt(area * r / aspect), aspect = W/H
    w = torch.sqrt(area * r / aspect)
    h = torch.sqrt(area / r * aspect)
    ok = (w <= 1.0) & (h <= 1.0)
    first = torch.where(ok.any(dim=1), ok.float().argmax(dim=1), torch.full((n,), -1, device=device))
    pick = first.clamp(min=0).unsqueeze(1)
    w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.ones(n, device=device))
    h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.ones(n, device=device))
    return w, h


@no_autocast
def random_resized_crop(
    x: torch.Tensor,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    hflip_p: float = 0.0,
    degrees: float = 0.0,
) -> torch.Tensor:
    """Random resized crop, optionally with a horizontal flip and a rotation, in one bilinear resampling.

    The crop box follows torchvision's ``RandomResizedCrop`` (area fraction in ``scale``, aspect ratio
    log-uniform in ``ratio``); the rotation (uniform in ``[-degrees, degrees]``, about the crop centre)
    fills the uncovered corners with 0 as ``RandomRotation`` does.
    """
    _check(x, 4, "random_resized_crop")
    b, _, height, width = x.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    dev = x.device
    cw, ch = _sample_crop_fractions(b, scale, ratio, width / height, generator, dev)
    cx = cw / 2 + (1 - cw) * _rand(b, generator, dev)  # crop centre, fraction of the image
    cy = ch / 2 + (1 - ch) * _rand(b, generator, dev)
    flip = torch.where(_bernoulli(b, hflip_p, generator, dev), -1.0, 1.0)
    angle = _uniform(b, -degrees, degrees, generator, dev) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output normalised (u, v) -> crop-local pixels (u * cw * W / 2 * flip, v * ch * H / 2) -> rotate
    # -> input pixels around the crop centre -> input normalised coordinates
    half_w, half_h = cw * width / 2 * flip, ch * height / 2
    theta = torch.stack(
        [
            torch.stack([cos * half_w * 2 / width, -sin * half_h * 2 / width, 2 * cx - 1], dim=1),
            torch.stack([sin * half_w * 2 / height, cos * half_h * 2 / height, 2 * cy - 1], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_flip(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None, dims: Sequence[int] = (-1,)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample along each of ``dims`` with probability ``p``; returns ``(x, flags (B, len(dims)))``."""
    b = x.shape[0]
    flags = _rand(b, generator, x.device, len(dims)) < p
    for i, d in enumerate(dims):
        shape = (b,) + (1,) * (x.ndim - 1)
        x = torch.where(flags[:, i].view(shape), x.flip(d), x)
    return x, flags


def random_rot90(
    x: torch.Tensor, generator: torch.Generator | None = None, dims: tuple[int, int] = (-2, -1)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each sample by ``k * 90`` degrees in the plane ``dims``, k uniform in 0..3; returns ``(x, k)``.

    The two axes must have the same size (square images, or the square plane of a cube).
    """
    if x.shape[dims[0]] != x.shape[dims[1]]:
        raise ValueError(f"random_rot90 needs equal sizes on dims {dims}, got shape {tuple(x.shape)}")
    b = x.shape[0]
    k = torch.randint(0, 4, (b,), generator=generator).to(x.device)
    out = x.clone()
    for r in range(1, 4):
        idx = (k == r).nonzero().flatten()
        if idx.numel():
            out[idx] = torch.rot90(x[idx], r, dims=dims)
    return out, k


@no_autocast
def random_resized_crop_3d(
    x: torch.Tensor,
    size: Sequence[int],
    scale: tuple[float, float] = (0.5, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random sub-cube (each side a fraction ``sqrt3(s)`` of the input, ``s`` uniform in ``scale``) resized to ``size`` (trilinear)."""
    _check(x, 5, "random_resized_crop_3d")
    b = x.shape[0]
    dev = x.device
    side = _uniform(b, scale[0], scale[1], generator, dev).pow(1.0 / 3.0)
    centre = side.unsqueeze(1) / 2 + (1 - side.unsqueeze(1)) * _rand(b, generator, dev, 3)
    theta = torch.zeros(b, 3, 4, device=dev, dtype=x.dtype)
    # affine_grid's 3D coordinates are ordered (W, H, D) = (Z, Y, X) of an (X, Y, Z) tensor
    for row, axis in enumerate((2, 1, 0)):
        theta[:, row, row] = side
        theta[:, row, 3] = 2 * centre[:, axis] - 1
    grid = F.affine_grid(theta, [b, x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- intensity -----------------------------------------------------------------------------------
@no_autocast
def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``(B, 1, H, W)`` of an RGB batch (a 1-channel batch is returned as is)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"rgb_to_grayscale needs 1 or 3 channels, got {x.shape[1]}")
    r, g, b = x.unbind(dim=1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(-1, *([1] * (ndim - 1)))


def _adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _view(f, x.ndim)).clamp_(0, 1)


def _adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = rgb_to_grayscale(x).mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    f = _view(f, x.ndim)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def _adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _view(f, x.ndim)
    return (f * x + (1 - f) * rgb_to_grayscale(x)).clamp_(0, 1)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift the hue by ``shift`` (fraction of the colour circle, per sample) through HSV, vectorised."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    v = maxc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    dz = delta.clamp(min=1e-12)
    h = torch.where(
        maxc == r, ((g - b) / dz) % 6.0, torch.where(maxc == g, (b - r) / dz + 2.0, (r - g) / dz + 4.0)
    )
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    # HSV -> RGB: channel n uses k = (n + 6h) mod 6, value v - v*s*clamp(min(k, 4-k), 0, 1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h * 6.0) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1)


@no_autocast
def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision's ``ColorJitter`` applied with probability ``p`` per sample, in a random order per sample.

    Factors: brightness and contrast and saturation uniform in ``[max(0, 1 - a), 1 + a]``, hue shift
    uniform in ``[-hue, hue]``. Saturation and hue need 3 channels and are skipped for 1-channel input.
    """
    _check(x, 4, "color_jitter")
    b, dev = x.shape[0], x.device
    apply = _bernoulli(b, p, generator, dev)
    ops: list[tuple[str, float]] = [("b", brightness), ("c", contrast), ("s", saturation), ("h", hue)]
    factors = {
        name: (_uniform(b, -a, a, generator, dev) if name == "h" else _uniform(b, max(0.0, 1 - a), 1 + a, generator, dev))
        for name, a in ops
    }
    order = torch.argsort(_rand(b, generator, dev, 4), dim=1)  # a random permutation of the 4 ops per sample
    if x.shape[1] == 1:
        ops = ops[:2]
    fns = {"b": _adjust_brightness, "c": _adjust_contrast, "s": _adjust_saturation, "h": _adjust_hue}
    out = x.clone()
    for pos in range(4):
        for op_idx, (name, amount) in enumerate(ops):
            if amount <= 0:
                continue
            idx = (apply & (order[:, pos] == op_idx)).nonzero().flatten()
            if idx.numel():
                out[idx] = fns[name](out[idx], factors[name][idx])
    return out


def random_grayscale(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each sample by its luma (repeated on every channel) with probability ``p``."""
    _check(x, 4, "random_grayscale")
    mask = _bernoulli(x.shape[0], p, generator, x.device)
    if x.shape[1] == 1:
        return x
    return torch.where(_view(mask, 4), rgb_to_grayscale(x).expand_as(x), x)


@no_autocast
def gaussian_blur(
    x: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
    kernel_size: int | None = None,
) -> torch.Tensor:
    """Gaussian blur with probability ``p``, ``sigma`` (pixels) uniform per sample; one grouped separable conv.

    ``kernel_size`` defaults to ``2 * ceil(3 * sigma_max) + 1`` (odd); reflect padding.
    """
    _check(x, 4, "gaussian_blur")
    b, c, _, _ = x.shape
    dev = x.device
    apply = _bernoulli(b, p, generator, dev)
    s = _uniform(b, sigma[0], sigma[1], generator, dev)
    idx = apply.nonzero().flatten()
    if not idx.numel():
        return x
    k = kernel_size or 2 * math.ceil(3 * sigma[1]) + 1
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {k}")
    half = k // 2
    t = torch.arange(-half, half + 1, device=dev, dtype=x.dtype)
    kern = torch.exp(-0.5 * (t / s[idx].to(x.dtype).unsqueeze(1)) ** 2)
    kern = kern / kern.sum(dim=1, keepdim=True)  # (n, k)
    n = idx.numel()
    weight = kern.repeat_interleave(c, dim=0)  # (n*c, k)
    sub = x[idx].reshape(1, n * c, *x.shape[2:])
    pad = min(half, x.shape[2] - 1, x.shape[3] - 1)
    if pad < half:  # images smaller than the kernel: fall back to replicate padding
        sub = F.pad(sub, (half, half, half, half), mode="replicate")
    else:
        sub = F.pad(sub, (half, half, half, half), mode="reflect")
    sub = F.conv2d(sub, weight.view(n * c, 1, 1, k), groups=n * c)
    sub = F.conv2d(sub, weight.view(n * c, 1, k, 1), groups=n * c)
    out = x.clone()
    out[idx] = sub.view(n, c, *x.shape[2:])
    return out


def random_solarize(
    x: torch.Tensor, p: float, threshold: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """torchvision's ``RandomSolarize``: with probability ``p`` per sample, invert pixels ``>= threshold`` (``1 - x``)."""
    _check(x, 4, "random_solarize")
    mask = _view(_bernoulli(x.shape[0], p, generator, x.device), 4)
    return torch.where(mask & (x >= threshold), 1.0 - x, x)


def cutout(
    x: torch.Tensor, holes: int, length: int, generator: torch.Generator | None = None, p: float = 1.0
) -> torch.Tensor:
    """Zero ``holes`` squares of side ``length`` px at uniform centres (clipped at the border), per sample."""
    _check(x, 4, "cutout")
    if holes <= 0 or length <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    apply = _bernoulli(b, p, generator, dev)
    cy = (_rand(b, generator, dev, holes) * h).floor()
    cx = (_rand(b, generator, dev, holes) * w).floor()
    ys = torch.arange(h, device=dev).view(1, 1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, 1, w)
    lo, hi = length // 2, length - length // 2
    inside_y = (ys >= (cy - lo).view(b, holes, 1, 1)) & (ys < (cy + hi).view(b, holes, 1, 1))
    inside_x = (xs >= (cx - lo).view(b, holes, 1, 1)) & (xs < (cx + hi).view(b, holes, 1, 1))
    mask = (inside_y & inside_x).any(dim=1, keepdim=True) & _view(apply, 4)  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel (a 1-value mean/std applies to every channel)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    if m.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"normalize: {m.shape[1]} mean values for {x.shape[1]} channels")
    return (x - m) / s


# --- 2D pipeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment2DConfig:
    """A 2D view recipe; pixel quantities (blur sigma, cutout length) refer to ``ref_size``-pixel images.

    :meth:`scaled` rescales them to another image size, so a 224-px recipe means the same at 128 px.
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    degrees: float = 0.0
    hflip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    cutout_holes: int = 0
    cutout_length: int = 0
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    ref_size: int = 224

    def scaled(self, img_size: int) -> Augment2DConfig:
        """The same recipe for ``img_size``-pixel images."""
        f = img_size / self.ref_size
        return replace(
            self,
            blur_sigma=(self.blur_sigma[0] * f, self.blur_sigma[1] * f),
            cutout_length=round(self.cutout_length * f),
            ref_size=img_size,
        )


# MoCo v2 (and HPT): RRC (0.2, 1), jitter (.4, .4, .4, .1) p .8, grayscale .2, blur sigma .1-2 p .5, h-flip
MOCOV2_AUG = Augment2DConfig()
# SimCLR: RRC (0.08, 1), jitter strength 1.0 -> (.8, .8, .8, .2) p .8, grayscale .2, blur p .5, h-flip
SIMCLR_AUG = Augment2DConfig(scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2))
# PCRL 2D: RRC (0.2, 1), rotation 10, h-flip, jitter .4 x 4 p .8, grayscale .2, blur p .5, cutout 3 x 32 px
PCRL_AUG = Augment2DConfig(degrees=10.0, cutout_holes=3, cutout_length=32)
# Grey-scale radiographs (cf. MoCo-CXR): milder crops, brightness/contrast only. Measured on Kermany at 64 px,
# SimCLR with SIMCLR_AUG stayed at chance (NT-Xent 4.13 ~ log 63) for 580 steps; with this recipe it falls
# below chance within 80 steps on a fixed 256-image subset (scripts/pretrain_reference.sh uses it).
CXR_AUG = Augment2DConfig(scale=(0.5, 1.0), degrees=10.0, jitter=(0.4, 0.4, 0.0, 0.0), gray_p=0.0)
# SWCL (fundus patches): RRC (0.8, 1), h-flip, jitter (.4, .4, .4, .1) p .8, grayscale .2, blur sigma .1-2 p .5,
# solarize p .1 (threshold 0.5 = 128/255). Upstream blurs with a 23-px kernel at 224 px; here the kernel is
# 2 * ceil(3 * sigma_max) + 1 (13 px at 224), which keeps +-3 sigma of every Gaussian drawn.
SWCL_AUG = Augment2DConfig(scale=(0.8, 1.0), solarize_p=0.1)


class Augment2D:
    """Callable view maker: ``views = Augment2D(cfg, out_size)(batch, generator)``."""

    def __init__(self, cfg: Augment2DConfig = MOCOV2_AUG, out_size: int | None = None) -> None:
        self.cfg = cfg
        self.out_size = out_size

    @no_autocast
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(x, 4, "Augment2D")
        c = self.cfg
        size = self.out_size or (x.shape[-2], x.shape[-1])
        x = random_resized_crop(x, size, c.scale, c.ratio, generator, hflip_p=c.hflip_p, degrees=c.degrees)
        if c.jitter_p > 0 and any(a > 0 for a in c.jitter):
            x = color_jitter(x, *c.jitter, p=c.jitter_p, generator=generator)
        if c.gray_p > 0:
            x = random_grayscale(x, c.gray_p, generator)
        if c.blur_p > 0:
            x = gaussian_blur(x, c.blur_sigma, c.blur_p, generator)
        if c.solarize_p > 0:
            x = random_solarize(x, c.solarize_p, c.solarize_threshold, generator)
        if c.cutout_holes > 0 and c.cutout_length > 0:
            x = cutout(x, c.cutout_holes, c.cutout_length, generator)
        return x
