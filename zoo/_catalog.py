"""The catalog of built-in architectures and their checkpoints (torch-free).

Each family block declares its architectures (with the module that implements them) and their
per-family defaults, then registers the checkpoints of each ``arch.tag``. Shipped weights are added
here together with their file in ``weights/`` and a section in MODEL_CARD.md.
"""

from __future__ import annotations

from typing import Any

from ._pretrained import Intensity
from ._registry import declare_model

__all__: list[str] = []

PAPERS = {
    "pcrl": "Zhou et al., Preservational Learning Improves Self-supervised Medical Image Models by "
    "Reconstructing Diverse Contexts, ICCV 2021",
    "pcrlv2": "Zhou et al., A Unified Visual Information Preservation Framework for Self-supervised "
    "Pre-training in Medical Image Analysis, IEEE TPAMI 2023",
    "swcl": "Yap & Ng, Semi-weakly Supervised Contrastive Representation Learning for Retinal Fundus "
    "Images, arXiv:2108.02122, 2021",
    "genesis": "Zhou et al., Models Genesis, Medical Image Analysis 2021 (MICCAI 2019)",
    "simclr": "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020",
    "mocov2": "Chen et al., Improved Baselines with Momentum Contrastive Learning, arXiv:2003.04297, 2020",
    "micle": "Azizi et al., Big Self-Supervised Models Advance Medical Image Classification, ICCV 2021",
    "hpt": "Reed et al., Self-Supervised Pretraining Improves Self-Supervised Pretraining, WACV 2022",
}

# --- per-family defaults -------------------------------------------------------------------------
_RESNET = dict(
    module="zoo.models.resnet", classifier="fc", first_conv="conv1",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224), intensity=Intensity(),
)
_RESNETV2 = dict(
    module="zoo.models.resnetv2", classifier="head.fc", first_conv="stem.conv",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224),
    intensity=Intensity(mean=(0.1633, 0.2259, 0.3219), std=(0.1756, 0.2195, 0.3038)),
)
_UNET2D = dict(
    module="zoo.models.unet2d", classifier="segmentation_head.0", first_conv="encoder.conv1",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224), intensity=Intensity(), num_classes=3,
)
_UNET3D = dict(
    module="zoo.models.unet3d", first_conv="down_tr64.ops.0.conv1",
    in_chans=1, spatial_dims=3, input_size=(1, 64, 64, 32), voxel_spacing=(1.0, 1.0, 1.0),
    intensity=Intensity.hu(-1000.0, 1000.0),
)
_UNET3D_ENCODER = dict(_UNET3D, classifier="fc")
_UNET3D_SEG = dict(_UNET3D, classifier="out_tr.final_conv", num_classes=1)


def _declare(name: str, description: str, family: dict[str, Any], method: str, **kwargs: Any) -> None:
    declare_model(name, description=description, method=method, paper=PAPERS[method], **{**family, **kwargs})


# --- 2D ResNet backbones (timm, torchvision key names) ----------------------------------------------
for _method, _what in [
    ("pcrl", "PCRL"), ("pcrlv2", "PCRLv2"), ("swcl", "SWCL"), ("simclr", "SimCLR"),
    ("mocov2", "MoCo v2"), ("micle", "MICLe"),
]:
    _declare(f"{_method}_resnet18", f"ResNet-18 backbone pretrained with {_what}", _RESNET, _method,
             arch_kwargs={"depth": 18})
_declare("mocov2_resnet50", "ResNet-50 backbone pretrained with MoCo v2 / HPT (OpenSelfSup)", _RESNET,
         "mocov2", arch_kwargs={"depth": 50})

# --- BiT ResNetV2 (SWCL's second backbone) ----------------------------------------------------------
_declare("swcl_resnetv2_50x1", "BiT ResNetV2-50x1 (weight-standardised, GroupNorm) pretrained with SWCL",
         _RESNETV2, "swcl", arch_kwargs={"layers": (3, 4, 6, 3), "width_factor": 1})

# --- PCRL 2D encoder-decoder ------------------------------------------------------------------------
_declare("pcrl_unet_resnet18", "PCRL 2D U-Net: ResNet-18 encoder + U-Net decoder, for segmentation",
         _UNET2D, "pcrl")

# --- 3D U-Nets (Models Genesis layout) ---------------------------------------------------------------
# Full width (32) for the official checkpoints; "small" (width 16, ~4.8 M parameters) for the reference
# weights pretrained here on 2 CPU cores.
for _method, _what, _decoder in [
    ("genesis", "Models Genesis", "skip"), ("pcrl", "PCRL", "skip"), ("pcrlv2", "PCRLv2", "noskip"),
]:
    _norm = "batch_stats_bn" if _method == "genesis" else "bn"
    for _suffix, _width in [("", 32), ("_small", 16)]:
        if _suffix and _method == "pcrlv2":
            continue
        _size = f" (width {_width})" if _suffix else ""
        _declare(f"{_method}_unet3d{_suffix}", f"{_what} 3D U-Net encoder{_size}, features / classification",
                 _UNET3D_ENCODER, _method, arch_kwargs={"norm": _norm, "width": _width})
        _declare(f"{_method}_unet3d{_suffix}_seg", f"{_what} 3D U-Net encoder-decoder{_size}, segmentation",
                 _UNET3D_SEG, _method, arch_kwargs={"norm": _norm, "width": _width, "decoder": _decoder})
