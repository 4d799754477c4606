"""What every catalog family shares: papers, intensity presets, and how a checkpoint is registered (torch-free).

A *network* is declared once (:func:`declare_model`, with the module that implements it); its *weights* are
tags registered with :func:`register_pretrained`: ``resnet18.pcrl_kermany64`` carries its method, data,
modality, licences, sha256 and measured results as metadata, as timm's pretrained tags and torchvision's
weight enums do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cfg import Intensity
from ..recipes import DEFAULT_DATA_DIR, recipe_command
from ..registry import declare_model, register_pretrained

__all__ = [
    "PAPERS",
    "SWCL_FUNDUS",
    "declare",
    "register_official",
    "register_reference",
    "KERMANY64",
    "CT32",
    "FUNDUS64",
]

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

# SWCL's fundus photo mean/std (upstream's normalisation for both of its backbones)
SWCL_FUNDUS = Intensity(mean=(0.1633, 0.2259, 0.3219), std=(0.1756, 0.2195, 0.3038))


def declare(name: str, description: str, family: dict[str, Any], **kwargs: Any) -> None:
    """Declare network ``name`` with its family's defaults (``kwargs`` override them)."""
    declare_model(name, description=description, **{**family, **kwargs})


def register_official(names: tuple[str, ...], method: str, **fields: Any) -> None:
    """One official upstream checkpoint under several names (an encoder and its _seg network share a file).

    Released by the upstream authors and converted by each user with ``zoo convert`` (zoo does not
    redistribute them): sha256 / file_size stay None and verified=False until a converted file's hash is
    pinned; ``zoo convert`` prints the entry to paste here.
    """
    for name in names:
        register_pretrained(name, method=method, paper=PAPERS[method], **fields)


# measured downstream results of each reference checkpoint: written by scripts/evaluate_reference.sh from the
# `zoo eval` results files in results/ (`zoo report --metrics`); tests/meta/test_shipped_weights.py checks they agree
REFERENCE_METRICS: dict[str, Any] = json.loads(Path(__file__).with_name("reference_metrics.json").read_text())


def register_reference(
    names: tuple[str, ...], method: str, recipe: str, pretrain_args: str, file: str, sha256: str, file_size: int,
    notes: str, shared: dict[str, Any], default: bool | tuple[str, ...] = False, **fields: Any,
) -> None:
    """A reference checkpoint of ``scripts/pretrain_reference.sh RECIPE``, shipped by scripts/ship_weights.py.

    ``names``: every ``network.tag`` that loads the file (e.g. the encoder and the encoder-decoder of a U-Net
    file); the metrics were measured with the first. ``file`` keeps the name the file was released under, so
    existing mirrors and caches stay valid. ``default``: the bare network name loads it (True: for every
    name; a tuple: for those names only).
    """
    for i, name in enumerate(names):
        register_pretrained(
            name,
            default=default is True or (isinstance(default, tuple) and name in default),
            file=file,
            sha256=sha256,
            file_size=file_size,
            method=method,
            paper=PAPERS[method],
            **{**shared, **fields},
            # the recipe file (zoo/recipes/RECIPE.toml) is the one copy of the flags
            command=f"RUNS=runs bash scripts/pretrain_reference.sh {recipe}  # = "
            f"{recipe_command(recipe, DEFAULT_DATA_DIR)} --out runs/{recipe}; "
            f"python scripts/ship_weights.py runs/{recipe} {names[0]} (float16)",
            verified=True,
            metrics=REFERENCE_METRICS.get(names[0], {}),
            notes=f"Small-scale reference weights ({notes}). Research use only, not for clinical use."
            + ("" if i == 0 else f" Results measured with {names[0]} (the same file)."),
        )


# what every checkpoint pretrained on the Kermany train X-rays at 64 px shares
KERMANY64: dict[str, Any] = dict(
    input_size=(3, 64, 64),
    pretrain_data="Kermany 2018 paediatric chest X-rays, train split only (5,216 images), at 64 px",
    modality="cxr",
    license_weights="CC-BY-4.0",
    license_data="CC-BY-4.0 (Kermany et al. 2018); research and testing use",
)

# what every checkpoint pretrained on the CT volumes of ../shared/data/ct/volumes in 32^3 cubes shares
CT32: dict[str, Any] = dict(
    input_size=(1, 32, 32, 32),
    pretrain_data="the 7 CT volumes of ../shared/data/ct/volumes (Lung-PET-CT-Dx chest CT x4, TotalSegmentator "
    "torso CT and its crop, InVesalius head CT), resampled to 1 mm, random 32^3 cubes, HU [-1000, 1000] -> [0, 1]",
    modality="ct",
    license_weights="GPL-2.0",
    license_data="CC-BY-4.0 (TCIA Lung-PET-CT-Dx), Apache-2.0 (TotalSegmentator test files), GPL-2.0 (InVesalius "
    "head CT)",
)

# what every checkpoint pretrained on the fundus photos of ../shared/data/fundus at 64 px shares
FUNDUS64: dict[str, Any] = dict(
    input_size=(3, 64, 64),
    modality="fundus",
    license_weights="research-use-only (EyePACS and DRIVE are research-use data)",
    license_data="EyePACS: Kaggle Diabetic Retinopathy Detection rules, research use; DRIVE: research use; "
    "HRF: CC-BY-4.0",
)
