"""View-making shared by the 2D objectives (:class:`ViewMaker2D`, the augmentation presets).

The losses live in :mod:`zoo.methods.losses`, the heads in :mod:`zoo.methods.heads`, momentum encoders,
the queue and shuffle-BN in :mod:`zoo.methods.momentum`; they are re-exported here for older imports.
"""

from __future__ import annotations

import torch

from ..data.augment import (
    CXR_AUG,
    MOCOV2_AUG,
    PCRL_AUG,
    SIMCLR_AUG,
    SWCL_AUG,
    Augment2D,
    Augment2DConfig,
    no_autocast,
    normalize,
)
from ..meta.registry import get_pretrained_cfg
from ._dist import concat_all_gather, gather_with_grad, is_distributed
from .heads import projection_mlp
from .losses import info_nce, nt_xent
from .momentum import FeatureQueue, cosine_momentum, momentum_copy, momentum_update_, shuffle_bn_forward

__all__ = [
    "projection_mlp",
    "momentum_copy",
    "momentum_update_",
    "FeatureQueue",
    "info_nce",
    "nt_xent",
    "is_distributed",
    "concat_all_gather",
    "gather_with_grad",
    "shuffle_bn_forward",
    "cosine_momentum",
    "AUG_PRESETS",
    "ViewMaker2D",
]


AUG_PRESETS: dict[str, Augment2DConfig] = {
    "mocov2": MOCOV2_AUG, "simclr": SIMCLR_AUG, "pcrl": PCRL_AUG, "cxr": CXR_AUG, "swcl": SWCL_AUG,
}


class ViewMaker2D:
    """Random 2D views of a batch in [0, 1], normalised as ``arch``'s pretrained config says.

    ``preset`` is a name in :data:`AUG_PRESETS` or an :class:`~zoo.data.augment.Augment2DConfig`;
    its pixel quantities are rescaled to the batch's image size (recipes are written for 224 px).
    """

    def __init__(self, arch: str, preset: str | Augment2DConfig = "mocov2") -> None:
        if isinstance(preset, str):
            try:
                preset = AUG_PRESETS[preset]
            except KeyError:
                raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {sorted(AUG_PRESETS)}") from None
        self.cfg = preset
        intensity = get_pretrained_cfg(arch).intensity
        self.mean_std = (intensity.mean, intensity.std) if intensity.kind == "mean_std" else None
        self._augs: dict[int, Augment2D] = {}

    @no_autocast
    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        size = batch.shape[-1]
        aug = self._augs.get(size)
        if aug is None:
            aug = self._augs[size] = Augment2D(self.cfg.scaled(size))
        view = aug(batch, generator)
        if self.mean_std is not None:
            mean, std = self.mean_std
            if len(mean) != view.shape[1]:  # a model made with another in_chans: average, as zoo's transforms do
                mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
            view = normalize(view, mean, std)
        return view
