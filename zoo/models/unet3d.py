"""3D U-Nets in the Models Genesis layout (Models Genesis, PCRL 3D, PCRLv2 3D).

Key names match the upstream checkpoints: ``down_tr64`` ... ``down_tr512`` (encoder), ``up_tr256``,
``up_tr128``, ``up_tr64`` (decoder) and ``out_tr.final_conv``; each ``LUConv`` is ``conv1`` + ``bn1``
(whatever the norm). At the default width the full network has 19,073,665 parameters, as upstream.

Inputs are ``(N, C, X, Y, Z)`` in NIfTI voxel order, the slice axis last (Models Genesis cubes are
64 x 64 x 32).

Two models share one checkpoint: :class:`UNet3DEncoder` (features / classification; the decoder keys
of a full checkpoint are dropped on purpose) and :class:`UNet3D` (the encoder-decoder, for
segmentation). ``decoder="noskip"`` is the PCRLv2 variant without skip connections.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models._features import feature_take_indices
from torch import nn

from ..meta.registry import register_model
from ._contract import check_input, model_dtype
from .builder import build_model_with_cfg

__all__ = ["BatchStatsNorm3d", "UNet3DEncoder", "UNet3D", "NORMS", "unet3d", "unet3d_seg", "unet3d_small", "unet3d_small_seg"]

NORMS = ("bn", "batch_stats_bn", "gn", "in")
_ENCODER = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")


class BatchStatsNorm3d(nn.BatchNorm3d):
    """Models Genesis' ``ContBatchNorm3d``: normalises with the batch's statistics, also in eval mode.

    In training mode it is an ordinary BatchNorm3d (running statistics are updated, so the buffers
    stay key-compatible). In eval mode it still uses the batch statistics but, unlike upstream, does
    not modify the running buffers: outputs are identical and evaluation never changes the weights.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def _norm(kind: str, channels: int, gn_groups: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm3d(channels)
    if kind == "batch_stats_bn":
        return BatchStatsNorm3d(channels)
    if kind == "gn":
        return nn.GroupNorm(gn_groups, channels)
    if kind == "in":
        return nn.InstanceNorm3d(channels, affine=True)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class LUConv(nn.Module):
    """Conv3d (k3, p1, bias) -> norm -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, norm: str, gn_groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_chs, out_chs, kernel_size=3, padding=1)
        self.bn1 = _norm(norm, out_chs, gn_groups)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv1(x)))


class DownTransition(nn.Module):
    """Two LUConvs; the max-pooling between stages is applied by the network."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, norm: str, gn_groups: int) -> None:
        super().__init__()
        self.ops = nn.Sequential(LUConv(in_chs, mid_chs, norm, gn_groups), LUConv(mid_chs, out_chs, norm, gn_groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops(x)


class UpTransition(nn.Module):
    """ConvTranspose3d (k2, s2) -> concat skip (optional) -> two LUConvs."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, norm: str, gn_groups: int) -> None:
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_chs, in_chs, kernel_size=2, stride=2)
        self.ops = nn.Sequential(
            LUConv(in_chs + skip_chs, out_chs, norm, gn_groups), LUConv(out_chs, out_chs, norm, gn_groups)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up_conv(x)
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        return self.ops(x)


class OutputTransition(nn.Module):
    """1x1x1 convolution to the output channels."""

    def __init__(self, in_chs: int, num_classes: int) -> None:
        super().__init__()
        self.final_conv = nn.Conv3d(in_chs, num_classes, kernel_size=1) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(x)


class _UNet3DBase(nn.Module):
    """The shared encoder: four stages, max-pooling between them."""

    multiple = 8  # the encoder pools three times

    def __init__(self, in_chans: int, norm: str, width: int, gn_groups: int) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        w = width
        self.in_chans = in_chans
        self.spatial_dims = 3
        self.norm = norm
        self.down_tr64 = DownTransition(in_chans, w, 2 * w, norm, gn_groups)
        self.down_tr128 = DownTransition(2 * w, 2 * w, 4 * w, norm, gn_groups)
        self.down_tr256 = DownTransition(4 * w, 4 * w, 8 * w, norm, gn_groups)
        self.down_tr512 = DownTransition(8 * w, 8 * w, 16 * w, norm, gn_groups)
        self.num_features = 16 * w
        self.feature_info = [
            dict(num_chs=2 * w * 2**i, reduction=2**i, module=name) for i, name in enumerate(_ENCODER)
        ]

    def _encode(self, x: torch.Tensor, last: int = 3) -> list[torch.Tensor]:
        # batch statistics (also in eval for batch_stats_bn; in training for bn): one NaN voxel in one sample
        # would turn every sample of the batch into NaN
        batch_stats = self.norm == "batch_stats_bn" or (self.norm == "bn" and self.training)
        check_input(
            x, self.in_chans, 3, type(self).__name__, multiple=self.multiple, dtype=model_dtype(self),
            min_size=2**last,
            finite_reason=("its BatchNorm normalises with the statistics of the whole batch, so one non-finite "
                           "voxel would make every sample's output NaN.") if batch_stats else None,
        )
        feats = []
        for i, name in enumerate(_ENCODER[: last + 1]):
            if i:
                x = F.max_pool3d(x, 2)
            x = getattr(self, name)(x)
            feats.append(x)
        return feats

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCDHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder feature maps at strides 1, 2, 4, 8 (``indices`` as in timm)."""
        take, max_index = feature_take_indices(len(_ENCODER), indices)
        feats = self._encode(x, last=max_index if (intermediates_only or stop_early) else 3)
        intermediates = [feats[i] for i in take]
        if intermediates_only:
            return intermediates
        return feats[-1], intermediates


class UNet3DEncoder(_UNet3DBase):
    """The 3D U-Net encoder with a global-pool + linear head (features / classification).

    Args:
        in_chans: input channels (1 for CT).
        num_classes: classes of the ``fc`` head; 0 returns pooled features (``num_features``).
        norm: ``bn`` | ``batch_stats_bn`` (Models Genesis) | ``gn`` | ``in``.
        width: channels of the first convolution (32 upstream); stages give 2, 4, 8, 16 x width.
        drop_rate: dropout before the head.
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 0,
        norm: str = "bn",
        width: int = 32,
        gn_groups: int = 8,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(in_chans, norm, width, gn_groups)
        self.multiple = 1  # pooling floors odd sizes; the encoder alone accepts any size >= 8
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3, 4))
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class UNet3D(_UNet3DBase):
    """The full 3D U-Net (encoder + decoder) for segmentation or restoration.

    Args:
        in_chans: input channels.
        num_classes: output channels of ``out_tr`` (1 upstream).
        norm, width, gn_groups: as :class:`UNet3DEncoder`.
        decoder: ``skip`` (Models Genesis / PCRL) or ``noskip`` (PCRLv2).
        out_act: None (logits) or ``sigmoid`` (upstream's restoration output).
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 1,
        norm: str = "bn",
        width: int = 32,
        gn_groups: int = 8,
        decoder: str = "skip",
        out_act: str | None = None,
    ) -> None:
        super().__init__(in_chans, norm, width, gn_groups)
        if decoder not in ("skip", "noskip"):
            raise ValueError(f"decoder must be 'skip' or 'noskip', got {decoder!r}")
        if out_act not in (None, "sigmoid"):
            raise ValueError(f"out_act must be None or 'sigmoid', got {out_act!r}")
        w = width
        self.skip = decoder == "skip"
        self.out_act = out_act
        self.num_classes = num_classes
        s = 1 if self.skip else 0
        self.up_tr256 = UpTransition(16 * w, s * 8 * w, 8 * w, norm, gn_groups)
        self.up_tr128 = UpTransition(8 * w, s * 4 * w, 4 * w, norm, gn_groups)
        self.up_tr64 = UpTransition(4 * w, s * 2 * w, 2 * w, norm, gn_groups)
        self.decoder_chs = self.num_features = 2 * w  # channels of forward_features
        self.out_tr = OutputTransition(self.decoder_chs, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.out_tr = OutputTransition(self.decoder_chs, num_classes)

    def forward_decoder(self, feats: list[torch.Tensor], all_levels: bool = False) -> Any:
        """Decoder output (``2 * width`` channels at full resolution) from the encoder maps.

        ``all_levels=True`` returns the output of every up-transition (strides 4, 2, 1), as PCRLv2's
        multi-scale heads need.
        """
        x = feats[3]
        levels = []
        for up, skip in zip((self.up_tr256, self.up_tr128, self.up_tr64), feats[2::-1], strict=True):
            x = up(x, skip if self.skip else None)
            levels.append(x)
        return levels if all_levels else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_decoder(self._encode(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x
        x = self.out_tr(x)
        return torch.sigmoid(x) if self.out_act == "sigmoid" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def encoder_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop the decoder of a full U-Net checkpoint when loading the encoder model."""
    return {k: v for k, v in state_dict.items() if not k.startswith(("up_tr", "out_tr."))}


def _encoder(name: str, pretrained: bool, **kwargs: Any) -> UNet3DEncoder:
    return build_model_with_cfg(UNet3DEncoder, name, pretrained, filter_fn=encoder_filter_fn, **kwargs)


def _full(name: str, pretrained: bool, **kwargs: Any) -> UNet3D:
    return build_model_with_cfg(UNet3D, name, pretrained, **kwargs)


@register_model
def unet3d(pretrained: bool = False, **kwargs: Any) -> UNet3DEncoder:
    """3D U-Net encoder (Models Genesis layout, width 32), for features / classification."""
    return _encoder("unet3d", pretrained, **kwargs)


@register_model
def unet3d_seg(pretrained: bool = False, **kwargs: Any) -> UNet3D:
    """3D U-Net encoder-decoder (Models Genesis layout, width 32), for segmentation / restoration."""
    return _full("unet3d_seg", pretrained, **kwargs)


@register_model
def unet3d_small(pretrained: bool = False, **kwargs: Any) -> UNet3DEncoder:
    """3D U-Net encoder at width 16 (zoo's CPU-sized reference network), for features / classification."""
    return _encoder("unet3d_small", pretrained, **kwargs)


@register_model
def unet3d_small_seg(pretrained: bool = False, **kwargs: Any) -> UNet3D:
    """3D U-Net encoder-decoder at width 16, for segmentation / restoration."""
    return _full("unet3d_small_seg", pretrained, **kwargs)
