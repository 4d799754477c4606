"""Official upstream checkpoints -> zoo safetensors files (``zoo convert``).

:mod:`zoo.convert.layouts` is the torch-free table of layouts (what each official file holds and how its
keys map to zoo's); :mod:`zoo.convert.core` reads, maps, validates and writes. The core is imported on
first use, so listing the layouts stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

from .layouts import LAYOUTS, Drop, Layout, Rename, get_layout, layout_names

_LAZY = {
    name: "zoo.convert.core"
    for name in (
        "ALLOWED_GLOBALS", "ConvertError", "ConversionResult", "read_official", "extract_state_dict",
        "convert_checkpoint", "registry_entry",
    )
}

__all__ = ["LAYOUTS", "Drop", "Layout", "Rename", "get_layout", "layout_names", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.convert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
