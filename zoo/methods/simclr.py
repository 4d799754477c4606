"""SimCLR (Chen et al., ICML 2020): two augmented views per image, NT-Xent over the 2N views.

Backbone: any 2D zoo architecture (``create_model(arch, num_classes=0)``); projection head
``Linear-BN-ReLU-Linear`` to 128 dims. Both views go through the backbone in one batch of 2N.
Negatives come from every rank under DDP.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..data.augment import Augment2DConfig
from ..models.builder import create_model
from ._common import ViewMaker2D
from .base import SSLMethod
from .heads import projection_mlp
from .losses import nt_xent

__all__ = ["SimCLR"]


class SimCLR(SSLMethod):
    """SimCLR objective.

    Args:
        arch: a 2D zoo architecture.
        proj_dim: output size of the projection head.
        hidden_dim: hidden size of the projection head (default: the backbone's feature size).
        temperature: NT-Xent temperature (0.5, SimCLR's value for small batches).
        aug: augmentation preset (``simclr``, ``mocov2``, ``pcrl``) or an ``Augment2DConfig``.
        model_kwargs: extra architecture arguments for ``zoo.create_model`` (e.g. ``in_chans``).
    """

    name: ClassVar[str] = "simclr"
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}

    def __init__(
        self,
        arch: str,
        proj_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.5,
        aug: str | Augment2DConfig = "simclr",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(arch, proj_dim=proj_dim, hidden_dim=hidden_dim, temperature=temperature, aug=aug,
                         model_kwargs=dict(model_kwargs or {}))
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.backbone = create_model(self.arch, num_classes=0, **self.model_kwargs)
        if getattr(self.backbone, "spatial_dims", 2) != 2:
            raise ValueError(f"SimCLR is a 2D method; {arch} is not a 2D architecture")
        feat = self.backbone.num_features
        self.projector = projection_mlp(feat, hidden_dim or feat, proj_dim, batch_norm=True)
        self.temperature = temperature
        self.views = ViewMaker2D(self.arch, aug)

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"loss": self.pair_loss(batch, batch, generator)}

    def pair_loss(
        self, first: torch.Tensor, second: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """NT-Xent between one augmented view of each ``first[i]`` and one of each ``second[i]`` (the positives).

        SimCLR passes the same images twice; MICLe passes an image and another image of its patient.
        """
        if first.shape != second.shape:
            raise ValueError(f"pair_loss needs two batches of one shape, got {tuple(first.shape)}, {tuple(second.shape)}")
        n = first.shape[0]
        x = torch.cat([self.views(first, generator), self.views(second, generator)])
        z = self.projector(self.backbone(x))
        return nt_xent(z[:n], z[n:], self.temperature)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
