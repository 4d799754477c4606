"""The catalog of built-in architectures and their checkpoints (torch-free).

Each family block declares its architectures (with the module that implements them) and their
per-family defaults, then registers the checkpoints of each ``arch.tag``. Shipped weights are added
here together with their file in ``weights/`` and a section in MODEL_CARD.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cfg import Intensity
from ..registry import declare_model, register_pretrained

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
# SWCL's fundus photo mean/std (upstream's normalisation for both of its backbones)
_SWCL_FUNDUS = Intensity(mean=(0.1633, 0.2259, 0.3219), std=(0.1756, 0.2195, 0.3038))
_RESNETV2 = dict(
    module="zoo.models.resnetv2", classifier="head.fc", first_conv="stem.conv",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224), intensity=_SWCL_FUNDUS,
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

# --- official upstream checkpoints ------------------------------------------------------------------
# Released by the upstream authors and converted by each user with `zoo convert` (zoo does not
# redistribute them). sha256/file_size stay None and verified=False until a converted file's hash is
# pinned; `zoo convert` prints the entry to paste here.


def _register_official(names: tuple[str, ...], **fields: Any) -> None:
    """Register one official checkpoint under several names (an encoder and its _seg model share a file)."""
    for name in names:
        register_pretrained(name, **fields)


_PCRLV2_ORIGIN = "https://github.com/RL4M/PCRLv2 (Google Drive link in its README): "
_PCRLV2_LICENCE = "MIT (RL4M/PCRLv2)"
_LUNA_DATA = "LUNA16 / LIDC-IDRI: CC BY 3.0 (The Cancer Imaging Archive)"
_SWCL_ORIGIN = "https://github.com/BPYap/SWCL (Google Drive folder '{}' linked in its README): pytorch_model.bin"
_SWCL_LICENCE = "NONE STATED (no licence file in BPYap/SWCL): not redistributable; convert it for your own use only"
_SWCL_DATA = ("Kaggle EyePACS (Kaggle competition rules) and OIA-ODIR (github.com/nkicsl/OIA-ODIR); "
              "check their terms before use")

_register_official(
    ("pcrlv2_resnet18.chest",),
    file="pcrlv2_resnet18.chest.safetensors", convert_from="pcrlv2-2d",
    origin=_PCRLV2_ORIGIN + "simance_multi_crop_chest_pretask_1.0_240.pt",
    pretrain_data="NIH ChestX-ray14", modality="cxr", license_weights=_PCRLV2_LICENCE,
    license_data="NIH ChestX-ray14 (NIH Clinical Center: unrestricted use, citation requested)",
    notes="The official PCRLv2 2D encoder (smp ResNet-18 encoder, torchvision key names).",
)
_register_official(
    ("pcrlv2_resnet18.chexpert",),
    file="pcrlv2_resnet18.chexpert.safetensors", convert_from="pcrlv2-2d",
    origin=_PCRLV2_ORIGIN + "simance_multi_crop_chexpter_pretask_1.0_240.pt (upstream's spelling)",
    pretrain_data="CheXpert", modality="cxr", license_weights=_PCRLV2_LICENCE,
    license_data="Stanford CheXpert Research Use Agreement (non-commercial research)",
    notes="The official PCRLv2 2D encoder (smp ResNet-18 encoder, torchvision key names).",
)
_register_official(
    ("pcrlv2_unet3d.luna", "pcrlv2_unet3d_seg.luna"),
    file="pcrlv2_unet3d.luna.safetensors", convert_from="pcrlv2-3d",
    origin=_PCRLV2_ORIGIN + "simance_multi_crop_luna_pretask_1.0_240.pt",
    pretrain_data="LUNA16 chest CT", modality="ct", license_weights=_PCRLV2_LICENCE, license_data=_LUNA_DATA,
    notes="Encoder and decoder without skip connections (decoder='noskip'); the per-level pretraining heads "
    "(up_tr*.bn, predictor_head, deep_supervision_head) are dropped. These key names come from upstream's "
    "model definition, not from the released file: if a real file disagrees, correct the table in "
    "zoo/convert/layouts.py. Upstream's out_tr ends in a sigmoid (out_act='sigmoid' reproduces it).",
)
_register_official(
    ("swcl_resnet18.swap",),
    file="swcl_resnet18.swap.safetensors", convert_from="swcl-resnet18",
    origin=_SWCL_ORIGIN.format("SWCL (ResNet-18)"),
    pretrain_data="retinal-SWAP patches (Kaggle EyePACS + OIA-ODIR)", modality="fundus",
    license_weights=_SWCL_LICENCE, license_data=_SWCL_DATA,
    intensity=_SWCL_FUNDUS,
    notes="torchvision ResNet-18 encoder; the SupCon projection head is dropped.",
)
_register_official(
    ("swcl_resnetv2_50x1.swap",),
    file="swcl_resnetv2_50x1.swap.safetensors", convert_from="swcl-resnetv2-50x1",
    origin=_SWCL_ORIGIN.format("SWCL (ResNetv2-50x1)"),
    pretrain_data="retinal-SWAP patches (Kaggle EyePACS + OIA-ODIR)", modality="fundus",
    license_weights=_SWCL_LICENCE, license_data=_SWCL_DATA,
    notes="BiT ResNetV2-50x1 encoder, renamed to timm's ResNetV2 keys; the SupCon projection head is dropped.",
)
_register_official(
    ("genesis_unet3d.chest_ct", "genesis_unet3d_seg.chest_ct"),
    file="genesis_unet3d.chest_ct.safetensors", convert_from="genesis",
    origin="https://huggingface.co/MrGiovanni/ModelsGenesis (Genesis_Chest_CT.pt); "
    "code: https://github.com/MrGiovanni/ModelsGenesis",
    pretrain_data="LUNA16 chest CT", modality="ct",
    license_weights="NON-COMMERCIAL use only, patent pending (Models Genesis licence, "
    "github.com/MrGiovanni/ModelsGenesis)",
    license_data=_LUNA_DATA,
    notes="Batch-statistics BN as upstream's ContBatchNorm3d (norm='batch_stats_bn'): outputs depend on the "
    "batch, also in eval mode. Upstream's restoration output ends in a sigmoid (out_act='sigmoid').",
)


# --- zoo's own reference weights (pretrained here on ../shared/data; see MODEL_CARD.md) ---------------
# measured downstream results of each reference checkpoint: written by scripts/evaluate_reference.sh from the
# `zoo eval` results files in results/ (`zoo report --metrics`); tests/test_shipped_weights.py checks they agree
_REFERENCE_METRICS: dict[str, Any] = json.loads((Path(__file__).with_name("reference_metrics.json")).read_text())

# what every checkpoint pretrained on the Kermany train X-rays at 64 px shares
_KERMANY64: dict[str, Any] = dict(
    input_size=(3, 64, 64),
    pretrain_data="Kermany 2018 paediatric chest X-rays, train split only (5,216 images), at 64 px",
    modality="cxr",
    license_weights="CC-BY-4.0",
    license_data="CC-BY-4.0 (Kermany et al. 2018); research and testing use",
)


def _register_reference(
    name: str, recipe: str, pretrain_args: str, sha256: str, file_size: int, notes: str, shared: dict[str, Any],
    default: bool = False,
) -> None:
    """A reference checkpoint of scripts/pretrain_reference.sh RECIPE, shipped by scripts/ship_weights.py.

    ``default``: the bare architecture name loads it (ahead of an official entry that must be converted first).
    """
    register_pretrained(
        name,
        default=default,
        file=f"{name}.safetensors",
        sha256=sha256,
        file_size=file_size,
        **shared,
        command=f"RUNS=runs bash scripts/pretrain_reference.sh {recipe}  # = zoo pretrain --method "
        f"{name.split('_')[0]} {pretrain_args}; python scripts/ship_weights.py runs/{recipe} {name} (float16)",
        verified=True,
        metrics=_REFERENCE_METRICS.get(name, {}),
        notes=f"Small-scale reference weights ({notes}). Research use only, not for clinical use.",
    )


def _register_kermany64(
    name: str, recipe: str, flags: str, sha256: str, notes: str, *,
    file_size: int = 22383080, train_arch: str | None = None, epochs: int = 15, default: bool = False,
) -> None:
    """A Kermany 64 px reference checkpoint.

    ``flags`` are the recipe's method flags after the shared Kermany ones; ``train_arch`` is the architecture
    pretrained when it is not the one named (PCRL trains the U-Net and ships its encoder and decoder).
    """
    args = (f"--arch {train_arch or name.split('.')[0]} --data ../shared/data/cxr/kermany/train --img-size 64 "
            f"--batch-size 32 --epochs {epochs} --seed 0 {flags}")
    _register_reference(name, recipe, args, sha256, file_size, notes, _KERMANY64, default=default)

_SAME_AS_SIMCLR = "The same data, input size, batch, epochs and augmentation as simclr_resnet18.kermany64"

_register_kermany64(
    "simclr_resnet18.kermany64", "simclr_kermany", "--hparam aug=cxr --hparam temperature=0.2",
    "1e847dc2c40312fd700ced4b0c43d40413162dc289657ff1cdf4f06ee98886b9",
    "15 epochs, 2,445 steps, 1,389 s on 2 CPU cores; NT-Xent 4.10 -> 1.18",
)
_register_kermany64(
    "mocov2_resnet18.kermany64", "mocov2_kermany", "--hparam aug=cxr --hparam queue_size=4096",
    "6cbebb4d16e0c205cab40c16af81842b74e924bb6e6e72e51c05db4988b414f6",
    "15 epochs, 2,445 steps on 2 CPU cores, 75 img/s; InfoNCE 4.6 at the first step (random queue), about 7.7 "
    f"once the queue holds real keys, 7.45 at the end. {_SAME_AS_SIMCLR}",
)
_register_kermany64(
    "micle_resnet18.kermany64", "micle_kermany", "--hparam aug=cxr --hparam temperature=0.2",
    "1e4e5de810efdd1eb4ceac5645117abcedd6e1d976bc9396c059c00acce7ac9d",
    "15 epochs, 2,445 steps on 2 CPU cores, 62 img/s; NT-Xent 4.28 -> 3.45; 3,445 of the 5,216 images have a "
    f"same-patient partner. {_SAME_AS_SIMCLR}",
)
_register_kermany64(
    "pcrl_resnet18.kermany64", "pcrl_kermany", "--lr 0.03",
    "4ff94fbc001ea468e19fed43d86e3091da3979b0ba6cb62d4e187ae099372687",
    "6 epochs, 978 steps, 3,463 s on 2 CPU cores (9.2 img/s: a PCRL step is two U-Net passes per view pair and "
    "four reconstructions), about MoCo v2's wall time; NCE 7.2 -> 10.1 as the queue filled, reconstruction MSE "
    "1.05 -> 0.24. The file holds the whole U-Net: pcrl_resnet18 loads its encoder, "
    "create_model('pcrl_unet_resnet18', checkpoint_path=...) encoder and decoder",
    file_size=28698382, train_arch="pcrl_unet_resnet18", epochs=6,
)
_register_kermany64(
    "pcrlv2_resnet18.kermany64", "pcrlv2_kermany", "--lr 0.03",
    "77c71fb7182ea5eaeea95360caeb8318dfd2d60d521adbf2f401cd14f51b85bf",
    "8 epochs, 1,304 steps on 2 CPU cores, 26.8 img/s (2 global + 6 local views per image and a skip-less "
    "decoder with heads at five levels); reconstruction MSE 0.68 -> 0.18, global cosine -0.02 -> -0.64, local "
    "cosine -0.03 -> -0.44 (first / last 20 steps). The file holds the encoder. The default pcrlv2_resnet18 "
    "weights: the official ones must be converted first",
    epochs=8, default=True,
)

# what every checkpoint pretrained on the CT volumes of ../shared/data/ct/volumes in 32^3 cubes shares
_CT32: dict[str, Any] = dict(
    input_size=(1, 32, 32, 32),
    pretrain_data="the 7 CT volumes of ../shared/data/ct/volumes (Lung-PET-CT-Dx chest CT x4, TotalSegmentator "
    "torso CT and its crop, InVesalius head CT), resampled to 1 mm, random 32^3 cubes, HU [-1000, 1000] -> [0, 1]",
    modality="ct",
    license_weights="GPL-2.0",
    license_data="CC-BY-4.0 (TCIA Lung-PET-CT-Dx), Apache-2.0 (TotalSegmentator test files), GPL-2.0 (InVesalius "
    "head CT)",
)


def _register_ct32(name: str, recipe: str, flags: str, sha256: str, file_size: int, notes: str) -> None:
    """A 3D reference checkpoint trained as ARCH_seg on 32^3 CT cubes (the whole U-Net in the file)."""
    arch = name.split(".")[0]
    args = (f"--arch {arch}_seg --data ../shared/data/ct/volumes --cube-size 32 32 32 --batch-size 4 --seed 0 "
            f"{flags}")
    notes += f". The file holds encoder and decoder: {arch}_seg loads it whole with checkpoint_path"
    _register_reference(name, recipe, args, sha256, file_size, notes, _CT32)


_register_ct32(
    "genesis_unet3d_small.ct32", "genesis_ct", "--epochs 10 --samples-per-volume 32",
    "9eff23da4ba79a6b2d3c2934a7ff90a93c17c3b823b88a570b0c0f2d3106c034", 9556042,
    "Models Genesis restoration, width-16 U-Net, 10 epochs of 224 cubes, 560 steps, 1,404 s on 2 CPU cores "
    "(1.7 cubes/s); restoration MSE 0.062 -> 0.038 (first / last 20 steps)",
)

# what every checkpoint pretrained on the fundus photos of ../shared/data/fundus at 64 px shares
_FUNDUS64: dict[str, Any] = dict(
    input_size=(3, 64, 64),
    modality="fundus",
    license_weights="research-use-only (EyePACS and DRIVE are research-use data)",
    license_data="EyePACS: Kaggle Diabetic Retinopathy Detection rules, research use; DRIVE: research use; "
    "HRF: CC-BY-4.0",
)


def _register_fundus64(name: str, recipe: str, flags: str, sha256: str, pretrain_data: str, notes: str, *,
                       default: bool = False, **fields: Any) -> None:
    """A fundus 64 px reference checkpoint (a 2D ResNet-18); ``fields`` add to the shared ones."""
    args = f"--arch {name.split('.')[0]} --img-size 64 --batch-size 32 --seed 0 {flags}"
    _register_reference(name, recipe, args, sha256, 22383080, notes,
                        dict(_FUNDUS64, pretrain_data=pretrain_data, **fields), default=default)


_register_fundus64(
    "swcl_resnet18.fundus64", "swcl_fundus", "--data ../shared/data/fundus --epochs 30",
    "d9599b4c62ac010763df8a80afbaa79810e087cd0cda0c2c493688052ca01b70",
    "SWCL patches of ../shared/data/fundus: 195 photos (EyePACS 130 + HRF 45 labelled for the pseudo-labeller, "
    "DRIVE's 20 training photos unlabelled; DRIVE test never read), photos at S = 128 px, five 64-px patches each, "
    "700 left/right samples",
    "SWCL multi-label SupCon, 30 epochs, 630 steps, 575 s on 2 CPU cores (47 samples/s) after the cached "
    "pseudo-labeller (ResNet-34, 259 CPU-s, held-out ACC 0.657 / AUC 0.599 on 35 photos); SupCon 5.30 -> 3.95. "
    "Normalised with SWCL's fundus mean/std, as upstream",
    default=True, intensity=_SWCL_FUNDUS,
)
_register_fundus64(
    "micle_resnet18.fundus64", "micle_fundus",
    "--data ../shared/data/fundus/eyepacs --epochs 200 --hparam temperature=0.2 --hparam aug=mocov2",
    "7a0a279d18d84869a44c3e11ffdb8b11f03b9dc4b479d7d69b61affcaa94c7cb",
    "the 130 EyePACS photos of ../shared/data/fundus/eyepacs (FOV-cropped, 64 px; 75 patients, 110 photos with a "
    "same-patient partner: the other eye)",
    "MICLe (SimCLR with the other eye as positive), MoCo v2 augmentation, 200 epochs, 800 steps, 346 s on 2 CPU "
    "cores (87 img/s); NT-Xent 4.00 -> 3.36 (first / last 20 steps). ImageNet mean/std",
    license_data="EyePACS: Kaggle Diabetic Retinopathy Detection rules, research use",
)
_register_ct32(
    "pcrl_unet3d_small.ct32", "pcrl_ct", "--epochs 10 --samples-per-volume 32 --lr 0.03",
    "38ab74cb3e28d018b67b9ca5b80915734cbf52ecd47ecaf04be3d89146774ae7", 9556042,
    "PCRL 3D (NCE contrast + four reconstructions), width-16 U-Net, Models Genesis' budget: 10 epochs of 224 cubes, "
    "560 steps, 1,533 s on 2 CPU cores (1.5 cubes/s); reconstruction MSE 0.044 -> 0.026, NCE 6.7 -> 8.3 as real keys "
    "replaced the random queue (6,720 of its 16,384 slots by the end)",
)
