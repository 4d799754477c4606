"""Evaluation metrics: ROC AUC (scikit-learn's), MedMNIST's macro one-vs-rest AUC, accuracy, and F1 / AUC of a
segmentation inside a region (DRIVE's field-of-view mask).

zoo 0.2 computed the AUC by hand (Mann-Whitney ranks); ``benchmarks/libraries.py`` measured it against
``sklearn.metrics`` on real predictions: identical values (README "Hand-written vs libraries")."""

from __future__ import annotations

import numpy as np

__all__ = [
    "roc_auc",
    "macro_auc_ovr",
    "accuracy",
    "classification_metrics",
    "f1_in_mask",
    "segmentation_metrics",
    "summarize",
]


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary problem (``sklearn.metrics.roc_auc_score``; ties count one half).

    Raises ValueError when ``y_true`` holds a single class (the AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but score has {s.size}")
    if y.all() or not y.any():
        raise ValueError("ROC AUC is undefined when only one class is present in y_true")
    return float(roc_auc_score(y, s))


def macro_auc_ovr(y_true: np.ndarray, prob: np.ndarray) -> float:
    """MedMNIST's AUC: binary tasks score the last column; multi-class tasks average one-vs-rest AUCs."""
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"prob must be (N, num_classes) with N={y.size}, got {p.shape}")
    if p.shape[1] == 2:
        return roc_auc(y == 1, p[:, 1])
    return float(np.mean([roc_auc(y == c, p[:, c]) for c in range(p.shape[1])]))


def accuracy(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Top-1 accuracy of class probabilities/scores ``(N, num_classes)`` (arg-max)."""
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(prob)
    return float(np.mean(p.argmax(axis=1) == y))


def classification_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """``{"auc": macro one-vs-rest AUC, "acc": accuracy}``."""
    return {"auc": macro_auc_ovr(y_true, prob), "acc": accuracy(y_true, prob)}


def f1_in_mask(target: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> float:
    """F1 (Dice) of binary ``pred`` against ``target`` over the pixels where ``mask`` is true."""
    t = np.asarray(target, dtype=bool)
    p = np.asarray(pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"target {t.shape} and pred {p.shape} differ in shape")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        t, p = t[m], p[m]
    tp = np.count_nonzero(t & p)
    denom = np.count_nonzero(t) + np.count_nonzero(p)
    return 1.0 if denom == 0 else float(2.0 * tp / denom)


def segmentation_metrics(target: np.ndarray, prob: np.ndarray, mask: np.ndarray | None = None,
                         threshold: float = 0.5) -> dict[str, float]:
    """``{"f1", "auc"}`` over the pixels inside ``mask``, pooled over all images (DRIVE's convention)."""
    t = np.asarray(target, dtype=bool)
    p = np.asarray(prob, dtype=np.float64)
    m = np.ones_like(t) if mask is None else np.asarray(mask, dtype=bool)
    return {"f1": f1_in_mask(t, p >= threshold, m), "auc": roc_auc(t[m], p[m])}


def summarize(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of per-seed values."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}
