"""THE learning-rate schedule of zoo: linear warm-up, then a cosine decay to 0 (pretraining and fine-tuning)."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["warmup_cosine", "warmup_cosine_lambda"]


def warmup_cosine(step: int, total: int, warmup: int = 0) -> float:
    """The factor of the peak value at ``step`` (0-based): ``(step + 1) / warmup`` during warm-up, then
    ``0.5 * (1 + cos(pi * t))`` with ``t`` going from 0 to 1 over the remaining steps (1 at the first)."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def warmup_cosine_lambda(total: int, warmup: int = 0) -> Callable[[int], float]:
    """:func:`warmup_cosine` as a ``torch.optim.lr_scheduler.LambdaLR`` factor."""
    def factor(step: int) -> float:
        return warmup_cosine(step, total, warmup)

    return factor
