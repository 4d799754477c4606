"""Readers for the real datasets (torch-free: numpy + PIL) and seeded, stratified subsets.

- :func:`load_medmnist`: an official MedMNIST v2 ``.npz`` split (2D ``(N, H, W, C)`` or 3D ``(N, D, H, W)``
  uint8 images, int64 labels);
- :func:`list_image_folder` / :func:`read_images`: ``root/<class>/*.jpeg`` trees such as Kermany's;
- :func:`load_drive`: DRIVE fundus images with vessel and field-of-view masks;
- :func:`stratified_subset`: a seeded subset that keeps every class's share (and at least one per class).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "SegmentationSplit",
    "load_medmnist",
    "list_image_folder",
    "read_images",
    "drive_files",
    "load_drive",
    "stratified_subset",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".gif")
MEDMNIST_SPLITS = ("train", "val", "test")


def load_medmnist(path: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one official split of a MedMNIST ``.npz`` file.

    Images keep MedMNIST's uint8 layout; labels become a flat int64 vector (single-label tasks).
    """
    if split not in MEDMNIST_SPLITS:
        raise ValueError(f"MedMNIST split must be one of {MEDMNIST_SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set ZOO_DATA_DIR to the directory holding the MedMNIST files")
    with np.load(path) as data:
        keys = (f"{split}_images", f"{split}_labels")
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(f"{path.name} is not a MedMNIST file: missing {missing} (has {data.files})")
        images, labels = data[keys[0]], data[keys[1]]
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise ValueError(f"{path.name}: multi-label MedMNIST tasks are not supported (labels {labels.shape})")
    return images, labels.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class ImageFolder:
    """Files of a ``root/<class>/<image>`` tree: paths, int64 labels and the sorted class names."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_image_folder(root: str | os.PathLike[str], classes: Sequence[str] | None = None) -> ImageFolder:
    """List ``root/<class>/*`` images; classes are the sub-directories in sorted order unless given."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory; set ZOO_DATA_DIR to the data directory")
    names = tuple(classes) if classes is not None else tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not names:
        raise ValueError(f"{root} has no class sub-directories (expected {root}/<class>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    for i, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"class directory {folder} does not exist")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return ImageFolder(tuple(paths), np.asarray(labels, dtype=np.int64), names)


def read_images(paths: Sequence[str | os.PathLike[str]], mode: str = "RGB") -> np.ndarray:
    """Decode images of one size into a uint8 array ``(N, H, W, C)`` (``mode='L'`` gives C = 1)."""
    from PIL import Image

    arrays = []
    for p in paths:
        with Image.open(p) as im:
            arrays.append(np.asarray(im.convert(mode)))
    if not arrays:
        return np.zeros((0, 1, 1, 1 if mode == "L" else 3), dtype=np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images differ in size ({sorted(shapes)[:3]} ...); resize them to one size first")
    out = np.stack(arrays)
    return out[..., None] if out.ndim == 3 else out


@dataclass(frozen=True)
class SegmentationSplit:
    """Images ``(N, H, W, 3)`` uint8, target masks ``(N, H, W)`` bool, field-of-view masks, image ids."""

    images: np.ndarray
    masks: np.ndarray
    fov: np.ndarray
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


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
    base = files[0].parent.parent if files else Path(root)
    if indices is not None:
        files = [files[i] for i in indices]
    ids = tuple(p.stem.split("_")[0] for p in files)
    masks, fovs = [], []
    for i, p in zip(ids, files, strict=True):
        vessel = base / "1st_manual" / f"{i}_manual1.gif"
        fov = base / "mask" / f"{p.stem}_mask.gif"
        for needed in (vessel, fov):
            if not needed.is_file():
                raise FileNotFoundError(f"DRIVE image {p.name} has no {needed.parent.name} file {needed.name}")
        masks.append(_read_mask(vessel))
        fovs.append(_read_mask(fov))
    images = read_images(files, "RGB")
    return SegmentationSplit(images, np.stack(masks), np.stack(fovs), ids)


def stratified_subset(labels: np.ndarray, fraction: float | None = None, seed: int = 0,
                      size: int | None = None) -> np.ndarray:
    """Sorted indices of a seeded subset keeping each class's share; every class keeps >= 1 sample.

    Give either ``fraction`` (of each class, rounded) or a total ``size`` (split across classes in
    proportion, largest remainders first). The same labels and seed always give the same subset.
    """
    labels = np.asarray(labels).reshape(-1)
    if (fraction is None) == (size is None):
        raise ValueError("give exactly one of fraction and size")
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        take = np.maximum(1, np.round(counts * fraction).astype(np.int64))
    else:
        assert size is not None
        if size < len(classes):
            raise ValueError(f"size {size} is smaller than the number of classes ({len(classes)})")
        if size >= n:
            return np.arange(n)
        exact = counts * size / n
        take = np.maximum(1, np.floor(exact).astype(np.int64))
        for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
            if take.sum() >= size:
                break
            take[i] += 1
        while take.sum() > size:  # the at-least-one rule overshot: trim the largest classes
            take[np.argmax(take)] -= 1
    take = np.minimum(take, counts)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))
