"""The small contract every zoo model follows, 2D and 3D alike.

``forward_features(x)`` -> last feature map; ``forward_head(x, pre_logits=False)`` -> pooled features
or logits (or the segmentation output); ``reset_classifier(num_classes)``; ``feature_info`` (a list of
``dict(num_chs, reduction, module)``); ``forward_intermediates(x, indices, intermediates_only=True)``
for ``features_only``. :func:`check_input` gives every model the same clear error for bad input.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ModelInputError", "check_input", "CheckedInputMixin"]


class ModelInputError(ValueError):
    """The input tensor does not match what the model expects."""


def check_input(x: torch.Tensor, in_chans: int, spatial_dims: int, model: str, multiple: int = 1) -> None:
    """Raise :class:`ModelInputError` unless ``x`` is a float (N, C, *spatial) tensor the model accepts."""
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
    if x.shape[1] != in_chans:
        raise ModelInputError(
            f"{model} expects {in_chans} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)}). "
            f"Create the model with in_chans={x.shape[1]} to adapt its first convolution."
        )
    if multiple > 1 and any(s % multiple for s in x.shape[2:]):
        raise ModelInputError(
            f"{model} needs every spatial size divisible by {multiple}, got {tuple(x.shape[2:])}. "
            f"Pad or crop the input."
        )


class CheckedInputMixin:
    """Adds :func:`check_input` to a timm model's ``forward_features`` and ``forward_intermediates``.

    List it before the timm class: ``class ResNet(CheckedInputMixin, timm.models.resnet.ResNet)``.
    """

    in_chans: int
    spatial_dims: int = 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans, self.spatial_dims, type(self).__name__)
        return super().forward_features(x)  # type: ignore[misc]

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        check_input(x, self.in_chans, self.spatial_dims, type(self).__name__)
        return super().forward_intermediates(x, *args, **kwargs)  # type: ignore[misc]
