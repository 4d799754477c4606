"""The small contract every zoo model follows, 2D and 3D alike.

``forward_features(x)`` -> last feature map; ``forward_head(x, pre_logits=False)`` -> pooled features
or logits (or the segmentation output); ``reset_classifier(num_classes)``; ``feature_info`` (a list of
``dict(num_chs, reduction, module)``); ``forward_intermediates(x, indices, intermediates_only=True)``
for ``features_only``. :func:`check_input` gives every model the same clear error for bad input.

Input dtype rule: the input must have the floating dtype of the model's weights (float32 unless you
called ``model.half()`` / ``.double()`` / ``.to(dtype)``); zoo does not cast silently. Under
``torch.autocast`` any floating input is accepted (autocast does the casting).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ModelInputError", "check_input", "model_dtype", "CheckedInputMixin"]


class ModelInputError(ValueError):
    """The input tensor does not match what the model expects."""


def _autocast_on(x: torch.Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except (TypeError, RuntimeError):  # a device type autocast does not know
        return False


def _tracing() -> bool:
    """True while torch.export / dynamo / TorchScript trace the model (no data-dependent checks then)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_input(
    x: torch.Tensor,
    in_chans: int,
    spatial_dims: int,
    model: str,
    multiple: int = 1,
    *,
    dtype: torch.dtype | None = None,
    min_size: int = 1,
    finite_reason: str | None = None,
) -> None:
    """Raise :class:`ModelInputError` unless ``x`` is a float (N, C, *spatial) tensor the model accepts.

    Args:
        dtype: the model's weight dtype; a floating input of another dtype is refused (outside autocast).
        min_size: the smallest spatial size the network handles (its poolings).
        finite_reason: when set, NaN / Inf inputs are refused and this says why.
    """
    layout = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, X, Y, Z)"
    if not isinstance(x, torch.Tensor):
        raise ModelInputError(f"{model} expects a torch.Tensor {layout}, got {type(x).__name__}")
    if x.ndim != spatial_dims + 2:
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.ndim == spatial_dims + 1 else ""
        raise ModelInputError(
            f"{model} expects a {spatial_dims + 2}D tensor {layout}, got shape {tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ModelInputError(
            f"{model} expects a floating-point tensor, got {x.dtype}. Convert and normalise it first "
            f"(zoo.create_transform(zoo.resolve_data_config(model)))."
        )
    if dtype is not None and x.dtype != dtype and not _autocast_on(x):
        short = str(dtype).removeprefix("torch.")
        raise ModelInputError(
            f"{model} has {short} weights, got a {str(x.dtype).removeprefix('torch.')} input. Cast the input "
            f"with x.to(torch.{short}) (or the model with model.to(x.dtype), or run under torch.autocast)."
        )
    if x.shape[1] != in_chans:
        raise ModelInputError(
            f"{model} expects {in_chans} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)}). "
            f"Create the model with in_chans={x.shape[1]} to adapt its first convolution."
        )
    if any(s < max(min_size, 1) for s in x.shape[2:]):
        raise ModelInputError(
            f"{model} needs every spatial size >= {max(min_size, 1)} (its poolings), got {tuple(x.shape[2:])}. "
            f"Resample or pad the input."
        )
    if multiple > 1 and any(s % multiple for s in x.shape[2:]):
        raise ModelInputError(
            f"{model} needs every spatial size divisible by {multiple}, got {tuple(x.shape[2:])}. "
            f"Pad or crop the input."
        )
    if finite_reason is not None and not _tracing() and not bool(torch.isfinite(x).all()):
        bad = [i for i in range(x.shape[0]) if not bool(torch.isfinite(x[i]).all())]
        raise ModelInputError(
            f"{model} got NaN or Inf values (in sample(s) {bad[:8]}{' ...' if len(bad) > 8 else ''}); "
            f"{finite_reason} Replace them first, e.g. torch.nan_to_num(x)."
        )


def model_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (None when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


class CheckedInputMixin:
    """Adds :func:`check_input` to a timm model's ``forward_features`` and ``forward_intermediates``.

    List it before the timm class: ``class ResNet(CheckedInputMixin, timm.models.resnet.ResNet)``.
    """

    in_chans: int
    spatial_dims: int = 2

    def _check(self, x: torch.Tensor) -> None:
        check_input(x, self.in_chans, self.spatial_dims, type(self).__name__, dtype=model_dtype(self))  # type: ignore[arg-type]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return super().forward_features(x)  # type: ignore[misc]

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self._check(x)
        return super().forward_intermediates(x, *args, **kwargs)  # type: ignore[misc]
