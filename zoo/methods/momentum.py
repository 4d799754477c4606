"""Momentum (EMA) encoders, their schedule, the feature queue and MoCo's shuffle-BN, one home.

A method declares its momentum pairs as ``momentum_pairs = (("backbone", "backbone_k"), ...)``
(online sub-module, target sub-module; as solo-learn does); :func:`update_momentum_pairs` moves every
target towards its online module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ._dist import concat_all_gather, is_distributed

__all__ = [
    "momentum_copy", "momentum_update_", "update_momentum_pairs", "cosine_momentum", "FeatureQueue",
    "shuffle_bn_forward",
]


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


def update_momentum_pairs(owner: nn.Module, pairs: Sequence[tuple[str, str]], momentum: float) -> None:
    """EMA update of every ``(online, target)`` sub-module pair of ``owner`` (attribute names)."""
    for online, target in pairs:
        momentum_update_(getattr(owner, online), getattr(owner, target), momentum)


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
