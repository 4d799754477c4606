"""The PCRL 2D encoder-decoder: a ResNet-18 encoder and a U-Net decoder (smp ``Unet`` key names).

Encoder keys are torchvision's under ``encoder.``; decoder blocks are ``decoder.blocks.{i}.conv{1,2}``
(Conv-BN-ReLU, no conv bias) and the head is ``segmentation_head.0`` (Conv 3x3, no activation), as
in segmentation_models_pytorch's ``Unet('resnet18')`` that PCRL builds on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..meta.registry import register_model
from ._contract import check_input
from .builder import build_model_with_cfg
from .resnet import ResNet

__all__ = ["UNetResNet", "unet_resnet18"]

_DECODER_CHS = (256, 128, 64, 32, 16)


def _conv_bn_relu(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Nearest x2 upsample -> concat skip -> two Conv-BN-ReLU."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_chs + skip_chs, out_chs)
        self.conv2 = _conv_bn_relu(out_chs, out_chs)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """Five decoder blocks from the encoder's stride-32 map back to full resolution."""

    def __init__(self, encoder_chs: tuple[int, ...]) -> None:
        super().__init__()
        # encoder_chs: (stem, layer1, layer2, layer3, layer4)
        in_chs = (encoder_chs[4],) + _DECODER_CHS[:-1]
        skip_chs = (encoder_chs[3], encoder_chs[2], encoder_chs[1], encoder_chs[0], 0)
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, _DECODER_CHS, strict=True)
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        skips = feats[-2::-1] + [None]
        x = feats[-1]
        for block, skip in zip(self.blocks, skips, strict=True):
            x = block(x, skip)
        return x


class UNetResNet(nn.Module):
    """ResNet encoder + U-Net decoder + 3x3 conv head.

    Args:
        num_classes: output channels of the head (3 = PCRL's reconstruction; e.g. 1 for vessels).
        in_chans: input channels.
        depth: encoder ResNet depth (18 in PCRL).
    """

    multiple = 32

    def __init__(self, num_classes: int = 3, in_chans: int = 3, depth: int = 18) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.spatial_dims = 2
        self.num_classes = num_classes
        self.encoder = ResNet(depth=depth, num_classes=0, in_chans=in_chans)
        self.encoder.fc = nn.Identity()
        self.feature_info = [dict(info, module=f"encoder.{info['module']}") for info in self.encoder.feature_info]
        self.decoder = UNetDecoder(tuple(info["num_chs"] for info in self.feature_info))
        self.num_features = _DECODER_CHS[-1]
        self.segmentation_head = self._head(num_classes)

    def _head(self, num_classes: int) -> nn.Sequential:
        conv = nn.Conv2d(self.num_features, num_classes, kernel_size=3, padding=1) if num_classes else nn.Identity()
        return nn.Sequential(conv)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.segmentation_head = self._head(num_classes)

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Encoder feature maps (strides 2, 4, 8, 16, 32), as timm's ResNet gives them."""
        check_input(x, self.in_chans, 2, type(self).__name__, multiple=self.multiple)
        return self.encoder.forward_intermediates(x, *args, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output: ``num_features`` channels at the input's resolution."""
        return self.decoder(self.forward_intermediates(x, intermediates_only=True))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.segmentation_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: UNetResNet) -> dict[str, torch.Tensor]:
    """Accept encoder keys without the ``encoder.`` prefix (torchvision names, as PCRL saves them)."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith(("encoder.", "decoder.", "segmentation_head.")):
            out[k] = v
        elif not k.startswith("fc."):
            out[f"encoder.{k}"] = v
    return out


@register_model
def unet_resnet18(pretrained: bool = False, **kwargs: Any) -> UNetResNet:
    """2D U-Net with a ResNet-18 encoder (PCRL's 2D network), for segmentation."""
    return build_model_with_cfg(UNetResNet, "unet_resnet18", pretrained, filter_fn=checkpoint_filter_fn, **kwargs)
