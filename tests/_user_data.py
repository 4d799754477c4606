"""Small labelled data sets in the user's layouts, written by tests (class folders, image / mask pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["class_folders", "image_mask_folders", "nifti_csv"]


def class_folders(root: Path, n: int = 8, bases: tuple[int, int] = (60, 190), noise: float = 25.0,
                  shape: tuple[int, int] = (40, 48)) -> Path:
    """``root/dark`` and ``root/bright``: ``n`` noisy RGB PNGs each, differing in brightness (learnable quickly)."""
    rng = np.random.default_rng(0)
    for c, base in zip(("dark", "bright"), bases, strict=True):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(base + rng.normal(0, noise, (*shape, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}{i}.png")
    return root


def image_mask_folders(root: Path, sizes: Sequence[tuple[int, int]] = ((50, 40), (40, 64), (70, 45), (30, 30))) -> Path:
    """``root/images`` + ``root/masks``: images of the given (w, h) sizes, a bright horizontal band as foreground."""
    rng = np.random.default_rng(2)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[h // 4: h // 2, :] = 255
        img[mask > 0] += 120
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def nifti_csv(root: Path, n: int = 8) -> Path:
    """``root/l.csv`` listing ``n`` small CT-like NIfTI volumes (HU int16, 1.5 x 1.5 x 3 mm), labels no / yes
    alternating, the ``yes`` ones 300 HU brighter."""
    import nibabel as nib

    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        vol = rng.integers(-1000, 1000, (20, 18, 12)).astype(np.int16) + (300 if i % 2 else 0)
        nib.save(nib.Nifti1Image(vol, np.diag([1.5, 1.5, 3.0, 1.0])), str(root / f"ct{i}.nii.gz"))
        rows.append(f"ct{i}.nii.gz,{'no' if i % 2 == 0 else 'yes'}")
    (root / "l.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root / "l.csv"
