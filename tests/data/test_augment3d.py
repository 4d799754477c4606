"""The 3D / Models Genesis tensor augmentations against their definitions."""

from __future__ import annotations

import numpy as np
import torch

from tests._real_data import ct_cubes
from zoo.data import augment3d as A


def _reference_shuffle(x: torch.Tensor, edge: torch.Tensor, corner: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Upstream's sequential loop over blocks with the same draws: each block gets a permutation of
    the *original* voxels of its box (argsort of its keys), later blocks overwriting earlier ones."""
    out = x.clone()
    mx, my, mz = (max(1, s // 10) for s in x.shape[2:])
    slots = torch.stack(torch.meshgrid(torch.arange(mx), torch.arange(my), torch.arange(mz), indexing="ij"), -1).reshape(-1, 3)
    for b in range(edge.shape[0]):
        ex, ey, ez = edge[b].tolist()
        cx, cy, cz = corner[b].tolist()
        valid = (slots < edge[b]).all(-1)
        order = torch.argsort(keys[b].masked_fill(~valid, float("inf")))[: int(valid.sum())]
        window = x[0, :, cx:cx + ex, cy:cy + ey, cz:cz + ez]
        flat_src = window.reshape(window.shape[0], -1)
        # slot index -> position inside the window (row-major over the valid sub-box)
        pos = {int(s): i for i, s in enumerate(valid.nonzero().flatten())}
        new = flat_src[:, [pos[int(s)] for s in order]]
        out[0, :, cx:cx + ex, cy:cy + ey, cz:cz + ez] = new.reshape(window.shape)
    return out


def test_local_pixel_shuffle_matches_the_sequential_definition() -> None:
    x = ct_cubes(1, (20, 20, 20))
    blocks = 300
    g = torch.Generator().manual_seed(3)
    out = A.local_pixel_shuffle(x, p=1.0, num_blocks=blocks, generator=g)
    g = torch.Generator().manual_seed(3)  # replay the same draws for the reference
    assert bool(torch.rand(1, generator=g) < 1.0)  # the per-sample Bernoulli draw
    max_edge = torch.tensor([2, 2, 2])
    edge = A._randint(1, max_edge, (blocks, 3), g)
    corner = A._randint(0, torch.tensor([20, 20, 20]) - edge, (blocks, 3), g)
    keys = torch.rand((blocks, 8), generator=g)
    torch.testing.assert_close(out, _reference_shuffle(x, edge, corner, keys), rtol=0, atol=0)
    assert not torch.equal(out, x)


def test_nonlinear_intensity_is_np_interp_of_the_bezier_curve() -> None:
    x = ct_cubes(1, (16, 16, 16))
    g = torch.Generator().manual_seed(0)
    out = A.nonlinear_intensity(x, p=1.0, n_times=1000, generator=g)
    g = torch.Generator().manual_seed(0)
    torch.rand(1, generator=g)
    p1, p2 = torch.rand((1, 2), generator=g), torch.rand((1, 2), generator=g)
    unsorted = bool(torch.rand(1, generator=g) < 0.5)
    t = np.linspace(0, 1, 1000)
    pts = np.array([[0, 0], p1[0].tolist(), p2[0].tolist(), [1, 1]])
    # Bernstein form over the points listed from (0, 0) to (1, 1), with upstream's t orientation
    bern = np.array([[1, 3, 3, 1][i] * t ** (3 - i) * (1 - t) ** i for i in range(4)])
    xv, yv = pts[:, 0] @ bern, pts[:, 1] @ bern
    xs = np.sort(xv)
    ys = yv if unsorted else np.sort(yv)
    expected = np.interp(x.numpy(), xs, ys)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_painting_and_flips() -> None:
    x = ct_cubes(2, (32, 32, 16))
    g = torch.Generator().manual_seed(0)
    inp = A.in_painting(x, generator=g)
    changed = (inp != x).float().mean().item()
    assert 0 < changed < 0.5
    out = A.out_painting(x, generator=g)
    kept = (out == x).float().mean().item()
    assert 0.05 < kept < 0.95
    a, b = A.flip_pairs(x, x.clone(), p=1.0, generator=g)
    assert torch.equal(a, b)


def test_views_boxes_and_intensity_ops() -> None:
    x = ct_cubes(2, (32, 32, 16))
    same = A.sample_views(x, torch.zeros(2, 3), torch.ones(2, 3), (32, 32, 16))
    torch.testing.assert_close(same, x)
    flipped = A.sample_views(x, torch.zeros(2, 3), torch.ones(2, 3), (32, 32, 16),
                             linear=A.flip_matrix(torch.tensor([[True, False, False]] * 2)))
    torch.testing.assert_close(flipped, x.flip(2))
    g = torch.Generator().manual_seed(0)
    c1, h1, c2, h2 = A.overlapping_boxes(64, (0.5, 1.0), 0.3, generator=g)
    assert bool((A._box_iou(c1, h1, c2, h2) > 0.3).all())
    assert bool(((c1 - h1) >= -1 - 1e-6).all() and ((c1 + h1) <= 1 + 1e-6).all())
    torch.testing.assert_close(A.gaussian_blur3d(x, torch.zeros(2, 3)), x)
    assert float(A.gaussian_blur3d(x, torch.full((2, 3), 2.0)).std()) < float(x.std())
    g = torch.Generator().manual_seed(5)
    swapped = A.random_swap(x, (8, 4, 4), 20, generator=g)
    g = torch.Generator().manual_seed(5)
    corners = A._randint(0, torch.tensor([24, 28, 12]), (20, 2, 2, 3), g)
    ref = x.clone()
    for it in range(20):  # torchio's loop: copy both patches, then write each into the other's place
        for b in range(2):
            (a0, a1, a2), (b0, b1, b2) = corners[it, 0, b].tolist(), corners[it, 1, b].tolist()
            pa = ref[b, :, a0:a0 + 8, a1:a1 + 4, a2:a2 + 4].clone()
            pb = ref[b, :, b0:b0 + 8, b1:b1 + 4, b2:b2 + 4].clone()
            ref[b, :, a0:a0 + 8, a1:a1 + 4, a2:a2 + 4] = pb
            ref[b, :, b0:b0 + 8, b1:b1 + 4, b2:b2 + 4] = pa
    assert torch.equal(swapped, ref) and not torch.equal(swapped, x)
    z = A.zscore(x)
    torch.testing.assert_close(z.mean(dim=(1, 2, 3, 4)), torch.zeros(2), atol=1e-5, rtol=0)
