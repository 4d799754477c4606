"""MICLe (Azizi et al., ICCV 2021): SimCLR whose positives are two different images of one patient.

Each training item is an image and a partner drawn from the other images of its patient (or the
image itself for a single-image patient, which is then plain SimCLR); both are augmented
independently and NT-Xent runs over the 2N views. Backbone, projection head, temperature and
augmentations are SimCLR's (:class:`~zoo.methods.simclr.SimCLR`). Patients come from the file
names (:mod:`zoo.data.patients`): Kermany chest X-rays and EyePACS fundus photographs (``10_left`` and
``10_right`` are one patient).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import torch

from ..data.datasets import open_dataset
from ..data.pairs import SamePatientPairs
from .base import DataSpec
from .simclr import SimCLR

__all__ = ["MICLe"]

_logger = logging.getLogger(__name__)


class MICLe(SimCLR):
    """MICLe objective; the arguments are :class:`~zoo.methods.simclr.SimCLR`'s.

    ``forward`` takes the dict batches of :meth:`build_dataset` (``{"image", "partner"}``, each
    ``(B, C, H, W)`` in [0, 1]); a plain image tensor has no partners and gives SimCLR's loss.
    """

    name: ClassVar[str] = "micle"

    @classmethod
    def build_dataset(cls, cfg: DataSpec) -> SamePatientPairs:
        """Same-patient pairs over the images of ``cfg.data`` (a class folder, or a fundus folder with ``images/``)."""
        kind = cfg.data_kind
        if kind == "auto" and (Path(cfg.data) / "images").is_dir():
            kind = "fundus"  # EyePACS / DRIVE / HRF layouts: FOV crop and masking as everywhere in zoo
        if kind not in ("auto", "folder", "fundus"):
            raise ValueError(f"MICLe reads image files (their names carry the patient ids); --data-kind {kind} "
                             f"cannot be used: give a folder of images with --data-kind auto, folder or fundus.")
        base = open_dataset(cfg.data, img_size=cfg.img_size, in_chans=cfg.in_chans, kind=kind,
                            workers=max(1, cfg.workers))
        pairs = SamePatientPairs(base, seed=cfg.seed)
        if pairs.num_paired_images == 0:
            _logger.warning("%s: no patient has several images (no file name carries a patient id shared by "
                            "another); MICLe is plain SimCLR on this data", cfg.data)
        return pairs

    def forward(
        self, batch: torch.Tensor | dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        if isinstance(batch, torch.Tensor):
            return super().forward(batch, generator)
        missing = {"image", "partner"} - set(batch)
        if missing:
            raise ValueError(f"MICLe batches hold 'image' and 'partner' (from MICLe.build_dataset); "
                             f"missing {sorted(missing)}")
        return {"loss": self.pair_loss(batch["image"], batch["partner"], generator)}
