"""SWCL (Yap & Ng, 2021): semi-weakly supervised contrastive learning on labelled fundus patches.

The training samples come from :mod:`zoo.methods._swcl_data` (built by :meth:`SWCL.build_dataset`
and cached on disk): a semi-supervised pseudo-labeller scores five patches of every photo, and the
paper's label scheme ``"all"`` gives each patch a set of labels (its own, a left/right agreement
label, a position-abnormality label; see that module). Each sample is the left- and right-eye patch
of a patient at one position; :meth:`SWCL.forward` makes 2 augmented views of each patch (4 images
per sample) and applies the multi-label supervised contrastive loss :func:`supcon_loss` (T = 0.1)
to the L2-normalised projections ``GAP -> Linear(C, C) -> ReLU -> Linear(C, 128)``. Under DDP the
projections (with gradients) and labels of every rank are gathered, so every image of the global
batch is a positive or negative of every anchor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..data.augment import Augment2DConfig
from ..meta.catalog._common import SWCL_FUNDUS
from ..models.builder import create_model
from ._common import ViewMaker2D
from ._swcl_data import SWCLDataConfig, build_patch_dataset
from .base import DataSpec, SSLMethod
from .heads import projection_mlp
from .losses import SUPCON_WEIGHTINGS as WEIGHTINGS
from .losses import label_overlap, supcon_loss

if TYPE_CHECKING:
    from torch.utils.data import Dataset


__all__ = ["SWCL", "supcon_loss", "label_overlap"]

class SWCL(SSLMethod):
    """SWCL objective on the patch set of :func:`~zoo.methods._swcl_data.build_patch_dataset`.

    Args:
        arch: a 2D zoo architecture (``resnet18``, ``resnetv2_50x1_bit``).
        proj_dim: output size of the projection head (128).
        temperature: SupCon temperature (0.1).
        weighting: ``"any"`` (positives share >= 1 label, SupCon's rule) or ``"overlap"`` (Jaccard weights).
        aug: augmentation preset (``swcl``: the paper's) or an ``Augment2DConfig``.
        model_kwargs: extra architecture arguments for ``zoo.create_model``.

    The data-stage settings (:class:`~zoo.methods._swcl_data.SWCLDataConfig`: ``image_size``,
    ``labeller_epochs``, ``threshold``, ``label_scheme``, ...) are not hyper-parameters of the objective:
    :meth:`build_dataset` reads them from ``DataSpec.options`` (``zoo pretrain --data-option KEY=VALUE``).
    """

    name: ClassVar[str] = "swcl"
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                        "decay_norm_bias": False}
    data_option_keys: ClassVar[tuple[str, ...]] = tuple(SWCLDataConfig.keys())

    def __init__(
        self,
        arch: str,
        proj_dim: int = 128,
        temperature: float = 0.1,
        weighting: str = "any",
        aug: str | Augment2DConfig = "swcl",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(arch, proj_dim=proj_dim, temperature=temperature, weighting=weighting, aug=aug,
                         model_kwargs=dict(model_kwargs or {}))
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.backbone = create_model(self.arch, num_classes=0, **self.model_kwargs)
        if getattr(self.backbone, "spatial_dims", 2) != 2:
            raise ValueError(f"SWCL is a 2D method; {arch} is not a 2D architecture")
        feat = self.backbone.num_features
        self.projector = projection_mlp(feat, feat, proj_dim)
        self.temperature, self.weighting = temperature, weighting
        self.views = ViewMaker2D(self.arch, aug)
        # the paper normalises with the fundus statistics, whatever the network's default weights use
        self.intensity = SWCL_FUNDUS
        self.views.mean_std = (SWCL_FUNDUS.mean, SWCL_FUNDUS.std)

    @classmethod
    def build_dataset(cls, cfg: DataSpec) -> Dataset:
        """The cached pseudo-labeller and patch stages for ``cfg.data`` (see :mod:`zoo.methods._swcl_data`);
        ``cfg.options`` holds the data settings of :class:`~zoo.methods._swcl_data.SWCLDataConfig`."""
        unknown = sorted(set(cfg.options) - set(SWCLDataConfig.keys()))
        if unknown:
            raise ValueError(f"unknown SWCL data setting(s) {unknown}; choose from {sorted(SWCLDataConfig.keys())}")
        return build_patch_dataset(cfg.data, SWCLDataConfig.from_hparams(cfg.options, cfg.img_size))

    def forward(
        self, batch: torch.Tensor | dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        if not isinstance(batch, dict) or "patches" not in batch or "labels" not in batch:
            raise ValueError("SWCL trains on its labelled patch set: give {'patches': (B, 2, 3, P, P), "
                             "'labels': (B, 2, K)} batches (`zoo pretrain --method swcl` builds them).")
        x = batch["patches"].flatten(0, 1)  # (2B, 3, P, P): left and right patch of each sample
        labels = batch["labels"].flatten(0, 1)
        views = torch.cat([self.views(x, generator), self.views(x, generator)])
        z = self.projector(self.backbone(views))
        loss = supcon_loss(z, torch.cat([labels, labels]), self.temperature, self.weighting)
        return {"loss": loss}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}

