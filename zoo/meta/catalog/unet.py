"""U-Nets: PCRL's 2D U-Net (ResNet-18 encoder) and the 3D U-Net of the Models Genesis layout, and their weights.

A 3D U-Net file holds encoder and decoder: each tag is registered for the encoder network (``unet3d``,
features / classification; the decoder keys are dropped on load) and the encoder-decoder (``unet3d_seg``).
"""

from __future__ import annotations

from ..cfg import Intensity
from ._common import CT32, KERMANY64, declare, register_official, register_reference

__all__: list[str] = []

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

declare("unet_resnet18", "2D U-Net, ResNet-18 encoder + U-Net decoder (PCRL 2D), segmentation", _UNET2D)
# full width (32) for the official checkpoints; "small" (width 16, ~4.8 M parameters) for the reference weights
# pretrained here on 2 CPU cores
for _suffix, _width, _what in [("", 32, ""), ("_small", 16, " (width 16)")]:
    declare(f"unet3d{_suffix}", f"3D U-Net encoder{_what}, Models Genesis layout: features / classification",
            _UNET3D_ENCODER, arch_kwargs={"norm": "bn", "width": _width})
    declare(f"unet3d{_suffix}_seg", f"3D U-Net encoder-decoder{_what}, Models Genesis layout: segmentation",
            _UNET3D_SEG, arch_kwargs={"norm": "bn", "width": _width, "decoder": "skip"})

# --- official upstream weights (convert them with `zoo convert`) -------------------------------------------
_LUNA_DATA = "LUNA16 / LIDC-IDRI: CC BY 3.0 (The Cancer Imaging Archive)"
for _name, _kwargs in [("unet3d.pcrlv2_luna", {}), ("unet3d_seg.pcrlv2_luna", {"decoder": "noskip"})]:
    register_official(  # the encoder network has no decoder argument
        (_name,), "pcrlv2",
        file="pcrlv2_unet3d.luna.safetensors", convert_from="pcrlv2-3d",
        origin="https://github.com/RL4M/PCRLv2 (Google Drive link in its README): "
        "simance_multi_crop_luna_pretask_1.0_240.pt",
        pretrain_data="LUNA16 chest CT", modality="ct", license_weights="MIT (RL4M/PCRLv2)", license_data=_LUNA_DATA,
        arch_kwargs=_kwargs,
        notes="Encoder and decoder without skip connections (decoder='noskip'); the per-level pretraining heads "
        "(up_tr*.bn, predictor_head, deep_supervision_head) are dropped. These key names come from upstream's "
        "model definition, not from the released file: if a real file disagrees, correct the table in "
        "zoo/convert/layouts.py. Upstream's out_tr ends in a sigmoid (out_act='sigmoid' reproduces it).",
    )
register_official(
    ("unet3d.genesis_chest_ct", "unet3d_seg.genesis_chest_ct"), "genesis",
    file="genesis_unet3d.chest_ct.safetensors", convert_from="genesis",
    origin="https://huggingface.co/MrGiovanni/ModelsGenesis (Genesis_Chest_CT.pt); "
    "code: https://github.com/MrGiovanni/ModelsGenesis",
    pretrain_data="LUNA16 chest CT", modality="ct",
    license_weights="NON-COMMERCIAL use only, patent pending (Models Genesis licence, "
    "github.com/MrGiovanni/ModelsGenesis)",
    license_data=_LUNA_DATA,
    arch_kwargs={"norm": "batch_stats_bn"},
    notes="Batch-statistics BN as upstream's ContBatchNorm3d (norm='batch_stats_bn'): outputs depend on the "
    "batch, also in eval mode. Upstream's restoration output ends in a sigmoid (out_act='sigmoid').",
)

# --- zoo's own reference weights (pretrained here on ../shared/data; see MODEL_CARD.md) -----------------------
register_reference(
    ("resnet18.pcrl_kermany64", "unet_resnet18.pcrl_kermany64"), "pcrl", "pcrl_kermany",
    "--arch unet_resnet18 --data ../shared/data/cxr/kermany/train --img-size 64 --batch-size 32 --epochs 6 "
    "--seed 0 --lr 0.03",
    "pcrl_resnet18.kermany64.safetensors", "4ff94fbc001ea468e19fed43d86e3091da3979b0ba6cb62d4e187ae099372687",
    28698382,
    "6 epochs, 978 steps, 3,463 s on 2 CPU cores (9.2 img/s: a PCRL step is two U-Net passes per view pair and "
    "four reconstructions), about MoCo v2's wall time; NCE 7.2 -> 10.1 as the queue filled, reconstruction MSE "
    "1.05 -> 0.24. The file holds the whole U-Net: resnet18.pcrl_kermany64 loads its encoder, "
    "unet_resnet18.pcrl_kermany64 encoder and decoder",
    KERMANY64, default=("unet_resnet18.pcrl_kermany64",),
)


def _ct32(tag: str, method: str, recipe: str, flags: str, sha256: str, notes: str, *, norm: str = "bn",
          default: bool = False) -> None:
    """A width-16 3D U-Net pretrained on 32^3 CT cubes (the whole U-Net in the file)."""
    args = (f"--arch unet3d_small_seg --data ../shared/data/ct/volumes --cube-size 32 32 32 --batch-size 4 "
            f"--seed 0 {flags}")
    register_reference(
        (f"unet3d_small.{tag}", f"unet3d_small_seg.{tag}"), method, recipe, args,
        f"{method}_unet3d_small.ct32.safetensors", sha256, 9556042,
        notes + ". The file holds encoder and decoder: unet3d_small loads the encoder, unet3d_small_seg both",
        CT32, default=default, arch_kwargs={"norm": norm},
    )


_ct32(
    "genesis_ct32", "genesis", "genesis_ct", "--epochs 10 --samples-per-volume 32",
    "9eff23da4ba79a6b2d3c2934a7ff90a93c17c3b823b88a570b0c0f2d3106c034",
    "Models Genesis restoration, width-16 U-Net with batch-statistics BN, 10 epochs of 224 cubes, 560 steps, "
    "1,404 s on 2 CPU cores (1.7 cubes/s); restoration MSE 0.062 -> 0.038 (first / last 20 steps)",
    norm="batch_stats_bn",
)
# the default unet3d_small weights: the better measured with all labels (AdrenalMNIST3D linear AUC .848 vs .823,
# fine-tuned .882 vs .863); Models Genesis' scores higher with 1% labels (.606 vs .563), within run-to-run spread
_ct32(
    "pcrl_ct32", "pcrl", "pcrl_ct", "--epochs 10 --samples-per-volume 32 --lr 0.03",
    "38ab74cb3e28d018b67b9ca5b80915734cbf52ecd47ecaf04be3d89146774ae7",
    "PCRL 3D (NCE contrast + four reconstructions), width-16 U-Net, Models Genesis' budget: 10 epochs of 224 cubes, "
    "560 steps, 1,533 s on 2 CPU cores (1.5 cubes/s); reconstruction MSE 0.044 -> 0.026, NCE 6.7 -> 8.3 as real keys "
    "replaced the random queue (6,720 of its 16,384 slots by the end)",
    default=True,
)
