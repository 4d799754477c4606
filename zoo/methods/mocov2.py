"""MoCo v2 (Chen et al. 2020), as used by HPT / OpenSelfSup: momentum encoder, queue, InfoNCE at T = 0.2.

The query encoder is the backbone + a ``Linear-ReLU-Linear`` neck (128 dims); the key encoder is
its exponential moving average (m = 0.999), updated after every optimiser step together with the
queue (65,536 keys, gathered from every rank under DDP). Keys are computed with shuffle-BN: across
ranks under DDP, as in the original code; in one process the shuffled batch is encoded in
``shuffle_bn_splits`` groups so that a query and its key never share BN statistics.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data.augment import Augment2DConfig
from ..models.builder import create_model
from ._common import ViewMaker2D
from ._dist import is_distributed
from .base import SSLMethod
from .heads import projection_mlp
from .losses import info_nce
from .momentum import FeatureQueue, momentum_copy, shuffle_bn_forward, update_momentum_pairs

__all__ = ["MoCoV2"]

_logger = logging.getLogger(__name__)


class MoCoV2(SSLMethod):
    """MoCo v2 objective.

    Args:
        arch: a 2D zoo architecture.
        dim: key / query size.
        hidden_dim: hidden size of the neck (default: the backbone's feature size, as MoCo v2).
        queue_size: number of negative keys (65,536 in MoCo v2 / HPT).
        momentum: EMA momentum of the key encoder.
        temperature: InfoNCE temperature.
        shuffle_bn_splits: groups for shuffle-BN in a single process (1 disables it).
        aug: augmentation preset (``mocov2``, ``simclr``, ``pcrl``) or an ``Augment2DConfig``.
    """

    name: ClassVar[str] = "mocov2"
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}
    momentum_pairs: ClassVar[tuple[tuple[str, str], ...]] = (("backbone", "backbone_k"), ("projector", "projector_k"))

    def __init__(
        self,
        arch: str,
        dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        shuffle_bn_splits: int = 2,
        aug: str | Augment2DConfig = "mocov2",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(arch, dim=dim, hidden_dim=hidden_dim, queue_size=queue_size, momentum=momentum,
                         temperature=temperature, shuffle_bn_splits=shuffle_bn_splits, aug=aug,
                         model_kwargs=dict(model_kwargs or {}))
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.backbone = create_model(self.arch, num_classes=0, **self.model_kwargs)
        if getattr(self.backbone, "spatial_dims", 2) != 2:
            raise ValueError(f"MoCo v2 is a 2D method; {arch} is not a 2D architecture")
        feat = self.backbone.num_features
        self.projector = projection_mlp(feat, hidden_dim or feat, dim)
        self.backbone_k = momentum_copy(self.backbone)
        self.projector_k = momentum_copy(self.projector)
        self.queue = FeatureQueue(dim, queue_size)
        self.momentum, self.temperature = momentum, temperature
        self.shuffle_bn_splits = shuffle_bn_splits
        self.views = ViewMaker2D(self.arch, aug)
        self._keys: torch.Tensor | None = None
        self._warned_odd = False

    def _key(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector_k(self.backbone_k(x))

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        x_q = self.views(batch, generator)
        x_k = self.views(batch, generator)
        q = F.normalize(self.projector(self.backbone(x_q)), dim=1)
        splits = self.shuffle_bn_splits
        if not is_distributed() and splits > 1 and batch.shape[0] % splits:
            if not self._warned_odd:
                _logger.warning("MoCo v2: batch %d not divisible by shuffle_bn_splits=%d; shuffle-BN is off",
                                batch.shape[0], splits)
                self._warned_odd = True
            splits = 1
        with torch.no_grad():
            k = F.normalize(shuffle_bn_forward(self._key, x_k, generator, splits), dim=1)
        loss = info_nce(q, k, self.queue.queue.detach(), self.temperature)
        if self.training:
            self._keys = k
        return {"loss": loss}

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the key encoder, then the batch's keys enter the queue."""
        update_momentum_pairs(self, self.momentum_pairs, self.momentum)
        if self._keys is not None:
            self.queue.enqueue(self._keys)
            self._keys = None

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
