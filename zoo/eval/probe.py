"""Multinomial logistic regression on frozen features (the linear probe), in torch.

Features are standardised with the training mean and std; the L2 strength is chosen by stratified
k-fold cross-validation on the labelled training subset only (held-out log-loss), then the model is
refitted on all of it with full-batch L-BFGS. Deterministic for given inputs.

The fit runs on one torch thread by default (``threads=1``), whatever the process's setting: its
matrices (a few hundred to a few thousand samples x at most 2,048 features) are too small for
intra-op threads to pay, and on a shared machine the waiting threads made a 200-sample probe 4-14x
slower at 2 threads than at 1 (README "Evaluation"). The thread count is restored afterwards, so
feature extraction keeps the ``--threads`` setting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LogisticRegression", "L2_GRID", "torch_threads"]

_logger = logging.getLogger(__name__)
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most ``n`` torch intra-op threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if n is None or n >= before:
        yield
        return
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _folds(y: np.ndarray, k: int) -> list[np.ndarray]:
    """Stratified fold ids: each class's samples dealt round-robin (in order) across k folds."""
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[idx] = np.arange(len(idx)) % k
    return [np.flatnonzero(fold == i) for i in range(k)]


class LogisticRegression:
    """``fit(features, labels)`` then ``predict_proba(features)``.

    Args:
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        l2_grid: candidate L2 strengths (on standardised features); one value skips the search.
        folds: cross-validation folds for the search (fewer when a class has fewer samples).
        max_iter: L-BFGS iterations per fit.
        threads: at most this many torch threads while fitting and predicting (1; ``None``: the process's).
    """

    def __init__(self, num_classes: int, l2_grid: Sequence[float] = L2_GRID, folds: int = 3,
                 max_iter: int = 200, threads: int | None = 1) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.l2_grid = tuple(l2_grid)
        self.folds = folds
        self.max_iter = max_iter
        self.threads = threads
        self.l2: float | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None  # (D, K), on standardised features
        self.bias: torch.Tensor | None = None

    def _select(self, x: torch.Tensor, y: np.ndarray) -> float:
        if len(self.l2_grid) == 1:
            return self.l2_grid[0]
        k = min(self.folds, int(np.bincount(y).max()))
        if k < 2:
            return self.l2_grid[len(self.l2_grid) // 2]
        yt = torch.from_numpy(y)
        losses = []
        for l2 in self.l2_grid:
            total = 0.0
            for held in _folds(y, k):
                train = np.setdiff1d(np.arange(len(y)), held)
                w, b = _fit(x[train], yt[train], self.num_classes, l2, self.max_iter)
                total += float(F.cross_entropy(x[held] @ w + b, yt[held], reduction="sum"))
            losses.append(total / len(y))
        best = self.l2_grid[int(np.argmin(losses))]
        _logger.info("linear probe: held-out log-loss %s -> l2=%g",
                     ", ".join(f"{g:g}:{v:.4f}" for g, v in zip(self.l2_grid, losses, strict=True)), best)
        return best

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogisticRegression:
        """Standardise, choose L2 by cross-validation, refit on everything."""
        y = np.asarray(labels).reshape(-1).astype(np.int64)
        if features.ndim != 2 or len(features) != len(y):
            raise ValueError(f"features must be (N, D) with N={len(y)}, got {features.shape}")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}]")
        with torch_threads(self.threads):
            x = torch.as_tensor(features, dtype=torch.float64)
            self.mean = x.mean(0)
            self.std = x.std(0, unbiased=False).clamp_min(1e-6)
            x = (x - self.mean) / self.std
            self.l2 = self._select(x, y)
            self.weight, self.bias = _fit(x, torch.from_numpy(y), self.num_classes, self.l2, self.max_iter)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, num_classes)``."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() before predict_proba()")
        with torch_threads(self.threads):
            x = (torch.as_tensor(features, dtype=torch.float64) - self.mean) / self.std
            return torch.softmax(x @ self.weight + self.bias, dim=1).numpy()

    def folded_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (K, D), bias (K,))`` acting on raw features (the standardisation folded in)."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() first")
        w = (self.weight / self.std[:, None]).T
        b = self.bias - (self.weight * (self.mean / self.std)[:, None]).sum(0)
        return w.float(), b.float()
