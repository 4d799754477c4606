"""Seeded 3D augmentations on batched cubes ``(B, C, X, Y, Z)``: PCRL / PCRLv2 views and Models Genesis.

Same conventions as :mod:`zoo.data.augment` (its 2D counterpart): every random draw comes from the
``generator`` argument on the CPU, parameters are per sample, and nothing loops over voxels in
Python. Geometry is written in normalised coordinates in [-1, 1] per spatial axis, in the tensor's
axis order ``(X, Y, Z)``:

- crop boxes: :func:`overlapping_boxes` (PCRL's pairs of crops with an IoU constraint),
  :func:`boxes_within` (PCRLv2's local crops);
- :func:`sample_views` resamples box + flip + rotation + scaling in one trilinear pass
  (torchio's ``RandomFlip`` + ``RandomAffine`` on a crop);
- intensity, as torchio: :func:`gaussian_blur3d`, :func:`random_noise`, :func:`random_gamma`,
  :func:`random_swap`, :func:`zscore`;
- the four Models Genesis transformations: :func:`flip_pairs`, :func:`local_pixel_shuffle`,
  :func:`nonlinear_intensity`, :func:`in_painting` / :func:`out_painting`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment import no_autocast

__all__ = [
    "overlapping_boxes",
    "boxes_within",
    "flip_matrix",
    "rotation_matrix",
    "random_flip_affine",
    "sample_views",
    "gaussian_blur3d",
    "random_noise",
    "random_gamma",
    "random_swap",
    "zscore",
    "flip_pairs",
    "local_pixel_shuffle",
    "nonlinear_intensity",
    "in_painting",
    "out_painting",
]


# --- random numbers (drawn on the CPU from the generator) --------------------------------------------
def _uniform(lo: float, hi: float, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (hi - lo) + lo


def _randint(
    lo: torch.Tensor | int, hi: torch.Tensor | int, shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Integers uniform in ``[lo, hi]``, both inclusive like :func:`random.randint` (``hi < lo`` -> ``lo``)."""
    lo_t = torch.as_tensor(lo, dtype=torch.float64)
    hi_t = torch.maximum(torch.as_tensor(hi, dtype=torch.float64), lo_t)
    r = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.minimum(lo_t + torch.floor(r * (hi_t - lo_t + 1)), hi_t).long()


def _bernoulli(p: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def _check5(x: torch.Tensor, name: str) -> None:
    if x.ndim != 5 or not x.is_floating_point():
        raise ValueError(f"{name} expects a float tensor (B, C, X, Y, Z), got {x.dtype} {tuple(x.shape)}")


# --- crop boxes ----------------------------------------------------------------------------------------
def _box_iou(c1: torch.Tensor, h1: torch.Tensor, c2: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    lo = torch.maximum(c1 - h1, c2 - h2)
    hi = torch.minimum(c1 + h1, c2 + h2)
    inter = (hi - lo).clamp(min=0).prod(dim=-1)
    return inter / ((2 * h1).prod(dim=-1) + (2 * h2).prod(dim=-1) - inter)


def overlapping_boxes(
    n: int,
    scale: tuple[float, float],
    min_iou: float,
    ndim: int = 3,
    generator: torch.Generator | None = None,
    attempts: int = 20,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two boxes per sample inside the unit cube whose IoU exceeds ``min_iou`` (PCRL's crop pairs).

    Each box spans a fraction ``f ~ U(scale)`` of the cube on every axis. ``attempts`` candidate pairs
    are drawn at once and the first with IoU > ``min_iou`` is kept (the rejection loop of the
    official pre-processing, vectorised); if none qualifies the second box is the first.
    Returns ``(center1, half1, center2, half2)``, each ``(n, ndim)``, normalised coordinates.
    """
    half = _uniform(scale[0], scale[1], (n, attempts, 2, 1), generator).expand(n, attempts, 2, ndim)
    pos = torch.rand((n, attempts, 2, ndim), generator=generator)
    center = pos * (2 - 2 * half) - 1 + half
    iou = _box_iou(center[:, :, 0], half[:, :, 0], center[:, :, 1], half[:, :, 1])
    good = iou > min_iou
    first = good.float().argmax(dim=1)
    rows = torch.arange(n)
    c1, h1 = center[rows, first, 0], half[rows, first, 0]
    c2, h2 = center[rows, first, 1], half[rows, first, 1]
    none = ~good.any(dim=1, keepdim=True)
    return c1, h1, torch.where(none, c1, c2), torch.where(none, h1, h2)


def boxes_within(
    lo: torch.Tensor,
    hi: torch.Tensor,
    count: int,
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` boxes per sample with centres uniform in ``[lo, hi]`` (``(n, ndim)``, normalised).

    Each box spans a fraction ``f ~ U(scale)`` of the cube on every axis and is shifted to stay
    inside it. Returns ``(center, half)`` of shape ``(count * n, ndim)``, view-major (view 0 of every
    sample first).
    """
    n, ndim = lo.shape
    half = _uniform(scale[0], scale[1], (count, n, 1), generator).expand(count, n, ndim)
    center = lo + torch.rand((count, n, ndim), generator=generator) * (hi - lo)
    center = torch.maximum(torch.minimum(center, 1 - half), -1 + half)
    return center.reshape(count * n, ndim), half.reshape(count * n, ndim)


# --- geometric resampling --------------------------------------------------------------------------------
@no_autocast
def flip_matrix(flags: torch.Tensor) -> torch.Tensor:
    """Diagonal ``(n, d, d)`` matrices with -1 where ``flags`` (``(n, d)`` bool) is set."""
    return torch.diag_embed(1.0 - 2.0 * flags.float())


@no_autocast
def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from angles in radians: ``(n,)`` -> 2D, ``(n, 3)`` -> 3D (``R_z R_y R_x``)."""
    if angles.ndim == 1:
        c, s = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    n = angles.shape[0]
    mats = []
    for axis in range(3):
        c, s = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        m = torch.eye(3).repeat(n, 1, 1)
        i, j = [a for a in range(3) if a != axis]
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        mats.append(m)
    return mats[2] @ mats[1] @ mats[0]


@no_autocast
def random_flip_affine(
    n: int,
    flip_axes: tuple[int, ...] = (0,),
    flip_p: float = 0.5,
    scales: tuple[float, float] = (0.9, 1.1),
    degrees: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchio's ``RandomFlip()`` then ``RandomAffine()`` with their defaults, as ``(n, 3, 3)`` maps for
    :func:`sample_views`: each axis of ``flip_axes`` flipped with ``flip_p``, per-axis scale
    ``U(scales)`` and per-axis rotation ``U(-degrees, degrees)`` about the centre."""
    flags = torch.zeros(n, 3, dtype=torch.bool)
    for a in flip_axes:
        flags[:, a] = _bernoulli(flip_p, n, generator)
    s = _uniform(scales[0], scales[1], (n, 3), generator)
    angles = _uniform(-degrees, degrees, (n, 3), generator) * (math.pi / 180.0)
    # output voxel -> (inverse affine) -> flipped crop -> crop
    return flip_matrix(flags) @ rotation_matrix(angles) @ torch.diag_embed(1.0 / s)


@no_autocast
def sample_views(
    x: torch.Tensor,
    center: torch.Tensor,
    half: torch.Tensor,
    out_size: tuple[int, ...],
    linear: torch.Tensor | None = None,
    fill: str | float = 0.0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """One resampled view per row of ``center``: crop box, then a linear map, then resize, in one pass.

    For an output voxel at normalised position ``u`` the source is ``center + half * v`` with
    ``v = (L @ (u * S/2)) / (S/2)`` (``S`` = ``out_size``, ``L`` = ``linear``, acting in output-voxel
    units so that rotations stay rigid on anisotropic grids). Voxels whose ``v`` leaves the crop box
    (corners uncovered by a rotation or a zoom-out) are set to ``fill``: a number, or ``"min"`` for
    each view's minimum (torchio's default padding). ``index`` picks the source sample of each view
    (default: row ``i`` of ``x``). Works for 2D and 3D; bilinear / trilinear interpolation.
    """
    nd = x.ndim - 2
    n = center.shape[0]
    halves = torch.tensor([s / 2 for s in out_size], dtype=torch.float32)
    axes = [(torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1 for s in out_size]
    u = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, nd)  # (P, nd)
    v = u.expand(n, -1, -1) if linear is None else ((u * halves) @ linear.transpose(1, 2)) / halves
    src = center[:, None, :] + half[:, None, :] * v
    # grid_sample wants the last spatial axis first: (x, y) for (H, W), (z, y, x) for (X, Y, Z)
    grid = src.flip(-1).reshape(n, *out_size, nd).to(device=x.device, dtype=x.dtype)
    source = x if index is None else x[index.to(x.device)]
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if linear is not None:
        outside = (v.abs() > 1 + 1e-6).any(dim=-1).reshape(n, 1, *out_size).to(x.device)
        if fill == "min":
            lo = out.masked_fill(outside, float("inf")).amin(dim=tuple(range(1, nd + 2)), keepdim=True)
            out = torch.where(outside, lo.expand_as(out), out)
        else:
            out = out.masked_fill(outside, float(fill))
    return out


# --- intensity (torchio-style) ---------------------------------------------------------------------------
@no_autocast
def gaussian_blur3d(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample, per-axis ``sigma`` in voxels (``(B, 3)``).

    Kernel radius ``ceil(3 * max sigma)`` (clamped to the cube), reflect padding; ``sigma -> 0`` is
    the identity. One grouped ``conv3d`` per axis over the whole batch.
    """
    _check5(x, "gaussian_blur3d")
    n, c = x.shape[:2]
    sigma = sigma.float().reshape(n, 3)
    radius = max(1, math.ceil(3 * float(sigma.max())))
    y = x.reshape(1, n * c, *x.shape[2:])
    for axis in range(3):
        r = min(radius, x.shape[2 + axis] - 1)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t[None] / sigma[:, axis, None].clamp(min=1e-3)) ** 2)
        k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0).to(x.device, x.dtype)
        shape = [n * c, 1, 1, 1, 1]
        shape[2 + axis] = 2 * r + 1
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        y = F.conv3d(F.pad(y, pad, mode="reflect"), k.view(shape), groups=n * c)
    return y.reshape_as(x)


def random_noise(x: torch.Tensor, std: tuple[float, float] = (0.0, 0.25), generator: torch.Generator | None = None) -> torch.Tensor:
    """torchio's ``RandomNoise``: additive Gaussian noise with ``std ~ U(std)`` per sample."""
    s = _uniform(std[0], std[1], (x.shape[0],), generator).view(-1, *([1] * (x.ndim - 1)))
    return x + (torch.randn(x.shape, generator=generator) * s).to(x.device, x.dtype)


def random_gamma(
    x: torch.Tensor, log_gamma: tuple[float, float] = (-0.3, 0.3), generator: torch.Generator | None = None
) -> torch.Tensor:
    """torchio's ``RandomGamma``: ``sign(x) * |x| ** exp(U(log_gamma))`` per sample."""
    gamma = torch.exp(_uniform(log_gamma[0], log_gamma[1], (x.shape[0],), generator))
    gamma = gamma.view(-1, *([1] * (x.ndim - 1))).to(x.device, x.dtype)
    return torch.sign(x) * x.abs() ** gamma


def random_swap(
    x: torch.Tensor,
    patch: tuple[int, ...] = (8, 4, 4),
    iterations: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchio's ``RandomSwap``: ``iterations`` times, exchange two random patches of size ``patch``.

    The swaps stay sequential (overlapping patches behave as in torchio); each iteration is one
    batched gather/scatter over all samples.
    """
    n, c = x.shape[:2]
    spatial = tuple(x.shape[2:])
    nd = len(spatial)
    patch = tuple(min(p, s) for p, s in zip(patch, spatial, strict=True))
    offs = torch.stack(torch.meshgrid(*[torch.arange(p) for p in patch], indexing="ij"), -1).reshape(-1, nd)
    strides = torch.tensor([math.prod(spatial[i + 1:]) for i in range(nd)])
    hi = torch.tensor([s - p for s, p in zip(spatial, patch, strict=True)])
    corners = _randint(0, hi, (iterations, 2, n, nd), generator)
    flat = ((corners[..., None, :] + offs) * strides).sum(-1).to(x.device)  # (it, 2, n, P)
    out = x.reshape(n, c, -1).clone()
    for it in range(iterations):
        i1 = flat[it, 0][:, None, :].expand(n, c, -1)
        i2 = flat[it, 1][:, None, :].expand(n, c, -1)
        a, b = out.gather(2, i1), out.gather(2, i2)
        out.scatter_(2, i1, b)
        out.scatter_(2, i2, a)
    return out.reshape_as(x)


def zscore(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample zero mean and unit standard deviation (torchio's ``ZNormalization``)."""
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + eps)


# --- Models Genesis ------------------------------------------------------------------------------------------
def flip_pairs(
    x: torch.Tensor, y: torch.Tensor, p: float = 0.4, max_flips: int = 3, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Models Genesis' flips, applied identically to input and target: while ``rand < p`` (at most
    ``max_flips`` times) flip a random spatial axis."""
    n, nd = x.shape[0], x.ndim - 2
    keep = torch.cumprod((torch.rand((n, max_flips), generator=generator) < p).long(), dim=1)
    axes = torch.floor(torch.rand((n, max_flips), generator=generator) * nd).long().clamp(max=nd - 1)
    counts = torch.zeros(n, nd, dtype=torch.long).scatter_add_(1, axes, keep)
    flips = (counts % 2).bool().to(x.device)
    shape = (-1,) + (1,) * (nd + 1)
    for axis in range(nd):
        flag = flips[:, axis].view(shape)
        x = torch.where(flag, x.flip(2 + axis), x)
        y = torch.where(flag, y.flip(2 + axis), y)
    return x, y


def local_pixel_shuffle(
    x: torch.Tensor,
    p: float = 0.5,
    num_blocks: int = 10000,
    generator: torch.Generator | None = None,
    chunk: int = 2_000_000,
) -> torch.Tensor:
    """Models Genesis' local pixel shuffling, vectorised exactly.

    With probability ``p`` per sample, ``num_blocks`` boxes (edges ``1..size//10`` per axis) are each
    filled with a random permutation of the *original* voxels of that box, later boxes overwriting
    earlier ones. So every voxel ends up holding a voxel of the last box that covers it, drawn
    without replacement within that box; that final state is computed directly: the last covering
    box of each voxel with one ``scatter_reduce(amax)``, the permutations by ``argsort`` of random keys.
    """
    _check5(x, "local_pixel_shuffle")
    n, c = x.shape[:2]
    sizes = tuple(x.shape[2:])
    chosen = _bernoulli(p, n, generator).nonzero().flatten().tolist()
    if not chosen:
        return x
    vol = math.prod(sizes)
    max_edge = torch.tensor([max(1, s // 10) for s in sizes])
    slots = int(max_edge.prod())
    offs = torch.stack(torch.meshgrid(*[torch.arange(int(m)) for m in max_edge], indexing="ij"), -1).reshape(-1, 3)
    strides = torch.tensor([sizes[1] * sizes[2], sizes[2], 1])
    per_chunk = max(1, chunk // slots)
    out = x.clone()
    for s in chosen:
        edge = _randint(1, max_edge, (num_blocks, 3), generator)
        corner = _randint(0, torch.tensor(sizes) - edge, (num_blocks, 3), generator)
        keys = torch.rand((num_blocks, slots), generator=generator)
        valid = (offs[None] < edge[:, None]).all(-1)  # (blocks, slots)
        vox = ((corner[:, None] + offs[None]) * strides).sum(-1)
        vox = torch.where(valid, vox, torch.full_like(vox, vol))  # padding slots -> a dummy voxel
        block_id = torch.arange(num_blocks)[:, None].expand(-1, slots)
        last = torch.full((vol + 1,), -1, dtype=torch.long)
        last.scatter_reduce_(0, vox.flatten(), block_id.flatten(), reduce="amax")
        src_parts, dst_parts = [], []
        for start in range(0, num_blocks, per_chunk):
            part = slice(start, start + per_chunk)
            v, ok = vox[part], valid[part]
            perm = torch.argsort(keys[part].masked_fill(~ok, float("inf")), dim=1)
            rank = (torch.cumsum(ok.long(), dim=1) - 1).clamp(min=0)  # k-th valid slot <- perm[k]
            src = v.gather(1, perm.gather(1, rank))
            win = ok & (last[v] == block_id[part])
            src_parts.append(src[win])
            dst_parts.append(v[win])
        src_i, dst_i = torch.cat(src_parts).to(x.device), torch.cat(dst_parts).to(x.device)
        flat = out[s].reshape(c, -1)
        flat[:, dst_i] = x[s].reshape(c, -1)[:, src_i]
        out[s] = flat.reshape(c, *sizes)
    return out


def _bezier_curves(p1: torch.Tensor, p2: torch.Tensor, n_times: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic Bezier curves (0, 0) -> ``p1`` -> ``p2`` -> (1, 1) (``(N, 2)`` control points), sampled
    from the (1, 1) end to the (0, 0) end, as Models Genesis samples them."""
    t = torch.linspace(0.0, 1.0, n_times, dtype=torch.float64)
    s = 1.0 - t
    weights = torch.stack([s**3, 3 * s**2 * t, 3 * s * t**2, t**3])  # of (1, 1), p2, p1, (0, 0)
    pts = torch.stack([torch.ones_like(p1), p2, p1, torch.zeros_like(p1)], dim=1).double()  # (N, 4, 2)
    curve = torch.einsum("kt,nkd->ntd", weights, pts)
    return curve[..., 0], curve[..., 1]


@no_autocast
def nonlinear_intensity(
    x: torch.Tensor, p: float = 0.9, n_times: int = 100000, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Models Genesis' non-linear intensity transformation.

    With probability ``p`` per sample, intensities are mapped through a cubic Bezier curve from
    (0, 0) to (1, 1) with two control points uniform in the unit square (``np.interp`` on the
    sorted curve samples); half of the time the curve's ``y`` samples stay unsorted, which makes the
    mapping decreasing (an intensity inversion).
    """
    n = x.shape[0]
    chosen = _bernoulli(p, n, generator)
    p1 = torch.rand((n, 2), generator=generator)
    p2 = torch.rand((n, 2), generator=generator)
    unsorted_y = _bernoulli(0.5, n, generator)
    idx = chosen.nonzero().flatten()
    if idx.numel() == 0:
        return x
    xv, yv = _bezier_curves(p1[idx], p2[idx], n_times)
    xs = torch.sort(xv, dim=1).values
    ys = torch.where(unsorted_y[idx, None], yv, torch.sort(yv, dim=1).values)
    xs, ys = xs.to(x.device).contiguous(), ys.to(x.device).contiguous()
    dev_idx = idx.to(x.device)
    vals = x[dev_idx].reshape(idx.numel(), -1).double()
    j = torch.searchsorted(xs, vals.contiguous()).clamp(1, n_times - 1)
    x0, x1 = xs.gather(1, j - 1), xs.gather(1, j)
    y0, y1 = ys.gather(1, j - 1), ys.gather(1, j)
    mapped = y0 + ((vals - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1) * (y1 - y0)
    mapped = torch.where(vals <= xs[:, :1], ys[:, :1], mapped)  # np.interp clamps to the end values
    mapped = torch.where(vals >= xs[:, -1:], ys[:, -1:], mapped)
    out = x.clone()
    out[dev_idx] = mapped.to(x.dtype).reshape(idx.numel(), *x.shape[1:])
    return out


def _box_masks(
    n: int, sizes: tuple[int, ...], count: int, edge_lo: list[int], edge_hi: list[int], generator: torch.Generator | None
) -> torch.Tensor:
    """``count`` random boxes per sample as a boolean ``(n, count, *sizes)`` mask: edges uniform in
    ``[edge_lo, edge_hi]`` per axis, corners in ``[3, size - edge - 3]`` (Models Genesis' margins)."""
    nd = len(sizes)
    size_t = torch.tensor(sizes)
    edge = torch.minimum(_randint(torch.tensor(edge_lo), torch.tensor(edge_hi), (n, count, nd), generator), size_t)
    room = size_t - edge
    corner = torch.minimum(_randint(3, room - 3, (n, count, nd), generator), room)
    mask = torch.ones((n, count, *sizes), dtype=torch.bool)
    for axis, s in enumerate(sizes):
        coord = torch.arange(s).view(*([1] * (axis + 2)), s, *([1] * (nd - axis - 1)))
        lo = corner[..., axis].view(n, count, *([1] * nd))
        hi = lo + edge[..., axis].view(n, count, *([1] * nd))
        mask &= (coord >= lo) & (coord < hi)
    return mask


def _loop_draws(n: int, count: int, generator: torch.Generator | None, p: float = 0.95) -> torch.Tensor:
    """Which of ``count`` iterations of ``while cnt > 0 and rand < p`` run, ``(n, count)`` bool."""
    return torch.cumprod((torch.rand((n, count), generator=generator) < p).long(), dim=1).bool()


def in_painting(x: torch.Tensor, max_boxes: int = 5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Models Genesis' in-painting: up to ``max_boxes`` boxes (edges ``size//6..size//3``, the loop
    going on with probability 0.95) replaced by uniform noise."""
    n = x.shape[0]
    sizes = tuple(x.shape[2:])
    keep = _loop_draws(n, max_boxes, generator)
    boxes = _box_masks(n, sizes, max_boxes, [s // 6 for s in sizes], [s // 3 for s in sizes], generator)
    mask = (boxes & keep.view(n, max_boxes, *([1] * len(sizes)))).any(dim=1, keepdim=True)
    noise = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
    return torch.where(mask.to(x.device), noise, x)


def out_painting(x: torch.Tensor, max_extra: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Models Genesis' out-painting: uniform noise everywhere except one box plus up to ``max_extra``
    more (the loop going on with probability 0.95), of edges ``size - U{3s//7..4s//7}``, which keep
    the original voxels."""
    n = x.shape[0]
    sizes = tuple(x.shape[2:])
    keep = torch.cat([torch.ones(n, 1, dtype=torch.bool), _loop_draws(n, max_extra, generator)], dim=1)
    count = max_extra + 1
    boxes = _box_masks(n, sizes, count, [s - 4 * s // 7 for s in sizes], [s - 3 * s // 7 for s in sizes], generator)
    mask = (boxes & keep.view(n, count, *([1] * len(sizes)))).any(dim=1, keepdim=True)
    noise = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
    return torch.where(mask.to(x.device), x, noise)
