"""Projection and prediction heads (MLPs on pooled features), one home."""

from __future__ import annotations

from torch import nn

__all__ = ["projection_mlp", "prediction_mlp"]


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


def prediction_mlp(dim: int, hidden_dim: int) -> nn.Sequential:
    """SimSiam / PCRLv2's predictor: ``Linear(dim, hidden) -> BN -> ReLU -> Linear(hidden, dim)``."""
    return nn.Sequential(nn.Linear(dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, dim))
