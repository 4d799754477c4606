"""Encoder-decoder access for the reconstruction methods (PCRL, PCRLv2 3D, Models Genesis).

A method trains a whole U-Net (``unet_resnet18``, ``unet3d_seg``, ``unet3d_small_seg``) but may be asked
for an encoder network (``resnet18``, ``unet3d``, ``unet3d_small``): it then trains the U-Net whose
encoder that is (:func:`zoo.models.unets.unet_of`) and exports only the encoder, under the keys of the
requested network.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..models.builder import create_model
from ..models.unet2d import UNetResNet
from ..models.unet3d import UNet3D
from ..models.unets import ENCODER_UNETS, unet_of

__all__ = ["build_unet", "train_network", "encode", "decode", "encoder_copy", "export_unet", "head_channels"]

_DECODER_2D = ("decoder.", "segmentation_head.")
_DECODER_3D = ("up_tr", "out_tr.")


def train_network(network: str) -> str:
    """The network trained for ``network``: its U-Net if it is an encoder network, else itself."""
    return unet_of(network) or network


def build_unet(
    network: str, method: str, spatial_dims: tuple[int, ...] = (2, 3), skip: bool | None = None, **model_kwargs: Any
) -> nn.Module:
    """The U-Net trained for ``network`` (a U-Net, or the encoder network of one), decided from the network built.

    ``spatial_dims`` and ``skip`` (skip connections required / refused) are what ``method`` can train.
    """
    net = create_model(train_network(network), **model_kwargs)
    dims = getattr(net, "spatial_dims", 2)
    ok = isinstance(net, (UNetResNet, UNet3D)) and dims in spatial_dims
    if ok and skip is not None and isinstance(net, UNet3D):
        ok = net.skip == skip
    if not ok:
        unets = sorted(set(ENCODER_UNETS) | set(ENCODER_UNETS.values()))
        dims_txt = "/".join(f"{d}D" for d in spatial_dims)
        skips = {None: "", True: " with skips", False: " without skips (model kwarg decoder=\"noskip\")"}[skip]
        raise ValueError(f"{method} trains a {dims_txt} U-Net{skips}; {network!r} is not one, nor the encoder of one "
                         f"(with model kwargs {model_kwargs or {}}). Choose one of {unets}.")
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
    """``net``'s weights under the keys of ``create_model(arch)`` (encoder only for encoder networks)."""
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if unet_of(arch) is None:
        return sd
    prefixes = _decoder_prefixes(net)
    sd = {k: v for k, v in sd.items() if not k.startswith(prefixes)}
    if isinstance(net, UNetResNet):
        sd = {k.removeprefix("encoder."): v for k, v in sd.items()}
    return sd
