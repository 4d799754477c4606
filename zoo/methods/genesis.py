"""Models Genesis (Zhou et al., MICCAI 2019 / MedIA 2021): 3D image restoration as self-supervision.

Built from the paper and the facts about the official code (``MrGiovanni/ModelsGenesis``) in
``../shared/docs/upstream.md``. Each cube of the batch (``(B, 1, X, Y, Z)`` in [0, 1]) is

1. flipped (input and target alike): while ``rand < 0.4``, at most 3 times, along a random axis;
2. corrupted, each step with its upstream probability: local pixel shuffling (0.5), the
   non-linear Bezier intensity transformation (0.9), then painting (0.9): in-painting (0.2) or
   out-painting (0.8);

and the U-Net (``genesis_unet3d_seg``: batch-statistics BN, sigmoid output) restores it; the loss
is the MSE between the restoration and the (flipped) original. The transformations are the
vectorised ones of :mod:`zoo.data.augment3d`.

Deviations from the official code, and why:

- The flip picks among the three spatial axes. Upstream draws ``np.flip(x, axis=choice([0, 1, 2]))``
  on a ``(1, X, Y, Z)`` array, so axis 0 is the channel axis (a no-op) and Z is never flipped; the
  paper's intent (flips of the cube) is kept here.
- The transformations run on the batch in the method (upstream: per cube in a Python data
  generator); the random streams differ, the distributions are the same.
- The Bezier curve is sampled with upstream's 100,000 points; ``np.interp`` is reproduced by a
  batched ``searchsorted`` + linear interpolation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data import augment3d as aug3d
from ..meta.registry import get_pretrained_cfg
from ._unet import build_unet, export_unet
from .base import SSLMethod

__all__ = ["ModelsGenesis"]

class ModelsGenesis(SSLMethod):
    """Models Genesis restoration on a 3D U-Net (``unet3d_seg``, ``unet3d_small_seg``), or on an encoder
    network (``unet3d``, ``unet3d_small``: its U-Net is trained and the encoder exported).

    The U-Net normalises with batch statistics (``norm="batch_stats_bn"``, upstream's ``ContBatchNorm3d``)
    unless ``model_kwargs`` say otherwise (``{"norm": "bn"}`` for side-by-side runs on PCRL's U-Net).

    Args:
        arch: the architecture (see above).
        flip_rate, local_rate, nonlinear_rate, paint_rate, inpaint_rate: upstream's probabilities
            (0.4, 0.5, 0.9, 0.9, 0.2; out-painting is ``1 - inpaint_rate``).
        model_kwargs: extra architecture arguments for ``zoo.create_model`` (e.g. ``width``).
    """

    name: ClassVar[str] = "genesis"
    spatial_dims: ClassVar[tuple[int, ...]] = (3,)
    # upstream (pytorch/config.py): SGD lr 1, momentum 0.9, no weight decay (StepLR), batch 6
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 1.0, "momentum": 0.9, "weight_decay": 0.0}

    def __init__(
        self,
        arch: str = "unet3d_seg",
        flip_rate: float = 0.4,
        local_rate: float = 0.5,
        nonlinear_rate: float = 0.9,
        paint_rate: float = 0.9,
        inpaint_rate: float = 0.2,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        rates = dict(flip_rate=flip_rate, local_rate=local_rate, nonlinear_rate=nonlinear_rate,
                     paint_rate=paint_rate, inpaint_rate=inpaint_rate)
        super().__init__(arch, **rates, model_kwargs=dict(model_kwargs or {}))
        for key, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be a probability in [0, 1], got {value}")
        self.rates = rates
        self.net = build_unet(self.arch, "Models Genesis", (3,), skip=True, **self.model_kwargs)
        if "out_act" not in self.model_kwargs:
            self.net.out_act = "sigmoid"  # upstream restores through a sigmoid

    @classmethod
    def network_defaults(cls, network: str) -> dict[str, Any]:
        """Batch-statistics BN, as upstream (3D networks; others are refused by :func:`build_unet`)."""
        return {"norm": "batch_stats_bn"} if get_pretrained_cfg(network).spatial_dims == 3 else {}

    def make_pair(
        self, batch: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(corrupted input, target)`` for a batch of cubes in [0, 1]."""
        if not isinstance(batch, torch.Tensor) or batch.ndim != 5 or not batch.is_floating_point():
            got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"Models Genesis expects float cubes (B, 1, X, Y, Z) in [0, 1], got {got}")
        if any(s % 8 for s in batch.shape[2:]):
            raise ValueError(f"Models Genesis needs every cube size divisible by 8, got {tuple(batch.shape[2:])}")
        g = generator if generator is not None else torch.default_generator
        r = self.rates
        x, y = aug3d.flip_pairs(batch, batch, r["flip_rate"], generator=g)
        x = aug3d.local_pixel_shuffle(x, r["local_rate"], generator=g)
        x = aug3d.nonlinear_intensity(x, r["nonlinear_rate"], generator=g)
        n = x.shape[0]
        paint = torch.rand(n, generator=g) < r["paint_rate"]
        inpaint = torch.rand(n, generator=g) < r["inpaint_rate"]
        x = x.clone()
        for chosen, fn in ((paint & inpaint, aug3d.in_painting), (paint & ~inpaint, aug3d.out_painting)):
            idx = chosen.nonzero().flatten().to(x.device)
            if idx.numel():
                x[idx] = fn(x[idx], generator=g)
        return x, y

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Restoration MSE of one batch; ``out["loss"]`` is back-propagated."""
        x, y = self.make_pair(batch, generator)
        loss = F.mse_loss(self.net(x), y)
        return {"loss": loss, "mse_restore": loss}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The U-Net (or its encoder for an encoder network) under the keys of ``create_model(arch)``."""
        return export_unet(self.net, self.arch)
