"""File helpers every layer shares (torch-free): atomic writes and sha256 of a file. The one copy of each."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "sha256_file"]

_CHUNK = 1 << 20
_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it), then restored
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any], fsync: bool = True) -> Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file beside it, then it is renamed.

    A reader sees the old file or the new one, never a half-written one; on any error the temporary
    file is removed and ``path`` is untouched. Concurrent writers each use their own temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets the mode an ordinary write would
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, fsync: bool = True) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text), fsync=fsync)


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 1, sort_keys: bool = True,
                      fsync: bool = True) -> Path:
    """:func:`atomic_write` of a JSON file."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys), fsync=fsync)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
