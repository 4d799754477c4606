"""Encoder-decoder access for the reconstruction methods (PCRL, PCRLv2 3D, Models Genesis).

A method trains a whole U-Net (``pcrl_unet_resnet18``, ``*_unet3d_seg``) but may be asked for an
encoder-only architecture (``pcrl_resnet18``, ``pcrl_unet3d``, ...): it then trains the matching
encoder-decoder and exports only the encoder, under the keys of the requested architecture.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..models.builder import create_model
from ..models.unet2d import UNetResNet
from ..models.unet3d import UNet3D

__all__ = ["ENCODER_TO_UNET", "build_unet", "encode", "decode", "encoder_copy", "export_unet", "head_channels"]

# encoder-only architecture -> the encoder-decoder trained in its place
ENCODER_TO_UNET = {
    "pcrl_resnet18": "pcrl_unet_resnet18",
    "pcrl_unet3d": "pcrl_unet3d_seg",
    "pcrlv2_unet3d": "pcrlv2_unet3d_seg",
    "genesis_unet3d": "genesis_unet3d_seg",
    "pcrl_unet3d_small": "pcrl_unet3d_small_seg",
    "genesis_unet3d_small": "genesis_unet3d_small_seg",
}

_DECODER_2D = ("decoder.", "segmentation_head.")
_DECODER_3D = ("up_tr", "out_tr.")


def build_unet(arch: str, allowed: tuple[str, ...], **model_kwargs: Any) -> nn.Module:
    """The encoder-decoder trained for ``arch`` (one of ``allowed`` or its encoder-only name)."""
    train_arch = ENCODER_TO_UNET.get(arch, arch)
    if train_arch not in allowed:
        choices = sorted(set(allowed) | {k for k, v in ENCODER_TO_UNET.items() if v in allowed})
        raise ValueError(f"architecture {arch!r} is not supported by this method; choose one of {choices}")
    net = create_model(train_arch, **model_kwargs)
    if not isinstance(net, (UNetResNet, UNet3D)):
        raise TypeError(f"{train_arch} built a {type(net).__name__}, expected a U-Net")
    return net


def _decoder_prefixes(net: nn.Module) -> tuple[str, ...]:
    return _DECODER_2D if isinstance(net, UNetResNet) else _DECODER_3D


def head_channels(net: nn.Module) -> int:
    """Channels of the deepest encoder map (512 for ResNet-18 and the width-32 3D U-Net)."""
    return int(net.feature_info[-1]["num_chs"])


def encode(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """All encoder maps, shallow to deep (2D: strides 2..32; 3D: strides 1..8)."""
    return net.forward_intermediates(x, intermediates_only=True)


def decode(net: nn.Module, feats: list[torch.Tensor]) -> torch.Tensor:
    """Decoder + output head from (possibly mixed) encoder maps."""
    if isinstance(net, UNetResNet):
        return net.segmentation_head(net.decoder(feats))
    return net.forward_head(net.forward_decoder(feats))


def encoder_copy(net: nn.Module) -> nn.Module:
    """A frozen deep copy of ``net`` without its decoder and head (a momentum encoder).

    Its parameter names are those of ``net``'s encoder, and ``forward_intermediates`` still works.
    """
    ema = copy.deepcopy(net)
    prefixes = _decoder_prefixes(net)
    for name in list(ema._modules):
        if f"{name}.".startswith(prefixes) or name.startswith(prefixes):
            delattr(ema, name)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


def export_unet(net: nn.Module, arch: str) -> dict[str, torch.Tensor]:
    """``net``'s weights under the keys of ``create_model(arch)`` (encoder only for encoder archs)."""
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if arch not in ENCODER_TO_UNET:
        return sd
    prefixes = _decoder_prefixes(net)
    sd = {k: v for k, v in sd.items() if not k.startswith(prefixes)}
    if isinstance(net, UNetResNet):
        sd = {k.removeprefix("encoder."): v for k, v in sd.items()}
    return sd
