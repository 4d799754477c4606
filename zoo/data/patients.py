"""Patient identity and eye side read from the file names of the public datasets (torch-free).

- Kermany chest X-rays: ``person1000_bacteria_2931`` -> ``person1000``; ``IM-0629-0001-0002`` ->
  ``IM-0629`` and ``NORMAL2-IM-0383-0001`` -> ``NORMAL2-IM-0383`` (the two NORMAL series number
  their patients independently, so the prefix stays part of the id).
- EyePACS fundus photos: ``10_left`` / ``10_right`` -> patient ``10``, eye ``left`` / ``right``.

Names that match no scheme have no patient id (``None``): each such image is its own patient.
MICLe uses the ids for same-patient positives; SWCL uses the eye side to mirror right eyes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["patient_id", "eye_side", "group_by_patient"]

_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)(?:_\d+)+$"),  # Kermany PNEUMONIA
    re.compile(r"^((?:NORMAL2-)?IM-\d+)(?:-\d+)+$"),  # Kermany NORMAL
    re.compile(r"^(\d+)_(?:left|right)$"),  # EyePACS
)
_EYE = re.compile(r"_(left|right)$")


def _stem(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    return name.split(".", 1)[0] if "." in name else name


def patient_id(path: str | os.PathLike[str]) -> str | None:
    """The patient a file belongs to, from its name; ``None`` if the name carries no patient id."""
    stem = _stem(path)
    for pattern in _PATTERNS:
        m = pattern.match(stem)
        if m:
            return m.group(1)
    return None


def eye_side(path: str | os.PathLike[str]) -> str | None:
    """``"left"`` or ``"right"`` for EyePACS-style names (``10_left.jpeg``), else ``None``."""
    m = _EYE.search(_stem(path))
    return m.group(1) if m else None


def group_by_patient(paths: Iterable[str | os.PathLike[str]]) -> list[list[int]]:
    """Indices of ``paths`` grouped by patient, in first-seen order; files without an id stand alone."""
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        pid = patient_id(path)
        groups.setdefault(pid if pid is not None else f"\0{i}", []).append(i)
    return list(groups.values())
