"""Where the real data is: ``$ZOO_DATA_DIR``, default ``<repo>/../shared/data`` (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "data_path"]


def data_root() -> Path:
    """The data directory; set ``ZOO_DATA_DIR`` to override the default ``../shared/data``."""
    env = os.environ.get("ZOO_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """A path under :func:`data_root`; raises FileNotFoundError naming the fix if it is absent."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. Put the data there or set ZOO_DATA_DIR to the directory that holds "
            f"cxr/, fundus/ and ct/ (see ../shared/data/README.md)."
        )
    return path
