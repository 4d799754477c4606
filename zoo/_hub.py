"""Where weight files come from, and proof that they are the registered bytes (torch-free).

:func:`resolve_weights` walks an ordered list of :class:`WeightSource` objects and returns the first
file found, after :func:`verify_file` has checked its sha256. Verification results are cached as
*stamps* keyed by (path, size, mtime, inode), so warm loads do not re-hash; any change to the file
invalidates its stamp. The hub knows files and hashes, never architectures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ._pretrained import PretrainedCfg

__all__ = [
    "WeightsNotFoundError",
    "IntegrityError",
    "WeightSource",
    "RepoWeightsSource",
    "MirrorSource",
    "default_sources",
    "resolve_weights",
    "verify_file",
    "sha256_file",
    "repo_weights_dir",
    "cache_dir",
    "convert_command",
]

_logger = logging.getLogger(__name__)
_CHUNK = 1 << 20


class WeightsNotFoundError(FileNotFoundError):
    """No source holds the weight file; the message lists every source tried and the fix."""


class IntegrityError(RuntimeError):
    """A file's sha256 differs from the registered one; nothing was loaded."""


def repo_weights_dir() -> Path:
    """The repository's ``weights/`` directory (next to the ``zoo`` package)."""
    return Path(__file__).resolve().parent.parent / "weights"


def cache_dir() -> Path:
    """zoo's own cache (``$ZOO_CACHE_DIR``, default ``~/.cache/zoo``)."""
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zoo"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "stamps" / f"{key}.json"


def _file_id(path: Path) -> dict[str, int | str]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_json_atomic(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    check is stamped so the next call with the same unchanged file is instant.
    """
    path = Path(path)
    ident = _file_id(path)
    if file_size is not None and ident["size"] != file_size:
        raise IntegrityError(
            f"{path} has {ident['size']} bytes, the registry expects {file_size}: the file is truncated "
            f"or not the registered one. Nothing was loaded.{' Fix: ' + fix if fix else ''}"
        )
    stamp = _stamp_path(path)
    if use_stamp and sha256 is not None:
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
            f"The file is corrupted or not the registered one. Nothing was loaded."
            f"{' Fix: ' + fix if fix else ''}"
        )
    if sha256 is not None:
        try:
            _write_json_atomic(stamp, {"id": ident, "sha256": actual})
        except OSError as err:  # a read-only cache only costs speed
            _logger.debug("could not write verification stamp %s: %s", stamp, err)
    return actual


class WeightSource(Protocol):
    """One place weight files may be found. ``locate`` must not touch the network."""

    name: str

    def locate(self, cfg: PretrainedCfg) -> Path | None:
        """The local path of ``cfg``'s file if this source holds it, else None."""
        ...

    def describe(self, cfg: PretrainedCfg) -> str:
        """Where this source looked, for error messages."""
        ...


@dataclass
class RepoWeightsSource:
    """Files shipped in the repository's ``weights/`` directory."""

    root: Path | None = None
    name: str = "repository weights/"

    def _path(self, cfg: PretrainedCfg) -> Path | None:
        return (self.root or repo_weights_dir()) / cfg.file if cfg.file else None

    def locate(self, cfg: PretrainedCfg) -> Path | None:
        path = self._path(cfg)
        return path if path is not None and path.is_file() else None

    def describe(self, cfg: PretrainedCfg) -> str:
        path = self._path(cfg)
        return f"{self.name}: {path}" if path else f"{self.name}: (no file registered)"


@dataclass
class MirrorSource:
    """An air-gapped mirror directory (``$ZOO_WEIGHTS_DIR``).

    Layout: ``<dir>/<hf_hub_id>/<hf_hub_filename>`` for Hub-hosted weights, ``<dir>/<file>`` otherwise.
    """

    root: Path | None = None
    name: str = "mirror $ZOO_WEIGHTS_DIR"

    def _root(self) -> Path | None:
        if self.root is not None:
            return self.root
        env = os.environ.get("ZOO_WEIGHTS_DIR")
        return Path(env) if env else None

    def _candidates(self, cfg: PretrainedCfg) -> list[Path]:
        root = self._root()
        if root is None:
            return []
        out = []
        if cfg.hf_hub_id:
            out.append(root / cfg.hf_hub_id / cfg.hf_hub_filename)
        if cfg.file:
            out.append(root / cfg.file)
        return out

    def locate(self, cfg: PretrainedCfg) -> Path | None:
        return next((p for p in self._candidates(cfg) if p.is_file()), None)

    def describe(self, cfg: PretrainedCfg) -> str:
        cands = self._candidates(cfg)
        if not cands:
            return f"{self.name}: (not set)"
        return f"{self.name}: " + ", ".join(str(p) for p in cands)


def default_sources() -> list[WeightSource]:
    """The local sources in resolution order."""
    return [MirrorSource(), RepoWeightsSource()]


def convert_command(cfg: PretrainedCfg, path: str = "PATH") -> str:
    """The ``zoo convert`` command that turns the official file of ``cfg`` into its registered file."""
    return f"zoo convert --from {cfg.convert_from} {path} --name {cfg.name} -o $ZOO_WEIGHTS_DIR/{cfg.file}"


def _fix_hint(cfg: PretrainedCfg) -> str:
    if cfg.is_official:
        unset = "" if os.environ.get("ZOO_WEIGHTS_DIR") else " (set ZOO_WEIGHTS_DIR to a directory first)"
        return f"download the original from {cfg.origin} and run `{convert_command(cfg)}`{unset}"
    return f"restore the file (e.g. `git checkout -- weights/{cfg.file}`) or re-download it"


def resolve_weights(cfg: PretrainedCfg, sources: Sequence[WeightSource] | None = None) -> Path:
    """Find ``cfg``'s weight file in the first source that holds it, verified against its sha256."""
    if not cfg.has_weights:
        raise WeightsNotFoundError(
            f"{cfg.name} has no registered pretrained weights. Use pretrained=False, or one of the "
            f"tags listed by `zoo list {cfg.architecture}* --pretrained`."
        )
    sources = list(default_sources() if sources is None else sources)
    for source in sources:
        path = source.locate(cfg)
        if path is None:
            continue
        _logger.debug("%s: found in %s at %s", cfg.name, source.name, path)
        if cfg.sha256 is None:
            _logger.warning(
                "%s: no registered sha256 (verified=False); loading %s unchecked", cfg.name, path
            )
        else:
            verify_file(path, cfg.sha256, cfg.file_size, fix=_fix_hint(cfg))
        return path
    tried = "\n".join(f"  - {s.describe(cfg)}" for s in sources)
    raise WeightsNotFoundError(
        f"Weights for {cfg.name} not found. Sources tried, in order:\n{tried}\nFix: {_fix_hint(cfg)}."
    )
