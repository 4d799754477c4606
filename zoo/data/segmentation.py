"""Segmentation ground truth: DRIVE fundus images with vessel masks and field-of-view masks, at native
resolution (scored as published: the 1st observer's vessels, inside the FOV).

:class:`~zoo.data.datasets.FundusDataset` serves fundus photographs for pretraining (cropped to the
FOV and resized, no vessel masks); this reader keeps the pixels where the metrics are defined.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import IMAGE_EXTENSIONS

__all__ = ["SegmentationSplit", "drive_files", "load_drive"]


@dataclass(frozen=True)
class SegmentationSplit:
    """Images ``(N, H, W, 3)`` uint8, target masks ``(N, H, W)`` bool, field-of-view masks, image ids."""

    images: np.ndarray
    masks: np.ndarray
    fov: np.ndarray
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def _read(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def drive_files(root: str | os.PathLike[str], split: str) -> list[Path]:
    """The sorted image files of a DRIVE split (``train``/``training`` or ``test``)."""
    folder = {"train": "training", "training": "training", "test": "test"}.get(split)
    if folder is None:
        raise ValueError(f"DRIVE split must be 'train' or 'test', got {split!r}")
    image_dir = Path(root) / folder / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} not found; set ZOO_DATA_DIR to the directory holding fundus/drive")
    return sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def load_drive(root: str | os.PathLike[str], split: str, indices: Sequence[int] | None = None) -> SegmentationSplit:
    """DRIVE ``training`` (ids 21-40) or ``test`` (01-20): images, 1st-observer vessel masks and FOV masks."""
    files = drive_files(root, split)
    if indices is not None:
        files = [files[i] for i in indices]
    images, masks, fovs, ids = [], [], [], []
    for p in files:
        base, i = p.parent.parent, p.stem.split("_")[0]
        vessel, fov = base / "1st_manual" / f"{i}_manual1.gif", base / "mask" / f"{p.stem}_mask.gif"
        for needed in (vessel, fov):
            if not needed.is_file():
                raise FileNotFoundError(f"DRIVE image {p.name} has no {needed.parent.name} file {needed.name}")
        images.append(_read(p, "RGB"))
        masks.append(_read(vessel, "L") > 127)
        fovs.append(_read(fov, "L") > 127)
        ids.append(i)
    if not images:
        raise ValueError(f"no DRIVE images selected from {root} ({split})")
    return SegmentationSplit(np.stack(images), np.stack(masks), np.stack(fovs), tuple(ids))
