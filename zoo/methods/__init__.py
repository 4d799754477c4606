"""Self-supervised objectives, one file per method; each is an :class:`~zoo.methods.base.SSLMethod`.

``get_method(name)`` imports the implementing module lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["METHODS", "get_method"]

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


def get_method(name: str) -> Any:
    """The :class:`SSLMethod` subclass registered as ``name``."""
    try:
        target = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
