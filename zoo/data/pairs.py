"""Same-patient image pairs (MICLe's positives) over a decoded image dataset.

:class:`SamePatientPairs` wraps an :class:`~zoo.data.datasets.ImageFolderDataset` or
:class:`~zoo.data.datasets.FundusDataset` (anything with ``files`` and ``(image, label)`` items): one
item per image, ``{"image": x_i, "partner": x_j}``, where ``j`` is another image of the same patient
(:func:`zoo.data.patients.group_by_patient` on the file names) or ``i`` itself when the patient has a
single image. The partner of image ``i`` in epoch ``e`` is a function of ``(seed, e, i)`` only, as the
cube positions of :class:`~zoo.data.ct.CTCubeDataset`, so data-loader workers and resumed runs see the
same pairs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from .ct import _sample_seed
from .datasets import DatasetError
from .patients import group_by_patient

__all__ = ["SamePatientPairs"]

_logger = logging.getLogger(__name__)


class SamePatientPairs(Dataset):
    """Pairs of two different images of one patient when it has several, else an image with itself.

    Args:
        base: a dataset of ``(image, label)`` items with a ``files`` list (the file names carry the patient ids).
        seed: base seed of the partner draws (with the epoch set by :meth:`set_epoch`).
    """

    def __init__(self, base: Any, seed: int = 0) -> None:
        files = getattr(base, "files", None)
        if files is None:
            raise DatasetError(
                f"{type(base).__name__} has no file names, so patients cannot be told apart; MICLe needs a "
                f"folder of images (e.g. Kermany cxr/kermany/train or fundus/eyepacs)."
            )
        self.base, self.seed, self.epoch = base, seed, 0
        groups = group_by_patient(files)
        # the other images of each image's patient (empty for single-image patients)
        self._others: list[list[int]] = [[]] * len(files)
        for group in groups:
            for i in group:
                self._others[i] = [j for j in group if j != i]
        self.num_patients = len(groups)
        self.num_multi_image_patients = sum(len(g) > 1 for g in groups)
        self.num_paired_images = sum(len(g) for g in groups if len(g) > 1)
        _logger.info("same-patient pairs: %s", self._pair_stats())

    def set_epoch(self, epoch: int) -> None:
        """Partners depend on the epoch (call before each epoch, as with a DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._others)

    def partner(self, index: int) -> int:
        """The index of the image paired with ``index`` in this epoch (``index`` itself if it has no partner)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        others = self._others[index]
        if not others:
            return index
        g = torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))
        return others[int(torch.randint(len(others), (1,), generator=g))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        j = self.partner(index)
        image = self.base[index][0]
        return {"image": image, "partner": image if j == index else self.base[j][0]}

    def _pair_stats(self) -> str:
        return (f"{len(self):,} images, {self.num_patients:,} patients ({self.num_multi_image_patients:,} with "
                f"several images), {self.num_paired_images:,} images with a same-patient partner")

    def describe(self) -> str:
        """One line for logs and model cards: the images and how many have a same-patient partner."""
        inner = getattr(self.base, "describe", None)
        head = inner() if inner else type(self.base).__name__
        return f"{head}; MICLe pairs: {self._pair_stats()}"
