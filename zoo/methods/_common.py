"""Pieces shared by the contrastive objectives (SimCLR, MoCo v2, PCRL, ...).

Projection MLPs, momentum (EMA) encoders, a feature queue, InfoNCE / NT-Xent losses and MoCo's
shuffle-BN. Everything works in one process and under ``torch.distributed`` (DDP via torchrun):
queues are filled with the keys of every rank, NT-Xent uses the negatives of every rank, and
shuffle-BN permutes the batch across ranks as the original MoCo code does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data.augment import (
    CXR_AUG,
    MOCOV2_AUG,
    PCRL_AUG,
    SIMCLR_AUG,
    SWCL_AUG,
    Augment2D,
    Augment2DConfig,
    normalize,
)
from ..meta.registry import get_pretrained_cfg

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


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def projection_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = False,
    last_bn: bool = False,
) -> nn.Sequential:
    """``Linear -> [BN] -> ReLU`` x (num_layers - 1), then ``Linear [-> BN]``.

    SimCLR: ``projection_mlp(512, 512, 128, batch_norm=True)``; MoCo v2 / OpenSelfSup neck:
    ``projection_mlp(C, C, 128)``; PCRL: ``projection_mlp(512, 128, 128)``.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (the momentum / key encoder): no parameter takes gradients."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update_(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA of the parameters: ``target = m * target + (1 - m) * online`` (one fused foreach op).

    Buffers (BN running statistics) are not averaged: the key encoder keeps its own, as in MoCo.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("momentum_update_: online and target modules have different parameter lists")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2`` (base -> 1)."""
    if total_steps <= 0:
        return base
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / total_steps) + 1.0) / 2.0


class FeatureQueue(nn.Module):
    """A FIFO memory of L2-normalised keys, ``(size, dim)``, stored as buffers (saved in checkpoints).

    Initialised with random unit vectors (drawn from ``generator`` if given). :meth:`enqueue` adds
    the keys of every rank under DDP, wrapping around at the end.
    """

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, size: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and dim must be > 0, got size={size}, dim={dim}")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (``(B, dim)``, all ranks gathered) at the pointer and advance it."""
        keys = concat_all_gather(keys.detach()).to(self.queue.dtype)
        n = keys.shape[0]
        if n > self.size:
            keys, n = keys[-self.size:], self.size
        start = int(self.ptr)
        idx = (torch.arange(n, device=keys.device) + start) % self.size
        self.queue.index_copy_(0, idx, keys)
        self.ptr.fill_((start + n) % self.size)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """MoCo's InfoNCE: cross-entropy of the positive ``q . k`` against ``q . negatives`` (mean over B).

    ``q``, ``k``: ``(B, D)`` and ``negatives``: ``(K, D)``, all L2-normalised; ``k`` and
    ``negatives`` carry no gradient in MoCo (pass them detached).
    """
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ negatives.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (no gradient); identity in one process."""
    if not is_distributed():
        return tensor
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the gradient path to each rank."""
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views (negatives from every rank under DDP).

    Each view's positive is the other view of the same image; the other 2N - 2 views are negatives.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent needs two (N, D) tensors of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    n = z1.shape[0]
    offset = dist.get_rank() * n if is_distributed() else 0
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
    total = all1.shape[0]
    queries = torch.cat([z1, z2], dim=0)  # (2n, D)
    keys = torch.cat([all1, all2], dim=0)  # (2N, D)
    logits = queries @ keys.t() / temperature
    idx = torch.arange(n, device=z1.device) + offset
    self_idx = torch.cat([idx, idx + total])
    pos_idx = torch.cat([idx + total, idx])
    rows = torch.arange(2 * n, device=z1.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, self_idx] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, pos_idx)


@torch.no_grad()
def shuffle_bn_forward(
    encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, generator: torch.Generator | None = None, splits: int = 1
) -> torch.Tensor:
    """MoCo's shuffle-BN: run the key ``encoder`` on a randomly permuted batch, then undo the permutation.

    Under DDP the batch is gathered, permuted (the permutation of rank 0 is broadcast) and every rank
    encodes its slice, so BN statistics mix samples of different ranks. In one process the shuffled
    batch is encoded in ``splits`` groups, each with its own BN statistics (``splits=1``: no effect on
    BN, since a single group sees the whole batch anyway). Returns the encoder output in input order.
    """
    if is_distributed():
        rank = dist.get_rank()
        x_all = concat_all_gather(x)
        n_all = x_all.shape[0]
        perm = torch.randperm(n_all, generator=generator).to(x.device)
        dist.broadcast(perm, src=0)
        n = x.shape[0]
        mine = perm[rank * n:(rank + 1) * n]
        out = encoder(x_all[mine])
        out_all = concat_all_gather(out)
        inverse = torch.argsort(perm)
        return out_all[inverse][rank * n:(rank + 1) * n]
    if splits <= 1:
        return encoder(x)
    n = x.shape[0]
    if n % splits:
        raise ValueError(f"shuffle-BN: batch size {n} is not divisible by splits={splits}")
    perm = torch.randperm(n, generator=generator).to(x.device)
    out = torch.cat([encoder(chunk) for chunk in x[perm].chunk(splits)], dim=0)
    return out[torch.argsort(perm)]


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
