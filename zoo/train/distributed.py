"""One process, or DDP under ``torchrun`` (gloo on CPU, nccl on GPU): the process group and its collectives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "setup_distributed", "all_mean", "broadcast_from_main"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    """``device``: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available); nccl on CUDA, gloo on CPU."""
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch; use --device cpu (or leave it unset).")
    cuda = torch.cuda.is_available() if device is None else device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=torch.device("cuda") if cuda else torch.device("cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, owns_group=owns)


def all_mean(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of ``values`` over the ranks (``values`` itself in one process)."""
    if d.world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= d.world
    return values


def broadcast_from_main(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` (any picklable value) on every rank; ``obj`` itself in one process."""
    if d.world <= 1:
        return obj
    box = [obj if d.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
