"""Where a weight file can be: the mirror, the repository's weights/, the Hugging Face cache and Hub, a plain URL."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..meta.cfg import PretrainedCfg
from .integrity import _write_stamp
from .paths import (
    _CHUNK,
    _COMMIT,
    _TIMEOUT,
    WEIGHTS_NAME,
    IntegrityError,
    cache_dir,
    hf_cache_dir,
    hf_endpoint,
    offline_mode,
    repo_weights_dir,
)

__all__ = ["WeightFile", "WeightSource", "RemoteSource", "RepoWeightsSource", "MirrorSource", "HubSource", "UrlSource", "default_sources", "convert_command", "mirror_paths"]


def convert_command(cfg: PretrainedCfg, path: str = "PATH") -> str:
    """The ``zoo convert`` command that turns the official file of ``cfg`` into its registered file."""
    return f"zoo convert --from {cfg.convert_from} {path} --name {cfg.name} -o $ZOO_WEIGHTS_DIR/{cfg.file}"


# --- what to look for ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightFile:
    """One file to find: where it may live and the bytes it must have. No architecture.

    ``name`` is what the file is for (``arch.tag`` or ``hf-hub:org/name``); it appears in messages and
    in the commands they suggest (``zoo download NAME``).
    """

    name: str
    file: str | None = None  # bare name in weights/ (and at the mirror's root)
    hf_hub_id: str | None = None
    hf_hub_filename: str = WEIGHTS_NAME
    hf_hub_revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    restore_hint: str = ""  # how to obtain the file when no source can (e.g. convert official weights)
    hash_required: bool = True  # False for metadata (config.json) that has no registered hash

    @classmethod
    def from_cfg(cls, cfg: PretrainedCfg, name: str | None = None) -> WeightFile:
        """The weight file of a pretrained config."""
        hint = ""
        if cfg.is_official:
            unset = "" if os.environ.get("ZOO_WEIGHTS_DIR") else " (set ZOO_WEIGHTS_DIR to a directory first)"
            hint = f"download the original from {cfg.origin} and run `{convert_command(cfg)}`{unset}"
        elif cfg.file and not (cfg.hf_hub_id or cfg.url):
            hint = f"restore the file (e.g. `git checkout -- weights/{cfg.file}`)"
        return cls(
            name=name or cfg.name, file=cfg.file, hf_hub_id=cfg.hf_hub_id, hf_hub_filename=cfg.hf_hub_filename,
            hf_hub_revision=cfg.hf_hub_revision, url=cfg.url, sha256=cfg.sha256, size=cfg.file_size,
            restore_hint=hint,
        )

    @property
    def filename(self) -> str:
        """The file's own name, for messages."""
        if self.file:
            return self.file
        if self.hf_hub_id:
            return self.hf_hub_filename
        if self.url:
            return _url_basename(self.url)
        return "?"

    @property
    def has_source(self) -> bool:
        """True when some place for the file is registered."""
        return bool(self.file or self.hf_hub_id or self.url)

    @property
    def revision(self) -> str:
        """The Hub revision to use (``main`` when none is registered)."""
        return self.hf_hub_revision or "main"

    @property
    def immutable(self) -> bool:
        """True when the bytes are fixed by a hash or a commit, so any cached copy is the right one."""
        return self.sha256 is not None or bool(_COMMIT.match(self.hf_hub_revision or ""))


def _url_basename(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name or "download"


# --- sources -----------------------------------------------------------------------------------------
class WeightSource(Protocol):
    """A place that may hold weight files locally. ``locate`` never touches the network."""

    name: str

    def locate(self, wf: WeightFile) -> Path | None:
        """The local path of ``wf`` if this source holds it, else None."""
        ...

    def describe(self, wf: WeightFile) -> str:
        """Where this source looked, for error messages."""
        ...

    def repair_hint(self, wf: WeightFile) -> str:
        """How to replace a corrupt copy found here."""
        ...


@runtime_checkable
class RemoteSource(Protocol):
    """A source that can also download: ``fetch`` stores the file locally and returns its path."""

    remote_name: str

    def can_fetch(self, wf: WeightFile) -> bool:
        """True when ``wf`` has a location this source downloads from."""
        ...

    def remote_location(self, wf: WeightFile) -> str:
        """The address downloaded from, for messages."""
        ...

    def fetch(self, wf: WeightFile, force: bool = False) -> Path:
        """Download ``wf`` (again if ``force``) and return the local path."""
        ...


def _download_hint(wf: WeightFile, force: bool = False) -> str:
    return f"`zoo download{' --force' if force else ''} {wf.name}`"


@dataclass
class RepoWeightsSource:
    """Files shipped in the repository's ``weights/`` directory."""

    root: Path | None = None
    name: str = "repository weights/"

    def _path(self, wf: WeightFile) -> Path | None:
        return (self.root or repo_weights_dir()) / wf.file if wf.file else None

    def locate(self, wf: WeightFile) -> Path | None:
        path = self._path(wf)
        return path if path is not None and path.is_file() else None

    def describe(self, wf: WeightFile) -> str:
        path = self._path(wf)
        return f"{self.name}: {path}" if path else f"{self.name}: (no file registered)"

    def repair_hint(self, wf: WeightFile) -> str:
        return wf.restore_hint or f"restore the file (e.g. `git checkout -- weights/{wf.file}`)"


@dataclass
class MirrorSource:
    """An air-gapped mirror directory (``$ZOO_WEIGHTS_DIR``), as written by ``zoo mirror``.

    Layout: ``<dir>/<hf_hub_id>/<hf_hub_filename>`` for Hub-hosted files, ``<dir>/<file>`` for files of
    ``weights/``, ``<dir>/<url basename>`` for URL-hosted ones; ``<dir>/manifest.json`` lists every
    file with its sha256.
    """

    root: Path | None = None
    name: str = "mirror $ZOO_WEIGHTS_DIR"

    def _root(self) -> Path | None:
        if self.root is not None:
            return self.root
        env = os.environ.get("ZOO_WEIGHTS_DIR")
        return Path(env).expanduser() if env else None

    def _candidates(self, wf: WeightFile) -> list[Path]:
        root = self._root()
        if root is None:
            return []
        return [root / rel for rel in mirror_paths(wf)]

    def locate(self, wf: WeightFile) -> Path | None:
        return next((p for p in self._candidates(wf) if p.is_file()), None)

    def describe(self, wf: WeightFile) -> str:
        cands = self._candidates(wf)
        if not cands:
            return f"{self.name}: (not set)"
        return f"{self.name}: " + ", ".join(str(p) for p in cands)

    def repair_hint(self, wf: WeightFile) -> str:
        return (f"the mirror copy is damaged: copy it again from a connected machine "
                f"(`zoo mirror {wf.name} --to DIR`), or delete it so other sources are used")


def mirror_paths(wf: WeightFile) -> list[str]:
    """Where ``wf`` lives inside a mirror directory, relative to its root (first = where zoo writes it)."""
    out = []
    if wf.hf_hub_id:
        out.append(f"{wf.hf_hub_id}/{wf.hf_hub_filename}")
    if wf.file:
        out.append(wf.file)
    if wf.url:
        out.append(_url_basename(wf.url))
    return out


@dataclass
class HubSource:
    """The Hugging Face cache (locally) and the Hugging Face Hub (remotely), via ``huggingface_hub``."""

    name: str = "Hugging Face cache"
    remote_name: str = "Hugging Face Hub"

    def locate(self, wf: WeightFile) -> Path | None:
        if not wf.hf_hub_id:
            return None
        if not wf.immutable and not offline_mode():
            return None  # a moving branch and no hash: ask the Hub (the client uses its cache itself)
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(wf.hf_hub_id, wf.hf_hub_filename, cache_dir=hf_cache_dir(),
                                     revision=wf.revision)
        return Path(hit) if isinstance(hit, str) else None

    def describe(self, wf: WeightFile) -> str:
        if not wf.hf_hub_id:
            return f"{self.name}: (no Hub repository registered)"
        folder = "models--" + wf.hf_hub_id.replace("/", "--")
        return f"{self.name}: {hf_cache_dir() / folder / 'snapshots' / wf.revision / wf.hf_hub_filename}"

    def repair_hint(self, wf: WeightFile) -> str:
        return _download_hint(wf, force=True)

    def can_fetch(self, wf: WeightFile) -> bool:
        return bool(wf.hf_hub_id)

    def remote_location(self, wf: WeightFile) -> str:
        return f"{hf_endpoint()}/{wf.hf_hub_id}/resolve/{wf.revision}/{wf.hf_hub_filename}"

    def fetch(self, wf: WeightFile, force: bool = False) -> Path:
        from huggingface_hub import hf_hub_download

        assert wf.hf_hub_id
        return Path(hf_hub_download(
            wf.hf_hub_id, wf.hf_hub_filename, revision=wf.revision, cache_dir=hf_cache_dir(),
            endpoint=hf_endpoint(), force_download=force, library_name="zoo",
        ))


@dataclass
class UrlSource:
    """Plain URLs, downloaded into ``<zoo cache>/downloads/<name>/`` (and found there later)."""

    name: str = "zoo download cache"
    remote_name: str = "URL"

    def _dest(self, wf: WeightFile) -> Path | None:
        if not wf.url:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", wf.name)
        return cache_dir() / "downloads" / safe / _url_basename(wf.url)

    def locate(self, wf: WeightFile) -> Path | None:
        dest = self._dest(wf)
        return dest if dest is not None and dest.is_file() else None

    def describe(self, wf: WeightFile) -> str:
        dest = self._dest(wf)
        return f"{self.name}: {dest}" if dest else f"{self.name}: (no URL registered)"

    def repair_hint(self, wf: WeightFile) -> str:
        return _download_hint(wf, force=True)

    def can_fetch(self, wf: WeightFile) -> bool:
        return bool(wf.url)

    def remote_location(self, wf: WeightFile) -> str:
        return str(wf.url)

    def fetch(self, wf: WeightFile, force: bool = False) -> Path:
        dest = self._dest(wf)
        assert dest is not None and wf.url
        return _download_url(wf.url, dest, wf, force=force)


def _download_url(url: str, dest: Path, wf: WeightFile, force: bool) -> Path:
    """Stream ``url`` to ``dest.partial`` under a file lock, check size and sha256, then rename.

    Only verified bytes ever appear at ``dest``; an interrupted download leaves at most a ``.partial``
    file, which nothing reads and the next download overwrites.
    """
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file() and not force:
            return dest  # another process finished it while we waited; the caller verifies it
        partial = dest.with_name(dest.name + ".partial")
        digest, received = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": "zoo"})
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as resp, open(partial, "wb") as out:
                announced = resp.headers.get("Content-Length")
                while chunk := resp.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if announced is not None and received != int(announced):
                raise OSError(f"download of {url} stopped after {received} of {announced} bytes")
            actual = digest.hexdigest()
            fix = f"retry with {_download_hint(wf, force=True)}; if it persists, the file at {url} is not the registered one"
            if wf.size is not None and received != wf.size:
                raise IntegrityError(f"{url} gave {received} bytes, the registry expects {wf.size}. "
                                     f"Nothing was kept or loaded. Fix: {fix}")
            if wf.sha256 is not None and actual != wf.sha256:
                raise IntegrityError(f"sha256 mismatch for {url}:\n  expected {wf.sha256}\n  actual   {actual}\n"
                                     f"Nothing was kept or loaded. Fix: {fix}")
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if wf.sha256 is not None:
            _write_stamp(dest, actual)  # hashed while streaming: no second pass
    return dest


def default_sources() -> list[WeightSource]:
    """The sources in resolution order (local look-ups in this order, then downloads in this order)."""
    return [MirrorSource(), RepoWeightsSource(), HubSource(), UrlSource()]


