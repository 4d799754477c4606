"""Figures every layer draws the same way (torch-free): matplotlib on Agg, one saver, and the PNG text
chunks that tie a Grad-CAM figure to the command and the weights that drew it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save_figure", "gradcam_metadata", "gradcam_info"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures are written to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``fig`` (parent directories created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata=metadata)
    pyplot().close(fig)
    return path


def gradcam_metadata(command: str, sha256: str | None) -> dict[str, str]:
    """The PNG text chunks of a ``zoo gradcam`` figure: the command that drew it and the weights' sha256."""
    return {"Source": command, "Description": f"checkpoint sha256 {sha256 or 'none'}"}


def gradcam_info(png: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(command, sha256)`` recorded in a ``zoo gradcam`` figure (empty command / None when absent)."""
    from PIL import Image

    with Image.open(png) as img:
        command, desc = img.info.get("Source", ""), img.info.get("Description", "")
    sha = desc.removeprefix("checkpoint sha256 ") if desc.startswith("checkpoint sha256 ") else None
    return command, None if sha == "none" else sha
