"""The contrastive and similarity losses, one home (SimCLR's NT-Xent, MoCo's InfoNCE, SupCon, SimSiam's
negative cosine). Every loss works in one process and under ``torch.distributed`` (negatives of every rank)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..data.augment import no_autocast
from ._dist import concat_all_gather, gather_with_grad, is_distributed

__all__ = ["fp32_similarity", "info_nce", "nt_xent", "supcon_loss", "label_overlap", "symmetric_cosine", "SUPCON_WEIGHTINGS"]

SUPCON_WEIGHTINGS = ("any", "overlap")


def fp32_similarity(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a loss on float32 inputs with autocast off: similarities divided by a temperature and
    exponentiated must not be rounded to bf16/fp16 (the projections may come from an autocast forward).
    An fp32 run is unchanged bit for bit (``.float()`` of a float32 tensor is the tensor itself)."""

    @no_autocast
    def wrapper(*args: object, **kwargs: object) -> torch.Tensor:
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
    return wrapper


@fp32_similarity
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


@fp32_similarity
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
    if weighting not in SUPCON_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {SUPCON_WEIGHTINGS}, got {weighting!r}")
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


def symmetric_cosine(
    a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """SimSiam's loss between two ``(projection, prediction)`` pairs, stop-gradient on projections."""
    return -0.5 * (
        F.cosine_similarity(a[1], b[0].detach(), dim=1).mean()
        + F.cosine_similarity(b[1], a[0].detach(), dim=1).mean()
    )
