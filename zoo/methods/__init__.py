"""Self-supervised objectives, one file per method; each is an :class:`~zoo.methods.base.SSLMethod`.

``get_method(name)`` imports the implementing module lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["METHODS", "METHOD_SUMMARIES", "get_method"]

# method name -> "module:Class"
METHODS: dict[str, str] = {
    "simclr": "zoo.methods.simclr:SimCLR",
    "mocov2": "zoo.methods.mocov2:MoCoV2",
    "pcrl": "zoo.methods.pcrl:PCRL",
    "pcrlv2": "zoo.methods.pcrlv2:PCRLv2",
    "genesis": "zoo.methods.genesis:ModelsGenesis",
    "swcl": "zoo.methods.swcl:SWCL",
    "micle": "zoo.methods.micle:MICLe",
}

# method name -> one line (``zoo pretrain --help``; no import of the method needed)
METHOD_SUMMARIES: dict[str, str] = {
    "simclr": "SimCLR: two views per image, NT-Xent (2D networks)",
    "mocov2": "MoCo v2: momentum encoder, 65,536-key queue, InfoNCE (2D networks)",
    "pcrl": "PCRL: contrast + preservational restoration on a U-Net (2D/3D; encoder networks train their U-Net)",
    "pcrlv2": "PCRLv2: multi-scale SimSiam + restoration (2D ResNet, 3D U-Net without skips)",
    "genesis": "Models Genesis: 3D restoration on a U-Net with batch-statistics BN",
    "swcl": "SWCL: pseudo-labelled fundus patches, multi-label SupCon (2D; --data-option for its data stages)",
    "micle": "MICLe: SimCLR with same-patient image pairs as positives (2D)",
}


def get_method(name: str) -> Any:
    """The :class:`SSLMethod` subclass registered as ``name``."""
    try:
        target = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
