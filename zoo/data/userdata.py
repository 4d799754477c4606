"""The user's own labelled data: six layouts, checked up front, read into tensors.

:func:`open_user_data` looks at a path and returns a :class:`UserData` spec (files, labels, class
names; nothing decoded yet) after checking every file it names:

=====================  ================================================================================
format                 layout
=====================  ================================================================================
``class-folders``      ``DIR/<class>/*.png|jpg|...``: one folder per class (2D classification)
``csv``                ``labels.csv`` with a path column and a label column (2D; 3D when the paths
                       are NIfTI volumes: ``nifti-csv``)
``csv-multilabel``     the label column holds several labels separated by ``|`` or ``;``, or the CSV
                       has one 0/1 column per label (multi-label classification)
``image-mask-folders`` ``DIR/images`` + ``DIR/masks`` (or ``--masks DIR``): 2D images of any size and
                       binary masks of the same size, matched by file stem (2D segmentation)
``nifti-pairs``        the same with NIfTI volumes and label maps (3D segmentation)
=====================  ================================================================================

CSV paths are relative to the CSV's folder (or ``image_root``); a path without extension is looked
up with any image/NIfTI extension, also under an ``images/`` folder next to the CSV (the HRF layout).
Every problem (missing or unreadable files, a mask of another size, a class without images, a label
outside the given classes) raises one :class:`DatasetError` naming the file and the fix.

The readers (:func:`load_images`, :func:`load_image_mask_pairs`, :func:`load_volumes`,
:func:`load_volume_pairs`) return uint8 tensors/arrays that :mod:`zoo.eval.finetune` and the
evaluation/comparison commands share; :func:`train_val_split` is the seeded, stratified split.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .datasets import IMAGE_EXTENSIONS
from .errors import DatasetError

__all__ = [
    "FORMATS",
    "NIFTI_EXTENSIONS",
    "UserData",
    "open_user_data",
    "train_val_split",
    "load_images",
    "load_image_mask_pairs",
    "scaled_size",
    "load_volumes",
    "load_volume_pairs",
]

_logger = logging.getLogger(__name__)

FORMATS = ("class-folders", "csv", "csv-multilabel", "image-mask-folders", "nifti-csv", "nifti-pairs")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_PATH_COLUMNS = ("path", "image", "file", "filename", "filepath", "volume")
_LABEL_COLUMNS = ("label", "labels", "class", "target", "diagnosis")
_MASK_DIRS = ("masks", "mask_images", "labels", "labelsTr", "annotations")
_IMAGE_DIRS = ("images", "imagesTr", "volumes")
_MULTI_SEPARATORS = ("|", ";")


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_EXTENSIONS)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _stem(path: Path) -> str:
    name = path.name
    for ext in NIFTI_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


@dataclass(frozen=True)
class UserData:
    """A checked description of a labelled data set (nothing decoded yet).

    ``labels`` are class ids ``(N,)`` (``classification``), 0/1 rows ``(N, K)`` (``multilabel``) or
    None (``segmentation``: the labels are the files in ``masks``).
    """

    format: str
    kind: str  # "classification" | "multilabel" | "segmentation"
    spatial_dims: int
    files: tuple[Path, ...]
    labels: np.ndarray | None
    classes: tuple[str, ...]
    source: Path
    masks: tuple[Path, ...] | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        """Outputs of the head: classes, labels (multi-label), or 1 (binary segmentation masks)."""
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> UserData:
        """The same spec restricted to ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return UserData(self.format, self.kind, self.spatial_dims, tuple(self.files[i] for i in idx),
                        None if self.labels is None else self.labels[idx], self.classes, self.source,
                        None if self.masks is None else tuple(self.masks[i] for i in idx))

    def counts(self) -> dict[str, int]:
        """Samples per class (per label for multi-label; images for segmentation)."""
        if self.labels is None:
            return {"images": len(self)}
        if self.kind == "multilabel":
            return {c: int(self.labels[:, i].sum()) for i, c in enumerate(self.classes)}
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}

    def describe(self) -> str:
        """One line: format, dimensionality, samples and classes."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"{self.source} ({self.format}, {self.spatial_dims}D {self.kind}): {len(self)} samples; {counts}"


# --- checks of single files ---------------------------------------------------------------------------
def _image_size(path: Path, context: str) -> tuple[int, int]:
    """(width, height) from the header; unreadable files raise naming the file and the fix."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(f"{path} ({context}) is not a readable image ({err}). Replace the file, or remove it "
                           "from the data.") from err


def _nifti_shape(path: Path, context: str) -> tuple[int, ...]:
    import nibabel as nib

    try:
        shape = tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises many types for bad files
        raise DatasetError(f"{path} ({context}) is not a readable NIfTI file ({type(err).__name__}: {err}). "
                           "Replace the file, or remove it from the data.") from err
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise DatasetError(f"{path} ({context}) has shape {shape}; a 3D volume (X, Y, Z) is needed. Split "
                           "multi-channel or time series files into one volume per file.")
    return shape


def _check_readable(files: Sequence[Path], context: str) -> None:
    for f in files:
        if _is_nifti(f):
            _nifti_shape(f, context)
        else:
            _image_size(f, context)


# --- class folders ---------------------------------------------------------------------------------------
def _class_folders(root: Path, classes: Sequence[str] | None) -> UserData:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = {d.name: sorted(p for p in d.rglob("*") if p.is_file() and _is_image(p) and not p.name.startswith("."))
             for d in dirs}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise DatasetError(f"{root}: class folder(s) {', '.join(str(root / e) for e in empty)} hold no image "
                           f"({'/'.join(IMAGE_EXTENSIONS)}). Add images to them or remove the folders.")
    names = tuple(classes) if classes is not None else tuple(sorted(found))
    extra = sorted(set(found) - set(names))
    if extra:
        raise DatasetError(f"{root}: folder(s) {extra} are not among the classes {list(names)} (those of the "
                           "training data). Rename or remove them, or fine-tune on data with these classes.")
    missing = [c for c in names if c not in found]
    if missing and classes is None:
        raise DatasetError(f"{root}: no images for class(es) {missing}.")
    if len(names) < 2:
        raise DatasetError(f"{root}: classification needs at least 2 class folders, found {list(found)}. "
                           "Lay the data out as DIR/<class>/<image>, one folder per class.")
    files, labels = [], []
    for i, c in enumerate(names):
        for f in found.get(c, []):
            files.append(f)
            labels.append(i)
    _check_readable(files, "class-folders")
    return UserData("class-folders", "classification", 2, tuple(files), np.asarray(labels, dtype=np.int64),
                    names, root)


# --- CSV ---------------------------------------------------------------------------------------------------
def _resolve_file(value: str, bases: Sequence[Path], row: int, csv_path: Path) -> Path:
    raw = Path(value.strip())
    candidates: list[Path] = []
    for base in ([Path()] if raw.is_absolute() else bases):
        p = base / raw
        candidates.append(p)
        if not p.suffix or not (p.name.lower().endswith(NIFTI_EXTENSIONS) or _is_image(p)):
            candidates += [p.with_name(p.name + ext) for ext in (*IMAGE_EXTENSIONS, *NIFTI_EXTENSIONS)]
            candidates += [p.with_name(p.name + ext.upper()) for ext in IMAGE_EXTENSIONS]
    hits = [c for c in candidates if c.is_file()]
    if not hits:
        where = ", ".join(str(b) for b in bases)
        raise DatasetError(f"{csv_path}, row {row}: file {value!r} not found (looked in {where}). Fix the path "
                           "(relative to the CSV's folder, or pass --image-root DIR), or remove the row.")
    return hits[0]


def _read_csv(path: Path, classes: Sequence[str] | None, image_root: Path | None) -> UserData:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not a readable CSV file ({err}).") from err
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DatasetError(f"{path}: expected a header line and one row per sample (e.g. 'path,label'), "
                           f"found {len(rows)} line(s).")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    p_col = next((lower.index(c) for c in _PATH_COLUMNS if c in lower), 0)
    others = [i for i in range(len(header)) if i != p_col]
    if not others:
        raise DatasetError(f"{path}: only one column ({header}); add a label column: 'path,label'.")
    bases = [image_root] if image_root is not None else [path.parent, path.parent / "images"]
    body = rows[1:]
    for n, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise DatasetError(f"{path}, row {n}: {len(r)} fields, but the header has {len(header)} "
                               f"({','.join(header)}). Fix the row (quote fields holding commas).")
    files = [_resolve_file(r[p_col], bases, n, path) for n, r in enumerate(body, start=2)]
    dims = {3 if _is_nifti(f) else 2 for f in files}
    if len(dims) > 1:
        raise DatasetError(f"{path} mixes NIfTI volumes and 2D images; put them in separate CSV files.")
    spatial_dims = dims.pop()
    l_col = next((lower.index(c) for c in _LABEL_COLUMNS if c in lower), None)
    onehot = l_col is None and len(others) > 1 and all(r[i].strip() in ("0", "1") for r in body for i in others)
    if onehot:
        names = tuple(header[i] for i in others)
        labels = np.asarray([[int(r[i]) for i in others] for r in body], dtype=np.int64)
        kind, fmt = "multilabel", "csv-multilabel"
        if classes is not None and tuple(classes) != names:
            raise DatasetError(f"{path}: label columns {list(names)} differ from the training data's "
                               f"{list(classes)}. Use the same columns in the same order.")
    else:
        col = others[0] if l_col is None else l_col
        values = [r[col].strip() for r in body]
        for n, v in enumerate(values, start=2):
            if not v:
                raise DatasetError(f"{path}, row {n}: empty label for {files[n - 2]}. Fill it in or remove the row.")
        multi = any(s in v for v in values for s in _MULTI_SEPARATORS)
        if multi:
            sets = [{t.strip() for t in v.replace(";", "|").split("|") if t.strip()} for v in values]
            names = tuple(classes) if classes is not None else tuple(sorted(set().union(*sets)))
            labels = np.zeros((len(values), len(names)), dtype=np.int64)
            for n, s in enumerate(sets):
                for t in s:
                    if t not in names:
                        raise DatasetError(f"{path}, row {n + 2}: label {t!r} is not one of the classes "
                                           f"{list(names)}. Fix the label or remove the row.")
                    labels[n, names.index(t)] = 1
            kind, fmt = "multilabel", "csv-multilabel"
        else:
            names = tuple(classes) if classes is not None else tuple(sorted(set(values)))
            bad = [(n, v) for n, v in enumerate(values, start=2) if v not in names]
            if bad:
                n, v = bad[0]
                raise DatasetError(f"{path}, row {n}: label {v!r} is not one of the classes {list(names)} "
                                   f"({len(bad)} such row(s)). Fix the label or remove the row.")
            labels = np.asarray([names.index(v) for v in values], dtype=np.int64)
            kind, fmt = "classification", "csv" if spatial_dims == 2 else "nifti-csv"
    if kind == "classification" and classes is None:
        if len(names) < 2:
            raise DatasetError(f"{path}: every row has the label {names[0]!r}; classification needs at least "
                               "2 classes.")
    if kind == "multilabel":
        empty = [c for i, c in enumerate(names) if labels[:, i].sum() == 0]
        if empty and classes is None:
            raise DatasetError(f"{path}: label column(s) {empty} are never 1; remove them or add positive rows.")
    dup = len(set(files)) != len(files)
    if dup:
        seen: set[Path] = set()
        first = next(f for f in files if f in seen or seen.add(f))  # type: ignore[func-returns-value]
        raise DatasetError(f"{path}: {first} is listed more than once. Keep one row per file.")
    _check_readable(files, f"listed in {path.name}")
    return UserData(fmt, kind, spatial_dims, tuple(files), labels, names, path)


# --- image / mask pairs --------------------------------------------------------------------------------------
def _pairs(root: Path, images_dir: Path, masks_dir: Path) -> UserData:
    def listing(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                      and (_is_image(p) or _is_nifti(p)))

    images, masks = listing(images_dir), listing(masks_dir)
    if not images:
        raise DatasetError(f"{images_dir} holds no image or NIfTI file.")
    by_stem: dict[str, Path] = {}
    for m in masks:
        key = _stem(m)
        for suffix in ("_mask", "_seg", "_label", "_manual1", "_gt"):
            if key.endswith(suffix):
                key = key[: -len(suffix)]
        by_stem.setdefault(key, m)
    missing = [im for im in images if _stem(im) not in by_stem]
    if missing:
        shown = ", ".join(im.name for im in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(f"{masks_dir}: no mask for {len(missing)} image(s) of {images_dir}: {shown}. Add a mask "
                           "with the same file stem (e.g. images/a.png -> masks/a.png, or a_mask.png), or move "
                           "those images out of the folder.")
    pair_masks = [by_stem[_stem(im)] for im in images]
    dims = {3 if _is_nifti(f) else 2 for f in images}
    if len(dims) > 1:
        raise DatasetError(f"{images_dir} mixes NIfTI volumes and 2D images; keep one kind per folder.")
    spatial_dims = dims.pop()
    for im, m in zip(images, pair_masks, strict=True):
        if spatial_dims == 2:
            a, b = _image_size(im, "image"), _image_size(m, "mask")
        else:
            a, b = _nifti_shape(im, "image"), _nifti_shape(m, "label map")
        if a != b:
            raise DatasetError(f"{m} has size {b} but its image {im} has size {a}. Masks must match their "
                               "images pixel for pixel: resize the mask with nearest-neighbour interpolation "
                               "or export it again.")
    fmt = "image-mask-folders" if spatial_dims == 2 else "nifti-pairs"
    return UserData(fmt, "segmentation", spatial_dims, tuple(images), None, ("foreground",), root, tuple(pair_masks))


def open_user_data(path: str | os.PathLike[str], *, classes: Sequence[str] | None = None,
                   masks: str | os.PathLike[str] | None = None,
                   image_root: str | os.PathLike[str] | None = None) -> UserData:
    """Detect the layout of ``path`` (see the module docstring), check every file, return the spec.

    Args:
        path: a class-folder directory, a CSV file, or a directory with ``images/`` + ``masks/``.
        classes: the class names to expect (those of the training data, for a validation set).
        masks: the mask / label-map folder when ``path`` is the image folder itself.
        image_root: where the paths of a CSV are relative to (default: the CSV's folder).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p} does not exist. Pass a class-folder directory, a CSV of path,label, or a "
                           "directory with images/ and masks/.")
    if masks is not None:
        m = Path(masks).expanduser()
        if not m.is_dir():
            raise DatasetError(f"--masks {m} is not a directory.")
        if not p.is_dir():
            raise DatasetError(f"with --masks, --data must be the image folder; {p} is a file.")
        return _pairs(p, p, m)
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".tsv", ".txt"):
            raise DatasetError(f"{p} is a file but not a CSV; pass a CSV of path,label or a directory.")
        return _read_csv(p, classes, Path(image_root).expanduser() if image_root else None)
    sub = {d.name: d for d in p.iterdir() if d.is_dir()}
    img_dir = next((sub[n] for n in _IMAGE_DIRS if n in sub), None)
    mask_dir = next((sub[n] for n in _MASK_DIRS if n in sub), None)
    if img_dir is not None and mask_dir is not None:
        return _pairs(p, img_dir, mask_dir)
    csvs = sorted(p.glob("*.csv"))
    if img_dir is not None and len(csvs) == 1:
        return _read_csv(csvs[0], classes, Path(image_root).expanduser() if image_root else None)
    if img_dir is not None:
        raise DatasetError(f"{p} has {img_dir.name}/ but no masks/ folder and no single CSV of labels. Add "
                           "masks/ (segmentation), a labels.csv (classification), or pass --masks DIR.")
    return _class_folders(p, classes)


def train_val_split(data: UserData, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split into (train, val) indices, stratified by class (first label for multi-label);
    every class keeps at least one training and, when it has two samples, one validation sample."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {val_fraction}")
    n = len(data)
    if data.labels is None:
        perm = np.random.default_rng(seed).permutation(n)
        k = min(n - 1, max(1, round(val_fraction * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    strata = data.labels if data.labels.ndim == 1 else data.labels.argmax(1)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == c))
        k = min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val += idx[:k].tolist()
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(n), val_idx), val_idx


# --- readers -------------------------------------------------------------------------------------------------
def _decode(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(f"{path} cannot be decoded ({err}). Replace the file, or remove it from the data.") from err


def load_images(files: Sequence[Path], size: int) -> torch.Tensor:
    """uint8 ``(N, 3, size, size)``: each image's shorter side resized to ``size`` (antialiased), centre crop."""
    out = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    for i, f in enumerate(files):
        im = _decode(Path(f), "RGB")
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
        out[i] = torch.from_numpy(np.array(im)).permute(2, 0, 1)
    return out


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(width, height)`` of an image resized by ``scale`` (``zoo finetune --scale``; ``zoo predict`` the same)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def load_image_mask_pairs(data: UserData, scale: float = 1.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """2D segmentation: uint8 ``(H, W, 3)`` images and bool ``(H, W)`` masks (any foreground > 0), each
    pair at its own size, optionally rescaled by ``scale`` (images bilinear, masks nearest)."""
    if data.masks is None or data.spatial_dims != 2:
        raise ValueError(f"{data.source} is not a 2D image/mask data set")
    images, masks = [], []
    for f, m in zip(data.files, data.masks, strict=True):
        im, mk = _decode(f, "RGB"), _decode(m, "L")
        if scale != 1.0:
            size = scaled_size(im.size, scale)
            im, mk = im.resize(size, Image.BILINEAR), mk.resize(size, Image.NEAREST)
        images.append(np.asarray(im))
        masks.append(np.asarray(mk) > 0)
    return images, masks


def _read_nifti(path: Path, spacing: Sequence[float] | None, label: bool = False) -> tuple[torch.Tensor, tuple]:
    """RAS-reoriented float volume (trilinear, or nearest for label maps) at ``spacing`` mm."""
    import nibabel as nib

    from .ct import resample

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        arr = np.asanyarray(img.dataobj)
    except Exception as err:
        raise DatasetError(f"{path} cannot be read ({type(err).__name__}: {err}). Replace the file, or remove "
                           "it from the data.") from err
    arr = arr[..., 0] if arr.ndim == 4 else arr
    vol = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    native = tuple(float(z) for z in img.header.get_zooms()[:3])
    if spacing is not None:
        vol = resample(vol, native, spacing, mode="nearest" if label else "trilinear")
    return vol, native


def _window_uint8(vol: torch.Tensor, hu_window: tuple[float, float] | None) -> torch.Tensor:
    if hu_window is None:  # per-volume min-max
        lo, hi = float(vol.min()), float(vol.max())
    else:
        lo, hi = hu_window
    return ((vol - lo) / max(hi - lo, 1e-6)).clamp(0, 1).mul(255).round().to(torch.uint8)


def load_volumes(files: Sequence[Path], size: Sequence[int], spacing: Sequence[float] | None,
                 hu_window: tuple[float, float] | None = (-1000.0, 1000.0)) -> torch.Tensor:
    """3D classification: uint8 ``(N, 1, *size)``. Each volume is reoriented to RAS, resampled to
    ``spacing`` mm, windowed to [0, 255], then the WHOLE volume is resized (trilinear) to ``size``:
    nothing is cropped away."""
    out = torch.empty((len(files), 1, *size), dtype=torch.uint8)
    for i, f in enumerate(files):
        vol, _ = _read_nifti(Path(f), spacing)
        vol = _window_uint8(vol, hu_window).float()
        out[i, 0] = F.interpolate(vol[None, None], size=tuple(size), mode="trilinear",
                                  align_corners=False)[0, 0].round().to(torch.uint8)
    return out


def load_volume_pairs(data: UserData, spacing: Sequence[float] | None,
                      hu_window: tuple[float, float] | None = (-1000.0, 1000.0)) -> tuple[
                          list[torch.Tensor], list[torch.Tensor]]:
    """3D segmentation: uint8 volumes ``(X, Y, Z)`` (RAS, ``spacing`` mm, windowed) and int64 label maps
    (nearest-neighbour resampled, same shape), each pair at its own size."""
    if data.masks is None or data.spatial_dims != 3:
        raise ValueError(f"{data.source} is not a 3D image/label data set")
    vols, labels = [], []
    for f, m in zip(data.files, data.masks, strict=True):
        v, _ = _read_nifti(f, spacing)
        lab, _ = _read_nifti(m, spacing, label=True)
        vols.append(_window_uint8(v, hu_window))
        labels.append(lab.round().long())
    return vols, labels
