"""Datasets for pretraining and evaluation: image folders, fundus photographs with FOV masks, MedMNIST ``.npz``.

Every dataset yields ``(image, label)`` with ``image`` a float tensor in [0, 1] at a fixed size
(``(C, S, S)`` in 2D, ``(1, X, Y, Z)`` in 3D) and ``label`` an int (-1 when unlabelled). Images are
decoded and resized once and kept in memory as uint8 when they fit (``cache="auto"``): the
5,216 Kermany training X-rays at 128 px take 85 MB. Grayscale sets are stored with one channel and
repeated to ``in_chans`` on the way out.

Unreadable files are logged, skipped and listed in ``dataset.skipped``; a folder without any
readable image raises :class:`DatasetError`. :func:`open_dataset` picks the right class for a path.
NIfTI CT volumes are in :mod:`zoo.data.ct`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .augment import rgb_to_grayscale
from .ct import CTCubeDataset
from .errors import DatasetError

__all__ = [
    "DatasetError",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "FundusDataset",
    "MedMNISTDataset",
    "open_dataset",
    "fov_mask",
    "fov_mask_files",
    "read_fov_mask",
]

_logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")
_CACHE_LIMIT_BYTES = 4 << 30  # keep decoded sets up to 4 GiB in memory (uint8)


def _list_images(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _square_resize(img: Image.Image, size: int, mode: str) -> Image.Image:
    """Centre-crop to a square (``mode="crop"``) or not (``"squash"``), then resize to ``size`` (antialiased)."""
    if mode == "crop":
        w, h = img.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif mode != "squash":
        raise ValueError(f"resize mode must be 'crop' or 'squash', got {mode!r}")
    return img.resize((size, size), Image.BILINEAR) if img.size != (size, size) else img


def _is_gray(arr: np.ndarray) -> bool:
    return arr.ndim == 2 or arr.shape[2] == 1 or bool((arr[..., :1] == arr).all())


class _DecodedImages(Dataset):
    """Shared machinery: decode every file once (threads), skip and report unreadable ones, cache uint8."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        img_size: int,
        in_chans: int,
        root: Path,
        cache: bool | str = "auto",
        workers: int | None = None,
    ) -> None:
        if img_size <= 0:
            raise ValueError(f"img_size must be > 0, got {img_size}")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        self.root = root
        self.img_size = img_size
        self.in_chans = in_chans
        self.skipped: list[tuple[Path, str]] = []
        files, labels = list(files), list(labels)
        est = len(files) * 3 * img_size * img_size
        self.cached = est <= _CACHE_LIMIT_BYTES if cache == "auto" else bool(cache)
        decode = self._decode if self.cached else self._check_readable
        with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool:
            results = list(pool.map(self._safe(decode), files))
        kept = [(f, lab, arr) for f, lab, (arr, err) in zip(files, labels, results, strict=True) if err is None]
        for f, (_, err) in zip(files, results, strict=True):
            if err is not None:
                self.skipped.append((f, err))
                _logger.warning("skipping unreadable image %s: %s", f, err)
        if self.skipped:
            _logger.warning("%s: skipped %d of %d files that could not be read (see dataset.skipped)",
                            root, len(self.skipped), len(files))
        if not kept:
            raise DatasetError(
                f"no readable image in {root} ({len(files)} candidate files, {len(self.skipped)} unreadable). "
                f"Point --data at a folder of {'/'.join(IMAGE_EXTENSIONS)} images."
            )
        self.files = [f for f, _, _ in kept]
        self.targets = torch.tensor([lab for _, lab, _ in kept], dtype=torch.long)
        self.images: torch.Tensor | None = None
        if self.cached:
            arrays = [a for _, _, a in kept]
            gray = all(_is_gray(a) for a in arrays)
            self.stored_chans = 1 if gray else 3
            stack = np.stack([self._to_chw(a, self.stored_chans) for a in arrays])
            self.images = torch.from_numpy(stack)  # (N, C, S, S) uint8

    @staticmethod
    def _safe(fn: Callable[[Path], np.ndarray | None]) -> Callable[[Path], tuple[np.ndarray | None, str | None]]:
        def run(path: Path) -> tuple[np.ndarray | None, str | None]:
            try:
                return fn(path), None
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
                return None, f"{type(err).__name__}: {err}"

        return run

    @staticmethod
    def _to_chw(arr: np.ndarray, chans: int) -> np.ndarray:
        if arr.ndim == 2:
            arr = arr[..., None]
        if chans == 1:
            return np.ascontiguousarray(arr[..., :1].transpose(2, 0, 1))
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def _check_readable(self, path: Path) -> None:
        with Image.open(path) as img:
            img.verify()

    def _decode(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def _uint8(self, index: int) -> torch.Tensor:
        if self.images is not None:
            return self.images[index]
        arr = self._decode(self.files[index])
        return torch.from_numpy(self._to_chw(arr, 1 if _is_gray(arr) else 3))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self._uint8(index).float().div_(255.0)
        if img.shape[0] != self.in_chans:
            # grayscale stored, RGB wanted: repeat; RGB stored, grayscale wanted: luma
            img = img.expand(3, -1, -1) if img.shape[0] == 1 else rgb_to_grayscale(img.unsqueeze(0))[0]
        return img, int(self.targets[index])

    def describe(self) -> str:
        """One line for logs and model cards."""
        return f"{self.root} ({len(self)} images at {self.img_size} px)"


class ImageFolderDataset(_DecodedImages):
    """JPEG/PNG/... images under ``root``; first-level subfolders, if any, are the classes.

    Images directly in ``root`` get label -1 (unlabelled). Each image is centre-cropped to a square
    (``resize="crop"``, default) or squashed (``"squash"``) and resized to ``img_size``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        img_size: int = 224,
        in_chans: int = 3,
        resize: str = "crop",
        cache: bool | str = "auto",
        workers: int | None = None,
        limit: int | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a directory. Give --data a folder of images (or set ZOO_DATA_DIR).")
        if resize not in ("crop", "squash"):
            raise ValueError(f"resize must be 'crop' or 'squash', got {resize!r}")
        self.resize = resize
        files = _list_images(root)
        if not files:
            raise DatasetError(f"{root} contains no image files ({', '.join(IMAGE_EXTENSIONS)}); check the path.")
        self.classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        labels = [index[f.relative_to(root).parts[0]] if len(f.relative_to(root).parts) > 1 else -1 for f in files]
        if limit is not None:
            files, labels = files[:limit], labels[:limit]
        super().__init__(files, labels, img_size, in_chans, root, cache=cache, workers=workers)

    def _decode(self, path: Path) -> np.ndarray:
        with Image.open(path) as img:
            img = img.convert("L") if img.mode in ("L", "I", "I;16", "1", "F") else img.convert("RGB")
            return np.asarray(_square_resize(img, self.img_size, self.resize))


def fov_mask(rgb: np.ndarray, threshold: float = 0.04) -> np.ndarray:
    """A simple field-of-view mask of a fundus photo: the red channel above ``threshold`` (fraction of 255)."""
    red = rgb[..., 0] if rgb.ndim == 3 else rgb
    return red > threshold * 255


def fov_mask_files(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The FOV mask files of a fundus folder (``root/mask/*``) by file stem; empty without ``mask/``."""
    mask_dir = Path(root) / "mask"
    if not mask_dir.is_dir():
        return {}
    return {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}


def read_fov_mask(path: Path, rgb: np.ndarray, mask_files: dict[str, Path]) -> np.ndarray:
    """The ``(H, W)`` bool FOV mask of the photo ``path`` (pixels ``rgb``): its mask file ``x.*`` or
    ``x_mask.*`` from :func:`fov_mask_files` when there is one, else :func:`fov_mask`."""
    mask_path = mask_files.get(path.stem) or mask_files.get(f"{path.stem}_mask")
    if mask_path is None:
        return fov_mask(rgb)
    with Image.open(mask_path) as m:
        mask = np.asarray(m.convert("L")) > 127
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask_path.name} is {mask.shape[::-1]}, image is {rgb.shape[1::-1]}")
    return mask


class FundusDataset(_DecodedImages):
    """Colour fundus photographs with field-of-view masks (DRIVE / HRF / EyePACS layouts).

    Images are read from ``root/images`` (or ``root``); the FOV mask of ``x.png`` is
    ``root/mask/x.*`` or ``root/mask/x_mask.*`` when present, else :func:`fov_mask` (red channel
    threshold). Each photo is cropped to the square around its FOV, resized to ``img_size`` and
    zeroed outside the FOV. ``root/labels.csv`` (``image,label`` rows, image without extension) gives
    labels when present (strings are mapped to sorted class indices). ``dataset.masks`` holds the
    resized FOV masks (``(N, 1, S, S)`` bool), read back as the non-zero pixels of the masked images
    (a pixel that is exactly black in all channels inside the FOV would count as outside).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        img_size: int = 224,
        in_chans: int = 3,
        cache: bool | str = True,
        workers: int | None = None,
        limit: int | None = None,
    ) -> None:
        root = Path(root)
        img_dir = root / "images" if (root / "images").is_dir() else root
        if not img_dir.is_dir():
            raise DatasetError(f"{root} is not a directory of fundus photographs.")
        files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DatasetError(f"{img_dir} contains no fundus images ({', '.join(IMAGE_EXTENSIONS)}).")
        self.mask_dir = root / "mask" if (root / "mask").is_dir() else None
        self._mask_files = fov_mask_files(root)
        labels_csv = root / "labels.csv"
        self.classes: list[str] = []
        labels = [-1] * len(files)
        if labels_csv.is_file():
            with labels_csv.open(newline="") as fh:
                rows = {r[0]: r[1] for r in csv.reader(fh) if len(r) >= 2}
            rows.pop("image", None)
            values = [rows.get(f.stem) for f in files]
            if all(v is not None and v.lstrip("-").isdigit() for v in values if v is not None):
                labels = [int(v) if v is not None else -1 for v in values]
            else:
                self.classes = sorted({v for v in values if v is not None})
                labels = [self.classes.index(v) if v is not None else -1 for v in values]
        if limit is not None:
            files, labels = files[:limit], labels[:limit]
        if not cache:
            raise ValueError("FundusDataset always caches (its masks are computed at load time); use cache=True")
        super().__init__(files, labels, img_size, in_chans, root, cache=True, workers=workers)
        self.masks = (self.images.amax(dim=1, keepdim=True) > 0) if self.images is not None else None

    def _decode(self, path: Path) -> np.ndarray:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        mask = read_fov_mask(path, rgb, self._mask_files)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise ValueError("empty field-of-view mask")
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + 1
        box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        masked = np.where(mask[..., None], rgb, 0).astype(np.uint8)
        img = Image.fromarray(masked).crop(box).resize((self.img_size, self.img_size), Image.BILINEAR)
        m = Image.fromarray(mask.astype(np.uint8) * 255).crop(box).resize((self.img_size, self.img_size), Image.NEAREST)
        out = np.asarray(img).copy()
        out[np.asarray(m) == 0] = 0
        return out


class MedMNISTDataset(Dataset):
    """A MedMNIST v2 ``.npz`` split (2D ``(N, H, W[, 3])`` or 3D ``(N, D, H, W)`` uint8 images).

    ``img_size`` resizes once (2D: bilinear with antialiasing; 3D: trilinear to a cube); ``in_chans``
    repeats grayscale to 3 channels in 2D; ``spatial_dims``, if given, must match the file's. Labels: an int for single-label sets, a float vector for
    multi-label ones (ChestMNIST).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        img_size: int | None = None,
        in_chans: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; download the MedMNIST file or fix the path.")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        try:
            with np.load(path) as data:
                images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        except KeyError as err:
            raise DatasetError(
                f"{path} is not a MedMNIST file: it has no {split}_images / {split}_labels arrays."
            ) from err
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path} cannot be read as .npz ({err}).") from err
        if images.dtype != np.uint8:
            raise DatasetError(f"{path}: expected uint8 images, got {images.dtype}")
        self.path, self.split = path, split
        x = torch.from_numpy(images)
        if x.ndim == 3:  # (N, H, W) gray 2D
            x, self.spatial_dims = x.unsqueeze(1), 2
        elif x.ndim == 4 and x.shape[-1] == 3:  # (N, H, W, 3) RGB 2D
            x, self.spatial_dims = x.permute(0, 3, 1, 2).contiguous(), 2
        elif x.ndim == 4:  # (N, D, H, W) 3D
            x, self.spatial_dims = x.unsqueeze(1), 3
        else:
            raise DatasetError(f"{path}: unsupported image array shape {tuple(images.shape)}")
        if spatial_dims is not None and spatial_dims != self.spatial_dims:
            raise DatasetError(f"{path.name} holds {self.spatial_dims}D images but the method is {spatial_dims}D.")
        if img_size is not None and x.shape[-1] != img_size:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            size = (img_size,) * self.spatial_dims
            chunks = [
                F.interpolate(c.float(), size=size, mode=mode, align_corners=False, antialias=self.spatial_dims == 2)
                .round_().clamp_(0, 255).to(torch.uint8)
                for c in x.split(256)
            ]
            x = torch.cat(chunks)
        self.images = x
        self.in_chans = in_chans or x.shape[1]
        if self.spatial_dims == 3 and self.in_chans != 1:
            raise ValueError("3D MedMNIST volumes have 1 channel; use in_chans=1")
        lab = torch.from_numpy(labels.astype(np.int64))
        self.multilabel = lab.ndim == 2 and lab.shape[1] > 1
        self.targets = lab if self.multilabel else lab.view(-1)
        self.img_size = x.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        img = self.images[index].float().div_(255.0)
        if img.shape[0] != self.in_chans:
            img = img.expand(self.in_chans, *img.shape[1:]) if img.shape[0] == 1 else img.mean(0, keepdim=True)
        target = self.targets[index]
        return img, (target.float() if self.multilabel else int(target))

    def describe(self) -> str:
        return f"{self.path.name}:{self.split} ({len(self)} images, {tuple(self.images.shape[1:])})"


def _has_nifti(path: Path) -> bool:
    return any(p.name.endswith((".nii", ".nii.gz")) for p in path.iterdir())


def open_dataset(
    path: str | os.PathLike[str],
    *,
    img_size: int = 224,
    in_chans: int = 3,
    spatial_dims: int = 2,
    cube_size: Sequence[int] = (64, 64, 32),
    kind: str = "auto",
    split: str = "train",
    workers: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Dataset:
    """The dataset for a ``--data`` argument.

    ``kind="auto"``: a ``.npz`` file is MedMNIST (``split``); a directory with NIfTI files is CT
    (:class:`~zoo.data.ct.CTCubeDataset`, ``cube_size`` cubes, extra ``kwargs`` such as ``spacing``);
    a directory with ``images/`` and ``mask/`` is fundus; any other directory is an image folder.
    ``spatial_dims`` is what the method needs: a 2D method given CT volumes (or the reverse) is an error.
    """
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p} does not exist. Check --data (relative paths are from the current directory; "
                           f"the shared data is at {_data_hint()}).")
    if kind == "auto":
        if p.is_file() and p.suffix == ".npz":
            kind = "medmnist"
        elif p.is_file() and p.name.endswith((".nii", ".nii.gz")):
            kind = "nifti"
        elif p.is_dir() and _has_nifti(p):
            kind = "nifti"
        elif p.is_dir() and (p / "images").is_dir() and (p / "mask").is_dir():
            kind = "fundus"
        elif p.is_dir():
            kind = "folder"
        else:
            raise DatasetError(f"cannot tell what {p} holds: give a folder of images, a MedMNIST .npz, "
                               f"a folder of NIfTI volumes, or set the kind explicitly.")
    if kind == "medmnist":
        if spatial_dims == 3 and len(set(cube_size)) != 1:
            raise DatasetError(f"3D MedMNIST volumes are cubes; use an isotropic --cube-size, got {tuple(cube_size)}")
        return MedMNISTDataset(p, split=split, img_size=img_size if spatial_dims == 2 else int(cube_size[0]),
                               in_chans=in_chans if spatial_dims == 2 else 1, spatial_dims=spatial_dims)
    if kind == "nifti":
        if spatial_dims != 3:
            raise DatasetError(f"{p} holds CT volumes (3D) but the method is 2D; choose a 3D method/arch.")
        return CTCubeDataset(p, cube_size=cube_size, seed=seed, **kwargs)
    if spatial_dims != 2:
        raise DatasetError(f"{p} holds 2D images but the method is 3D; give a NIfTI folder or a 3D MedMNIST .npz.")
    if kind == "fundus":
        return FundusDataset(p, img_size=img_size, in_chans=in_chans, workers=workers, **kwargs)
    if kind == "folder":
        return ImageFolderDataset(p, img_size=img_size, in_chans=in_chans, workers=workers, **kwargs)
    raise ValueError(f"unknown dataset kind {kind!r}; choose auto, folder, fundus, medmnist or nifti")


def _data_hint() -> str:
    from .paths import data_root

    return str(data_root())
