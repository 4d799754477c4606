"""The catalog of built-in networks and their weight tags (torch-free), one file per family.

Loaded by the registry on first use. Shipped weights are added in their family's file together with their
file in ``weights/`` and a section in MODEL_CARD.md; :mod:`.aliases` keeps zoo 0.1's names working.
"""

from __future__ import annotations

from . import aliases, resnet, unet  # noqa: F401  (each registers its networks and tags on import)

__all__: list[str] = []
