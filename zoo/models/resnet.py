"""2D ResNet-18/50 networks (timm's ResNet, torchvision key names); their weights are tags (``resnet18.pcrl_kermany64``)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.resnet import ResNet as _TimmResNet

from ..meta.registry import register_model
from ._contract import CheckedInputMixin
from .builder import build_model_with_cfg

__all__ = ["ResNet", "resnet18", "resnet50"]

_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(CheckedInputMixin, _TimmResNet):
    """timm's ResNet (same keys as torchvision's) with zoo's input checks.

    Args:
        depth: 18, 34 or 50.
        num_classes: classes of the ``fc`` head; 0 returns pooled features.
        in_chans: input channels.
    """

    def __init__(self, depth: int = 18, num_classes: int = 0, in_chans: int = 3, **kwargs: Any) -> None:
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        block, layers = _DEPTHS[depth]
        super().__init__(block=block, layers=layers, num_classes=num_classes, in_chans=in_chans, **kwargs)
        self.in_chans = in_chans
        self.spatial_dims = 2


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: ResNet) -> dict[str, torch.Tensor]:
    """Take the encoder of a PCRL 2D U-Net checkpoint (``encoder.*`` keys; decoder and head dropped)."""
    if not any(k.startswith("encoder.") for k in state_dict):
        return state_dict
    return {k.removeprefix("encoder."): v for k, v in state_dict.items()
            if not k.startswith(("decoder.", "segmentation_head."))}


def _create(name: str, pretrained: bool, **kwargs: Any) -> ResNet:
    return build_model_with_cfg(ResNet, name, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 (timm's, torchvision key names): the 2D backbone of PCRL, PCRLv2, SWCL, SimCLR, MoCo v2, MICLe."""
    return _create("resnet18", pretrained, **kwargs)


@register_model
def resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 (timm's, torchvision key names): the MoCo v2 / HPT backbone."""
    return _create("resnet50", pretrained, **kwargs)
