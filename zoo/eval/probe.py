"""Multinomial logistic regression on frozen features (the linear probe), with scikit-learn.

Features are standardised with the training mean and std; the L2 strength is chosen by stratified
k-fold cross-validation on the labelled training subset only (held-out log-loss), then the model is
refitted on all of it. The solver is scikit-learn's ``LogisticRegression(solver="lbfgs")``; zoo 0.2 ran
the same job with a hand-written torch L-BFGS, and ``benchmarks/libraries.py`` measured both side by side
(same L2 chosen, same test AUC to 4 decimals, 2.4-15x faster; README "Hand-written vs libraries").

zoo's ``l2`` is the strength of ``mean CE + l2/2 |W|^2`` over a K-column softmax (bias unpenalised), so
the grid means the same whatever the number of samples. scikit-learn minimises ``C sum CE + 1/2 |w|^2``:
``C = 1 / (l2 n)`` for K > 2; for K = 2 it fits the one logit ``v = w1 - w0``, and the softmax optimum is
``w1 = -w0 = v/2`` (penalty ``l2/4 |v|^2``), so ``C = 2 / (l2 n)``.

The fit runs on one BLAS / torch thread by default (``threads=1``), whatever the process's setting: its
matrices (a few hundred to a few thousand samples x at most 2,048 features) are too small for threads
to pay, and on a shared machine waiting threads made a 200-sample probe 4-14x slower at 2 threads than
at 1 (README "Evaluation"). The thread counts are restored afterwards, so feature extraction keeps the
``--threads`` setting. Deterministic for given inputs.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["LogisticRegression", "L2_GRID", "torch_threads", "stratified_folds"]

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


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """At most ``n`` torch and BLAS / OpenMP threads inside the block (``None``: unchanged)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with torch_threads(n), threadpool_limits(limits=max(1, n)):
        yield


def stratified_folds(y: np.ndarray, k: int) -> list[np.ndarray]:
    """Stratified fold indices: each class's samples dealt round-robin (in order) across ``k`` folds."""
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
        max_iter: L-BFGS iterations per fit (a fit that stops there is counted in ``unconverged`` and logged).
            200, as zoo 0.2's hand-written probe: on real, strongly correlated features the smallest L2
            strengths converge slowly (RetinaMNIST features at 1,000 iterations: 12x the time for the same
            chosen L2), and those strengths are not the ones cross-validation picks.
        tol: L-BFGS tolerance.
        threads: at most this many BLAS / torch threads while fitting and predicting (1; ``None``: the
            process's).

    After ``fit``: ``l2`` (chosen strength), ``mean`` / ``std`` (standardisation, float64 arrays) and
    ``weight`` ``(D, K)`` / ``bias`` ``(K,)`` of the softmax on standardised features (for 2 classes the
    symmetric pair ``-v/2, v/2`` equivalent to scikit-learn's single logit).
    """

    def __init__(self, num_classes: int, l2_grid: Sequence[float] = L2_GRID, folds: int = 3,
                 max_iter: int = 200, tol: float = 1e-6, threads: int | None = 1) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.l2_grid = tuple(l2_grid)
        self.folds = folds
        self.max_iter = max_iter
        self.tol = tol
        self.threads = threads
        self.l2: float | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.weight: np.ndarray | None = None  # (D, K), on standardised features
        self.bias: np.ndarray | None = None
        self.unconverged = 0  # fits that stopped at max_iter

    def _fit(self, x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
        """``(weight (D, K), bias (K,))`` of one penalised fit on standardised ``x``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression as _Sklearn

        present = np.unique(y)
        c = (2.0 if len(present) == 2 else 1.0) / (l2 * len(y))
        weight = np.zeros((x.shape[1], self.num_classes))
        bias = np.full(self.num_classes, -np.inf if len(present) < self.num_classes else 0.0)
        if len(present) == 1:  # a fold holding one class: predict it
            bias[present[0]] = 0.0
            return weight, bias
        model = _Sklearn(C=c, solver="lbfgs", max_iter=self.max_iter, tol=self.tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        self.unconverged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        if len(present) == 2:  # one logit v for the larger label: softmax pair (-v/2, v/2)
            v, b = model.coef_[0], model.intercept_[0]
            weight[:, present[0]], weight[:, present[1]] = -v / 2, v / 2
            bias[present[0]], bias[present[1]] = -b / 2, b / 2
        else:
            weight[:, present] = model.coef_.T
            bias[present] = model.intercept_
        return weight, bias

    @staticmethod
    def _log_proba(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        z = x @ weight + bias
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def _select(self, x: np.ndarray, y: np.ndarray) -> float:
        if len(self.l2_grid) == 1:
            return self.l2_grid[0]
        k = min(self.folds, int(np.bincount(y).max()))
        if k < 2:
            return self.l2_grid[len(self.l2_grid) // 2]
        losses = []
        for l2 in self.l2_grid:
            total = 0.0
            for held in stratified_folds(y, k):
                train = np.setdiff1d(np.arange(len(y)), held)
                w, b = self._fit(x[train], y[train], l2)
                logp = self._log_proba(x[held], w, b)[np.arange(len(held)), y[held]]
                total -= float(np.maximum(logp, np.log(1e-15)).sum())  # a class unseen in training: clipped
            losses.append(total / len(y))
        best = self.l2_grid[int(np.argmin(losses))]
        _logger.info("linear probe: held-out log-loss %s -> l2=%g",
                     ", ".join(f"{g:g}:{v:.4f}" for g, v in zip(self.l2_grid, losses, strict=True)), best)
        return best

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogisticRegression:
        """Standardise, choose L2 by cross-validation, refit on everything."""
        y = np.asarray(labels).reshape(-1).astype(np.int64)
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"features must be (N, D) with N={len(y)}, got {x.shape}")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}]")
        if not np.isfinite(x).all():
            raise ValueError("features hold NaN or Inf; the backbone's output is not finite")
        self.unconverged = 0
        with _threads(self.threads):
            self.mean = x.mean(0)
            self.std = np.maximum(x.std(0), 1e-6)
            x = (x - self.mean) / self.std
            self.l2 = self._select(x, y)
            self.weight, self.bias = self._fit(x, y, self.l2)
        if self.unconverged:
            _logger.info("linear probe: %d fit(s) stopped at max_iter=%d", self.unconverged, self.max_iter)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, num_classes)``."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() before predict_proba()")
        with _threads(self.threads):
            x = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
            return np.exp(self._log_proba(x, self.weight, self.bias))

    def folded_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (K, D), bias (K,))`` acting on raw features (the standardisation folded in), float32."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() first")
        w = (self.weight / self.std[:, None]).T
        b = self.bias - ((self.mean / self.std) @ self.weight)
        return torch.from_numpy(np.ascontiguousarray(w)).float(), torch.from_numpy(b).float()
