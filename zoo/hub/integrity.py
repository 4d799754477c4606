"""Proof that a file holds the registered bytes: full sha256, stamps that spare warm loads a re-hash, and the canonical safetensors header."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path

from .._io import atomic_write_json, sha256_file
from .paths import IntegrityError, _env_true, cache_dir

__all__ = ["verify_file", "canonical_safetensors", "always_rehash", "FileChangedError"]

_logger = logging.getLogger(__name__)


# --- hashing and stamps ------------------------------------------------------------------------------
def canonical_safetensors(path: str | os.PathLike[str]) -> None:
    """Rewrite the header with sorted keys, so the same tensors and metadata give the same bytes.

    safetensors stores metadata in a hash map whose order changes between runs; a stable file hash is
    what lets a converted official file, or a shipped one, be pinned in the registry.
    """
    with open(path, "r+b") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        data = fh.read()
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        fh.seek(0)
        fh.write(struct.pack("<Q", len(text)) + text + data)
        fh.truncate()


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "stamps" / f"{key}.json"


def _file_id(path: Path) -> dict[str, int | str]:
    # ctime cannot be set from user space: a rewrite that restores size and mtime still changes it
    st = path.stat()
    return {
        "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "dev": st.st_dev,
    }


class FileChangedError(IntegrityError):
    """The file changed while it was being hashed: the hash proves nothing about what a load would read."""


def always_rehash() -> bool:
    """True when ``ZOO_ALWAYS_REHASH`` is set: every load hashes the whole file, stamps are ignored."""
    return _env_true("ZOO_ALWAYS_REHASH")


def _write_stamp(path: Path, sha256: str, ident: dict[str, int | str] | None = None) -> None:
    """Remember that the file with identity ``ident`` (default: stat it now) has ``sha256``.

    Callers that hashed the file pass the identity they took *before* hashing, so a write that landed
    during the hash can never be stamped as good.
    """
    stamp = _stamp_path(path)
    try:
        atomic_write_json(stamp, {"id": ident or _file_id(path), "sha256": sha256}, indent=None, fsync=False)
    except OSError as err:  # a read-only cache only costs speed
        _logger.debug("could not write verification stamp %s: %s", stamp, err)


def verify_file(
    path: str | os.PathLike[str],
    sha256: str | None,
    file_size: int | None = None,
    *,
    fix: str = "",
    use_stamp: bool = True,
) -> str:
    """Check ``path`` against the registered ``sha256`` (and size); return the actual hash.

    Raises :class:`IntegrityError` naming the expected and actual hashes and ``fix``. A successful
    check is stamped so the next call with the same unchanged file is instant: the file's identity
    (size, mtime, ctime, inode, device) is taken *before* hashing and compared after it; if it changed
    the file was written during the hash, nothing is stamped and :class:`FileChangedError` is raised.
    ``ZOO_ALWAYS_REHASH=1`` ignores stamps (every load hashes the whole file).
    """
    path = Path(path)
    ident = _file_id(path)
    fix_text = f" Fix: {fix}" if fix else ""
    if file_size is not None and ident["size"] != file_size:
        raise IntegrityError(
            f"{path} has {ident['size']} bytes, the registry expects {file_size}: the file is truncated "
            f"or not the registered one. Nothing was loaded.{fix_text}"
        )
    stamp = _stamp_path(path)
    if use_stamp and sha256 is not None and not always_rehash():
        try:
            data = json.loads(stamp.read_text())
            if data.get("id") == ident and data.get("sha256") == sha256:
                return sha256
        except (OSError, ValueError):
            pass
    actual = sha256_file(path)
    if sha256 is not None and actual != sha256:
        stamp.unlink(missing_ok=True)
        raise IntegrityError(
            f"sha256 mismatch for {path}:\n  expected {sha256}\n  actual   {actual}\n"
            f"The file is corrupted or not the registered one. Nothing was loaded.{fix_text}"
        )
    after = _file_id(path)
    if after != ident:
        stamp.unlink(missing_ok=True)
        changed = ", ".join(k for k in ident if ident[k] != after[k])
        raise FileChangedError(
            f"{path} changed while it was being hashed ({changed} differ before and after), so its hash "
            f"proves nothing about the bytes a load would read. Nothing was loaded or stamped. Fix: stop "
            f"whatever is writing to the file, then load again.{fix_text}"
        )
    if sha256 is not None:
        _write_stamp(path, actual, ident)
    return actual
