"""Seeded, stratified subsets of a labelled set (torch-free): label fractions and size limits."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_subset"]


def stratified_subset(labels: np.ndarray, fraction: float | None = None, seed: int = 0,
                      size: int | None = None) -> np.ndarray:
    """Sorted indices of a seeded subset keeping each class's share; every class keeps >= 1 sample.

    Give either ``fraction`` (of each class, rounded) or a total ``size`` (split across classes in
    proportion, largest remainders first). The same labels and seed always give the same subset.
    """
    labels = np.asarray(labels).reshape(-1)
    if (fraction is None) == (size is None):
        raise ValueError("give exactly one of fraction and size")
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        take = np.maximum(1, np.round(counts * fraction).astype(np.int64))
    else:
        assert size is not None
        if size < len(classes):
            raise ValueError(f"size {size} is smaller than the number of classes ({len(classes)})")
        if size >= n:
            return np.arange(n)
        exact = counts * size / n
        take = np.maximum(1, np.floor(exact).astype(np.int64))
        for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
            if take.sum() >= size:
                break
            take[i] += 1
        while take.sum() > size:  # the at-least-one rule overshot: trim the largest classes
            take[np.argmax(take)] -= 1
    take = np.minimum(take, counts)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))
