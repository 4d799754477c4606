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

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..data.augment import Augment2DConfig
from ..meta.catalog._common import SWCL_FUNDUS
from ..models.builder import create_model
from ._common import ViewMaker2D, concat_all_gather, gather_with_grad, is_distributed, projection_mlp
from ._swcl_data import SWCLDataConfig, build_patch_dataset
from .base import SSLMethod

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..train.pretrain import PretrainConfig

__all__ = ["SWCL", "supcon_loss", "label_overlap"]

WEIGHTINGS = ("any", "overlap")


def label_overlap(labels: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared and total label counts of every pair of label sets: ``labels`` ``(n, K)``, ``other`` ``(N, K)``
    integer ids (``-1`` = none; the ids of one row are distinct). Returns ``(shared (n, N), union (n, N))``."""
    valid_a, valid_b = labels >= 0, other >= 0
    match = labels[:, None, :, None] == other[None, :, None, :]  # (n, N, K, K)
    shared = (match & valid_a[:, None, :, None]).sum(dim=(2, 3))
    union = valid_a.sum(dim=1, keepdim=True) + valid_b.sum(dim=1)[None, :] - shared
    return shared, union


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1, weighting: str = "any") -> torch.Tensor:
    """Multi-label SupCon (Khosla et al. 2020, the "out" form) over the rows of ``z``.

    For anchor i with positives P(i) (every other row sharing at least one label), the loss is
    ``-1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p/T) / sum_{a != i} exp(z_i.z_a/T))``, averaged over
    the anchors that have a positive. ``weighting="overlap"`` weights each positive by the Jaccard
    overlap of the two label sets instead (``sum_p w_ip log(...) / sum_p w_ip``). With one instance
    label per image and two views this is SimCLR's NT-Xent. ``z``: ``(n, D)`` (normalised here);
    ``labels``: ``(n, K)`` ids. Under DDP the rows of every rank are the candidates of each anchor.
    """
    if z.ndim != 2 or labels.ndim != 2 or labels.shape[0] != z.shape[0]:
        raise ValueError(f"supcon_loss needs z (n, D) and labels (n, K), got {tuple(z.shape)}, {tuple(labels.shape)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    keys, key_labels = gather_with_grad(z), concat_all_gather(labels)
    offset = dist.get_rank() * n if is_distributed() else 0
    logits = z @ keys.t() / temperature
    rows = torch.arange(n, device=z.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, rows + offset] = True
    log_prob = logits - logits.masked_fill(self_mask, float("-inf")).logsumexp(dim=1, keepdim=True)
    shared, union = label_overlap(labels, key_labels)
    weight = (shared > 0).to(z.dtype) if weighting == "any" else shared.to(z.dtype) / union.clamp(min=1).to(z.dtype)
    weight = weight.masked_fill(self_mask, 0.0)
    total = weight.sum(dim=1)
    has_pos = total > 0
    if not has_pos.any():
        raise ValueError("supcon_loss: no anchor has a positive; every row needs a label shared with another row")
    per_anchor = -(weight * log_prob.masked_fill(self_mask, 0.0)).sum(dim=1)[has_pos] / total[has_pos]
    return per_anchor.mean()


class SWCL(SSLMethod):
    """SWCL objective on the patch set of :func:`~zoo.methods._swcl_data.build_patch_dataset`.

    Args:
        arch: a 2D zoo architecture (``resnet18``, ``resnetv2_50x1_bit``).
        proj_dim: output size of the projection head (128).
        temperature: SupCon temperature (0.1).
        weighting: ``"any"`` (positives share >= 1 label, SupCon's rule) or ``"overlap"`` (Jaccard weights).
        aug: augmentation preset (``swcl``: the paper's) or an ``Augment2DConfig``.
        model_kwargs: extra architecture arguments for ``zoo.create_model``.
        data_hparams: the data-stage settings of :class:`~zoo.methods._swcl_data.SWCLDataConfig`
            (``image_size``, ``labeller_epochs``, ``threshold``, ``label_scheme``, ...); they are used by
            :meth:`build_dataset` and only recorded here.
    """

    name: ClassVar[str] = "swcl"
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                        "decay_norm_bias": False}

    def __init__(
        self,
        arch: str,
        proj_dim: int = 128,
        temperature: float = 0.1,
        weighting: str = "any",
        aug: str | Augment2DConfig = "swcl",
        model_kwargs: dict[str, Any] | None = None,
        **data_hparams: Any,
    ) -> None:
        unknown = sorted(set(data_hparams) - set(SWCLDataConfig.keys()))
        if unknown:
            raise ValueError(f"unknown SWCL hyper-parameter(s) {unknown}; choose from {sorted(_hparam_names())}")
        super().__init__(arch, proj_dim=proj_dim, temperature=temperature, weighting=weighting, aug=aug,
                         model_kwargs=dict(model_kwargs or {}), **data_hparams)
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
    def build_dataset(cls, cfg: PretrainConfig) -> Dataset:
        """The cached pseudo-labeller and patch stages for ``cfg.data`` (see :mod:`zoo.methods._swcl_data`)."""
        unknown = sorted(set(cfg.hparams) - _hparam_names())
        if unknown:
            raise ValueError(f"unknown SWCL hyper-parameter(s) {unknown}; choose from {sorted(_hparam_names())}")
        return build_patch_dataset(cfg.data, SWCLDataConfig.from_hparams(cfg.hparams, cfg.img_size))

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


def _hparam_names() -> set[str]:
    params = inspect.signature(SWCL.__init__).parameters
    return ({k for k, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self", "arch"}) | set(
        SWCLDataConfig.keys())
