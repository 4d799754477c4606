"""BiT ResNetV2-50x1 (weight-standardised convs, GroupNorm, pre-activation): SWCL's second backbone."""

from __future__ import annotations

from functools import partial
from typing import Any

from timm.layers import StdConv2d
from timm.models.resnetv2 import ResNetV2 as _TimmResNetV2

from ..meta.registry import register_model
from ._contract import CheckedInputMixin
from .builder import build_model_with_cfg

__all__ = ["ResNetV2", "resnetv2_50x1_bit"]


class ResNetV2(CheckedInputMixin, _TimmResNetV2):
    """timm's BiT ResNetV2 with SWCL's weight-standardisation epsilon (1e-10) and zoo's input checks."""

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        width_factor: int = 1,
        num_classes: int = 0,
        in_chans: int = 3,
        ws_eps: float = 1e-10,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            layers=list(layers), width_factor=width_factor, num_classes=num_classes, in_chans=in_chans,
            stem_type="fixed", conv_layer=partial(StdConv2d, eps=ws_eps), **kwargs,
        )
        self.in_chans = in_chans
        self.spatial_dims = 2


@register_model
def resnetv2_50x1_bit(pretrained: bool = False, **kwargs: Any) -> ResNetV2:
    """BiT ResNetV2-50x1 (weight-standardised convs, GroupNorm): SWCL's second backbone."""
    return build_model_with_cfg(ResNetV2, "resnetv2_50x1_bit", pretrained, **kwargs)
