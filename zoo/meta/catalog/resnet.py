"""2D ResNets (timm's ResNet and BiT ResNetV2, torchvision / timm key names) and their weights."""

from __future__ import annotations

from ..cfg import Intensity
from ._common import FUNDUS64, KERMANY64, SWCL_FUNDUS, declare, register_official, register_reference

__all__: list[str] = []

_RESNET = dict(
    module="zoo.models.resnet", classifier="fc", first_conv="conv1",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224), intensity=Intensity(),
)
_RESNETV2 = dict(
    module="zoo.models.resnetv2", classifier="head.fc", first_conv="stem.conv",
    in_chans=3, spatial_dims=2, input_size=(3, 224, 224), intensity=SWCL_FUNDUS,
)

declare("resnet18", "ResNet-18 (timm / torchvision keys): PCRL, PCRLv2, SWCL, SimCLR, MoCo v2, MICLe weights", _RESNET,
        arch_kwargs={"depth": 18})
declare("resnet50", "ResNet-50 (timm / torchvision keys): MoCo v2 / HPT (convert your own OpenSelfSup file)", _RESNET,
        arch_kwargs={"depth": 50})
declare("resnetv2_50x1_bit", "BiT ResNetV2-50x1 (weight standardisation eps 1e-10, GroupNorm): SWCL weights",
        _RESNETV2, arch_kwargs={"layers": (3, 4, 6, 3), "width_factor": 1})

# --- official upstream weights (convert them with `zoo convert`) -------------------------------------------
_PCRLV2_ORIGIN = "https://github.com/RL4M/PCRLv2 (Google Drive link in its README): "
_PCRLV2_LICENCE = "MIT (RL4M/PCRLv2)"
_SWCL_ORIGIN = "https://github.com/BPYap/SWCL (Google Drive folder '{}' linked in its README): pytorch_model.bin"
_SWCL_LICENCE = "NONE STATED (no licence file in BPYap/SWCL): not redistributable; convert it for your own use only"
_SWCL_DATA = ("Kaggle EyePACS (Kaggle competition rules) and OIA-ODIR (github.com/nkicsl/OIA-ODIR); "
              "check their terms before use")

register_official(
    ("resnet18.pcrlv2_chest",), "pcrlv2",
    file="pcrlv2_resnet18.chest.safetensors", convert_from="pcrlv2-2d",
    origin=_PCRLV2_ORIGIN + "simance_multi_crop_chest_pretask_1.0_240.pt",
    pretrain_data="NIH ChestX-ray14", modality="cxr", license_weights=_PCRLV2_LICENCE,
    license_data="NIH ChestX-ray14 (NIH Clinical Center: unrestricted use, citation requested)",
    notes="The official PCRLv2 2D encoder (smp ResNet-18 encoder, torchvision key names).",
)
register_official(
    ("resnet18.pcrlv2_chexpert",), "pcrlv2",
    file="pcrlv2_resnet18.chexpert.safetensors", convert_from="pcrlv2-2d",
    origin=_PCRLV2_ORIGIN + "simance_multi_crop_chexpter_pretask_1.0_240.pt (upstream's spelling)",
    pretrain_data="CheXpert", modality="cxr", license_weights=_PCRLV2_LICENCE,
    license_data="Stanford CheXpert Research Use Agreement (non-commercial research)",
    notes="The official PCRLv2 2D encoder (smp ResNet-18 encoder, torchvision key names).",
)
register_official(
    ("resnet18.swcl_swap",), "swcl",
    file="swcl_resnet18.swap.safetensors", convert_from="swcl-resnet18",
    origin=_SWCL_ORIGIN.format("SWCL (ResNet-18)"),
    pretrain_data="retinal-SWAP patches (Kaggle EyePACS + OIA-ODIR)", modality="fundus",
    license_weights=_SWCL_LICENCE, license_data=_SWCL_DATA, intensity=SWCL_FUNDUS,
    notes="torchvision ResNet-18 encoder; the SupCon projection head is dropped.",
)
register_official(
    ("resnetv2_50x1_bit.swcl_swap",), "swcl",
    file="swcl_resnetv2_50x1.swap.safetensors", convert_from="swcl-resnetv2-50x1",
    origin=_SWCL_ORIGIN.format("SWCL (ResNetv2-50x1)"),
    pretrain_data="retinal-SWAP patches (Kaggle EyePACS + OIA-ODIR)", modality="fundus",
    license_weights=_SWCL_LICENCE, license_data=_SWCL_DATA,
    notes="BiT ResNetV2-50x1 encoder, renamed to timm's ResNetV2 keys; the SupCon projection head is dropped.",
)


# --- zoo's own reference weights (pretrained here on ../shared/data; see MODEL_CARD.md) -----------------------
def _kermany64(tag: str, method: str, recipe: str, flags: str, file: str, sha256: str, notes: str, *,
               epochs: int = 15, default: bool = False) -> None:
    """A ResNet-18 pretrained on the Kermany train X-rays at 64 px (``flags``: the recipe's method flags)."""
    args = (f"--arch resnet18 --data ../shared/data/cxr/kermany/train --img-size 64 --batch-size 32 "
            f"--epochs {epochs} --seed 0 {flags}")
    register_reference((f"resnet18.{tag}",), method, recipe, args, file, sha256, 22383080, notes, KERMANY64,
                       default=default)


_SAME_AS_SIMCLR = "The same data, input size, batch, epochs and augmentation as resnet18.simclr_kermany64"

_kermany64(
    "simclr_kermany64", "simclr", "simclr_kermany", "--hparam aug=cxr --hparam temperature=0.2",
    "simclr_resnet18.kermany64.safetensors", "1e847dc2c40312fd700ced4b0c43d40413162dc289657ff1cdf4f06ee98886b9",
    "15 epochs, 2,445 steps, 1,389 s on 2 CPU cores; NT-Xent 4.10 -> 1.18",
)
_kermany64(
    "mocov2_kermany64", "mocov2", "mocov2_kermany", "--hparam aug=cxr --hparam queue_size=4096",
    "mocov2_resnet18.kermany64.safetensors", "6cbebb4d16e0c205cab40c16af81842b74e924bb6e6e72e51c05db4988b414f6",
    "15 epochs, 2,445 steps on 2 CPU cores, 75 img/s; InfoNCE 4.6 at the first step (random queue), about 7.7 "
    f"once the queue holds real keys, 7.45 at the end. {_SAME_AS_SIMCLR}",
)
# the default resnet18 weights: the best measured at 64 px (Kermany linear AUC .966 at 1% labels, .959 at 100%)
_kermany64(
    "micle_kermany64", "micle", "micle_kermany", "--hparam aug=cxr --hparam temperature=0.2",
    "micle_resnet18.kermany64.safetensors", "1e4e5de810efdd1eb4ceac5645117abcedd6e1d976bc9396c059c00acce7ac9d",
    "15 epochs, 2,445 steps on 2 CPU cores, 62 img/s; NT-Xent 4.28 -> 3.45; 3,445 of the 5,216 images have a "
    f"same-patient partner. {_SAME_AS_SIMCLR}",
    default=True,
)
_kermany64(
    "pcrlv2_kermany64", "pcrlv2", "pcrlv2_kermany", "--lr 0.03",
    "pcrlv2_resnet18.kermany64.safetensors", "77c71fb7182ea5eaeea95360caeb8318dfd2d60d521adbf2f401cd14f51b85bf",
    "8 epochs, 1,304 steps on 2 CPU cores, 26.8 img/s (2 global + 6 local views per image and a skip-less "
    "decoder with heads at five levels); reconstruction MSE 0.68 -> 0.18, global cosine -0.02 -> -0.64, local "
    "cosine -0.03 -> -0.44 (first / last 20 steps). The file holds the encoder",
    epochs=8,
)


def _fundus64(tag: str, method: str, recipe: str, flags: str, file: str, sha256: str, pretrain_data: str,
              notes: str, **fields: object) -> None:
    """A ResNet-18 pretrained on fundus photos of ../shared/data/fundus at 64 px; ``fields`` add to the shared ones."""
    args = f"--arch resnet18 --img-size 64 --batch-size 32 --seed 0 {flags}"
    register_reference((f"resnet18.{tag}",), method, recipe, args, file, sha256, 22383080, notes,
                       dict(FUNDUS64, pretrain_data=pretrain_data), **fields)


_fundus64(
    "swcl_fundus64", "swcl", "swcl_fundus", "--data ../shared/data/fundus --epochs 30",
    "swcl_resnet18.fundus64.safetensors", "d9599b4c62ac010763df8a80afbaa79810e087cd0cda0c2c493688052ca01b70",
    "SWCL patches of ../shared/data/fundus: 195 photos (EyePACS 130 + HRF 45 labelled for the pseudo-labeller, "
    "DRIVE's 20 training photos unlabelled; DRIVE test never read), photos at S = 128 px, five 64-px patches each, "
    "700 left/right samples",
    "SWCL multi-label SupCon, 30 epochs, 630 steps, 575 s on 2 CPU cores (47 samples/s) after the cached "
    "pseudo-labeller (ResNet-34, 259 CPU-s, held-out ACC 0.657 / AUC 0.599 on 35 photos); SupCon 5.30 -> 3.95. "
    "Normalised with SWCL's fundus mean/std, as upstream",
    intensity=SWCL_FUNDUS,
)
_fundus64(
    "micle_fundus64", "micle", "micle_fundus",
    "--data ../shared/data/fundus/eyepacs --epochs 200 --hparam temperature=0.2 --hparam aug=mocov2",
    "micle_resnet18.fundus64.safetensors", "7a0a279d18d84869a44c3e11ffdb8b11f03b9dc4b479d7d69b61affcaa94c7cb",
    "the 130 EyePACS photos of ../shared/data/fundus/eyepacs (FOV-cropped, 64 px; 75 patients, 110 photos with a "
    "same-patient partner: the other eye)",
    "MICLe (SimCLR with the other eye as positive), MoCo v2 augmentation, 200 epochs, 800 steps, 346 s on 2 CPU "
    "cores (87 img/s); NT-Xent 4.00 -> 3.36 (first / last 20 steps). ImageNet mean/std",
    license_data="EyePACS: Kaggle Diabetic Retinopathy Detection rules, research use",
)
