"""Downstream tasks of the evaluation harness: what data, which splits, which metrics, which input.

=====================  ==========================================  ===========  ==================
task                   data (under ``zoo.data.paths.data_root()``)  model        metrics
=====================  ==========================================  ===========  ==================
``kermany_pneumonia``  ``cxr/kermany/{train,test}`` (5,216 / 624)  2D           AUC, ACC
``retinamnist``        ``fundus/retinamnist.npz`` (1,080/120/400)  2D           macro OvR AUC, ACC
``adrenalmnist3d``     ``ct/adrenalmnist3d[_64].npz`` (1,188/98/298) 3D         AUC, ACC
``drive_vessels``      ``fundus/drive`` (20 / 20, FOV masks)       2D U-Net     F1, AUC inside FOV
=====================  ==========================================  ===========  ==================

A task loads uint8 arrays (:class:`Split`) and says how a model's preprocessing applies to them
(:meth:`Task.data_config`); the harness (:mod:`zoo.eval.harness`) does the rest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..data.datasets import ImageFolderDataset, MedMNISTDataset
from ..data.paths import data_path
from ..data.sampling import stratified_subset
from ..data.segmentation import drive_files, load_drive
from ..data.transforms import DataConfig, resolve_data_config
from ..meta.cfg import Intensity, PretrainedCfg

__all__ = ["Split", "Task", "TASKS", "get_task"]


@dataclass(frozen=True)
class Split:
    """uint8 images (``(N, C, *spatial)`` tensors from :mod:`zoo.data.datasets`, or ``(N, H, W, 3)``
    arrays for segmentation), labels (class ids, or bool masks for segmentation), FOV masks, and the
    indices of these samples in the official split (they key the feature cache)."""

    images: torch.Tensor | np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    fov: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Task:
    """One downstream task; subclasses implement :meth:`_load`."""

    name: str
    kind: str  # "classification" | "segmentation"
    spatial_dims: int
    num_classes: int
    metrics: tuple[str, ...]
    default_size: int
    default_epochs: int
    default_batch_size: int
    flip_dims: tuple[int, ...]  # spatial axes flipped at random in fine-tuning (0 = first spatial axis)
    description: str
    anchor_key: str  # which published anchors compare (see zoo.report.anchors)
    classes: tuple[str, ...] = ()  # class names, in label order

    @property
    def main_metric(self) -> str:
        """The headline metric (AUC for classification, F1 for segmentation)."""
        return self.metrics[0]

    def load(self, split: str, limit: int | None = None, img_size: int | None = None) -> Split:
        """The official ``split`` (``train``, ``val``, ``test``); ``limit`` keeps a stratified subset
        of that many samples (seed 0, the same for every run)."""
        return self._load(split, limit, img_size or self.default_size)

    def _load(self, split: str, limit: int | None, img_size: int) -> Split:
        raise NotImplementedError

    def data_config(self, cfg: PretrainedCfg, img_size: int | None = None) -> DataConfig:
        """The checkpoint's preprocessing (``resolve_data_config``) at this task's input size."""
        size = img_size or self.default_size
        in_chans = cfg.in_chans
        return resolve_data_config(cfg, input_size=(in_chans, *([size] * self.spatial_dims)))

    def check_model(self, spatial_dims: int, model_name: str) -> None:
        """Raise ValueError when the model's dimensionality does not fit the task."""
        if spatial_dims != self.spatial_dims:
            hint = "a 3D model such as unet3d_small" if self.spatial_dims == 3 else "a 2D model such as resnet18"
            raise ValueError(f"task {self.name} is {self.spatial_dims}D but {model_name} is {spatial_dims}D; use {hint}")


def _limit_classes(labels: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    return stratified_subset(labels, size=limit, seed=0)


@dataclass(frozen=True)
class _MedMNISTTask(Task):
    files: tuple[tuple[int, str], ...] = ()  # (native size, file under data_root)

    def file_for(self, img_size: int) -> str:
        sizes = dict(self.files)
        if self.spatial_dims == 3:
            if img_size not in sizes:
                raise ValueError(f"{self.name} comes at {sorted(sizes)} voxels per side; use --img-size "
                                 f"{' or '.join(str(s) for s in sorted(sizes))}")
            return sizes[img_size]
        return self.files[0][1]  # 2D: one file, resized by the model's transform

    def _load(self, split: str, limit: int | None, img_size: int) -> Split:
        data = MedMNISTDataset(data_path(*self.file_for(img_size).split("/")), split, spatial_dims=self.spatial_dims)
        labels = data.targets.numpy()
        keep = _limit_classes(labels, limit)
        return Split(data.images[torch.from_numpy(keep)], labels[keep], keep)

    def data_config(self, cfg: PretrainedCfg, img_size: int | None = None) -> DataConfig:
        config = super().data_config(cfg, img_size)
        if self.spatial_dims == 3:
            # AdrenalMNIST3D holds shape masks scaled to [0, 255], not Hounsfield units: feed them in
            # [0, 1] (the range a HU window maps CT to) instead of windowing them.
            config = dataclasses.replace(config, intensity=Intensity(kind="unit", mean=None, std=None))
        return config


@dataclass(frozen=True)
class _FolderTask(Task):
    folder: str = ""
    native_size: int = 224  # decoded at least at this size; the model's transform resizes to the input size

    def _load(self, split: str, limit: int | None, img_size: int) -> Split:
        if split not in ("train", "test"):
            raise ValueError(f"{self.name} has train and test splits only, got {split!r}")
        # decoded at the input size when that is larger (--img-size 384 must not see 224 px images upsampled)
        data = ImageFolderDataset(data_path(*self.folder.split("/"), split), img_size=max(self.native_size, img_size),
                                  cache=True)
        labels = data.targets.numpy()
        keep = _limit_classes(labels, limit)
        assert data.images is not None
        return Split(data.images[torch.from_numpy(keep)], labels[keep], keep)


@dataclass(frozen=True)
class _DriveTask(Task):
    """DRIVE, or any vessel data set laid out like it (``training`` / ``test`` with ``images``, ``1st_manual``
    and ``mask``) under ``fundus/drive`` of the data root, at any image size.

    Images keep the size of the first training image (DRIVE: 584 x 565, native); an image of another size is
    resized to it together with its vessel and FOV masks (bilinear image, nearest masks), so every split
    stacks and the metrics are computed on masks aligned with the predictions.
    """

    folder: str = "fundus/drive"

    def _root(self):  # noqa: ANN202 - a Path
        return data_path(*self.folder.split("/"))

    def native_size(self) -> tuple[int, int]:
        """``(H, W)`` of the first training image: the size every image of the task is brought to."""
        from PIL import Image

        with Image.open(drive_files(self._root(), "train")[0]) as im:
            return im.size[1], im.size[0]

    def _load(self, split: str, limit: int | None, img_size: int) -> Split:
        root = self._root()
        n = len(drive_files(root, split))
        keep = np.arange(n) if limit is None or limit >= n else \
            np.sort(np.random.default_rng(0).permutation(n)[:limit])
        h, w = self.native_size()
        images, masks, fovs = [], [], []
        for i in keep.tolist():
            one = load_drive(root, split, indices=[i])
            images.append(_resize(one.images[0], (h, w), nearest=False))
            masks.append(_resize(one.masks[0], (h, w), nearest=True))
            fovs.append(_resize(one.fov[0], (h, w), nearest=True))
        return Split(np.stack(images), np.stack(masks), keep, np.stack(fovs))

    def data_config(self, cfg: PretrainedCfg, img_size: int | None = None) -> DataConfig:
        # whole images at the task's size (native for DRIVE): the model's intensity preset only; the
        # harness trains on random crops of img_size and predicts whole (padded) images
        return resolve_data_config(cfg, input_size=(cfg.in_chans, *self.native_size()))


def _resize(a: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """An ``(H, W[, 3])`` uint8 image or bool mask at ``size`` (unchanged when it already is)."""
    if a.shape[:2] == size:
        return a
    from PIL import Image

    im = Image.fromarray(a.astype(np.uint8) * (255 if a.dtype == bool else 1))
    out = np.asarray(im.resize((size[1], size[0]), Image.NEAREST if nearest else Image.BILINEAR))
    return out > 127 if a.dtype == bool else out


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _FolderTask(
            name="kermany_pneumonia", kind="classification", spatial_dims=2, num_classes=2,
            metrics=("auc", "acc"), default_size=128, default_epochs=3, default_batch_size=64, flip_dims=(),
            description="paediatric chest X-ray, pneumonia vs normal (Kermany 2018): train 5,216, test 624",
            anchor_key="kermany_pneumonia", classes=("normal", "pneumonia"), folder="cxr/kermany",
        ),
        _MedMNISTTask(
            name="retinamnist", kind="classification", spatial_dims=2, num_classes=5,
            metrics=("auc", "acc"), default_size=28, default_epochs=20, default_batch_size=64, flip_dims=(1,),
            description="fundus DR grade 0-4 (MedMNIST v2 RetinaMNIST, 28 px): train 1,080, val 120, test 400",
            anchor_key="retinamnist", classes=tuple(f"grade {i}" for i in range(5)), files=((28, "fundus/retinamnist.npz"),),
        ),
        _MedMNISTTask(
            name="adrenalmnist3d", kind="classification", spatial_dims=3, num_classes=2,
            metrics=("auc", "acc"), default_size=28, default_epochs=3, default_batch_size=16, flip_dims=(0, 1, 2),
            description="3D adrenal gland shape, normal vs hyperplasia (MedMNIST v2, 28^3 or 64^3): "
            "train 1,188, val 98, test 298",
            anchor_key="adrenalmnist3d", classes=("normal", "hyperplasia"),
            files=((28, "ct/adrenalmnist3d.npz"), (64, "ct/adrenalmnist3d_64.npz")),
        ),
        _DriveTask(
            name="drive_vessels", kind="segmentation", spatial_dims=2, num_classes=1,
            metrics=("f1", "auc"), default_size=128, default_epochs=10, default_batch_size=8, flip_dims=(0, 1),
            description="retinal vessel segmentation (DRIVE): 20 train / 20 test, scored inside the FOV mask",
            anchor_key="drive_vessels", classes=("vessel",),
        ),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; raises ValueError listing the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None
