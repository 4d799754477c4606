"""Where weight files come from, and proof that they are the registered bytes (torch-free).

:func:`resolve_weights` finds one file in two phases. First every source is asked, in order, for a
local copy, without touching the network: the mirror directory ``$ZOO_WEIGHTS_DIR`` (laid out by repo
id), the repository's ``weights/``, the Hugging Face cache (``$HF_HUB_CACHE`` / ``$HF_HOME``), zoo's
own download cache. Only when none holds the file, and only when online (neither ``ZOO_OFFLINE`` nor
``HF_HUB_OFFLINE`` is set), the remote sources download it: the Hugging Face Hub with the real
``huggingface_hub`` client (``$HF_ENDPOINT``, pinned to the registered commit), then a plain URL
(streamed to a ``.partial`` file under a file lock, verified, then renamed atomically).

Every file found or downloaded is checked against its registered full sha256 (:func:`verify_file`);
a successful check is remembered as a *stamp* keyed by (path, size, mtime, ctime, inode), so warm loads
do not re-hash, and any write to the file (even one that restores its size and mtime) invalidates it.

``hf-hub:org/name[@revision]`` and ``local-dir:/path`` names (:func:`resolve_hub_model`) read the
``config.json`` written by :func:`zoo.save_for_hf` and return its :class:`PretrainedCfg` and verified
weights. The hub knows files and hashes, never architectures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._pretrained import PretrainedCfg

__all__ = [
    "WeightsNotFoundError",
    "IntegrityError",
    "WeightFile",
    "WeightSource",
    "RemoteSource",
    "RepoWeightsSource",
    "MirrorSource",
    "HubSource",
    "UrlSource",
    "CheckResult",
    "default_sources",
    "resolve_weights",
    "download",
    "mirror",
    "verify_file",
    "verify_local_copies",
    "verify_hf_cache",
    "verify_mirror",
    "sha256_file",
    "canonical_safetensors",
    "repo_weights_dir",
    "cache_dir",
    "convert_command",
    "hf_cache_dir",
    "hf_endpoint",
    "offline_mode",
    "is_hub_name",
    "parse_hub_name",
    "resolve_hub_model",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "MANIFEST_NAME",
    "HUB_PREFIXES",
    "mirror_paths",
]

_logger = logging.getLogger(__name__)
_CHUNK = 1 << 20
_TIMEOUT = 30.0
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}
_DEFAULT_ENDPOINT = "https://huggingface.co"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
MANIFEST_NAME = "manifest.json"
HUB_PREFIXES = ("hf-hub:", "local-dir:")


class WeightsNotFoundError(FileNotFoundError):
    """No source holds the weight file; the message lists every source tried and the fix."""


class IntegrityError(RuntimeError):
    """A file's sha256 (or size) differs from the registered one; nothing was loaded."""


# --- environment, read at call time (not at import, unlike huggingface_hub.constants) -----------------
def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in _TRUE


def offline_mode() -> bool:
    """True when ``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: nothing may touch the network."""
    return _env_true("ZOO_OFFLINE") or _env_true("HF_HUB_OFFLINE")


def _offline_reason() -> str:
    return ", ".join(f"{v}={os.environ[v]}" for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE") if _env_true(v))


def hf_endpoint() -> str:
    """The Hub endpoint: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def repo_weights_dir() -> Path:
    """The repository's ``weights/`` directory (next to the ``zoo`` package)."""
    return Path(__file__).resolve().parent.parent / "weights"


def cache_dir() -> Path:
    """zoo's own cache (``$ZOO_CACHE_DIR``, default ``~/.cache/zoo``): stamps and URL downloads."""
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zoo"


# --- hashing and stamps ------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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


def _write_json_atomic(path: Path, data: dict[str, Any], indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_stamp(path: Path, sha256: str) -> None:
    stamp = _stamp_path(path)
    try:
        _write_json_atomic(stamp, {"id": _file_id(path), "sha256": sha256})
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
    check is stamped so the next call with the same unchanged file is instant.
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
            f"The file is corrupted or not the registered one. Nothing was loaded.{fix_text}"
        )
    if sha256 is not None:
        _write_stamp(path, actual)
    return actual


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


# --- resolution --------------------------------------------------------------------------------------
def _check(wf: WeightFile, path: Path, fix: str, use_stamp: bool) -> None:
    if wf.sha256 is None:
        log = _logger.warning if wf.hash_required else _logger.debug
        log("%s: no registered sha256 (verified=False); using %s unchecked", wf.name, path)
        return
    verify_file(path, wf.sha256, wf.size, fix=fix, use_stamp=use_stamp)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def resolve_weights(
    cfg: PretrainedCfg | WeightFile,
    sources: Sequence[WeightSource] | None = None,
    *,
    download: bool = True,
    force: bool = False,
    use_stamp: bool = True,
) -> Path:
    """Find a weight file locally, else download it; return its path after checking its sha256.

    Args:
        cfg: a pretrained config (its weight file) or a :class:`WeightFile`.
        sources: the sources, in order (default :func:`default_sources`).
        download: allow remote sources (they are also skipped when offline).
        force: skip local copies and download again (``zoo download --force``).
        use_stamp: accept a previous verification of the same unchanged file.

    Raises:
        WeightsNotFoundError: no source holds the file; lists every source tried and the fix.
        IntegrityError: a copy's sha256 or size is wrong; nothing is returned.
    """
    if isinstance(cfg, PretrainedCfg) and not cfg.has_weights:
        raise WeightsNotFoundError(
            f"{cfg.name} has no registered pretrained weights. Use pretrained=False, or one of the "
            f"tags listed by `zoo list {cfg.architecture}* --pretrained`."
        )
    wf = cfg if isinstance(cfg, WeightFile) else WeightFile.from_cfg(cfg)
    sources = list(default_sources() if sources is None else sources)
    offline = offline_mode()
    if force and offline:
        raise WeightsNotFoundError(f"cannot download {wf.name} again: offline ({_offline_reason()}). "
                                   f"Unset it, or run `zoo download --force {wf.name}` on a connected machine.")
    tried: list[str] = []
    if not force:
        for source in sources:
            path = source.locate(wf)
            if path is None:
                tried.append(source.describe(wf))
                continue
            _logger.debug("%s: found in %s at %s", wf.name, source.name, path)
            _check(wf, path, source.repair_hint(wf), use_stamp)
            return path
    remotes = [s for s in sources if isinstance(s, RemoteSource) and s.can_fetch(wf)]
    if force and not remotes:
        raise WeightsNotFoundError(f"{wf.name} has no Hub repository or URL to download again from. "
                                   f"Fix: {wf.restore_hint or 'restore the file from where it was obtained'}.")
    for remote in remotes:
        where = f"{remote.remote_name}: {remote.remote_location(wf)}"
        if offline or not download:
            tried.append(f"{where} (skipped: {'offline, ' + _offline_reason() if offline else 'download=False'})")
            continue
        try:
            _logger.info("%s: downloading %s", wf.name, where)
            path = remote.fetch(wf, force=force)
        except IntegrityError:
            raise
        except Exception as err:  # every client error is reported, then the next source is tried
            _logger.warning("%s: %s failed: %s", wf.name, where, _first_line(err))
            tried.append(f"{where} (failed: {_first_line(err)})")
            continue
        fix = (f"retry with {_download_hint(wf, force=True)}; if it persists, the file at "
               f"{remote.remote_location(wf)} is not the registered one")
        _check(wf, path, fix, use_stamp=False)
        return path
    lines = "\n".join(f"  - {t}" for t in tried)
    fixes = []
    if remotes:
        fixes.append(f"run {_download_hint(wf)} on a machine with network" + (" (or unset the offline switch)"
                                                                             if offline else ""))
        fixes.append(f"or `zoo mirror {wf.name} --to DIR` there and set ZOO_WEIGHTS_DIR=DIR here")
    if wf.restore_hint:
        fixes.append(wf.restore_hint)
    raise WeightsNotFoundError(
        f"Weights for {wf.name} ({wf.filename}) not found. Sources tried, in order:\n{lines}\n"
        f"Fix: {'; '.join(fixes) or 'register a weight source'}."
    )


# --- hf-hub: and local-dir: names --------------------------------------------------------------------
def is_hub_name(name: str) -> bool:
    """True for ``hf-hub:org/name[@revision]`` and ``local-dir:/path`` names."""
    return name.startswith(HUB_PREFIXES)


def parse_hub_name(name: str) -> tuple[str, str, str | None]:
    """``"hf-hub:org/name@rev"`` -> ``("hf-hub", "org/name", "rev")``; ``"local-dir:/p"`` -> ``("local-dir", "/p", None)``."""
    source, _, rest = name.partition(":")
    if source not in ("hf-hub", "local-dir") or not rest:
        raise ValueError(f"{name!r}: expected 'hf-hub:org/name[@revision]' or 'local-dir:/path'")
    if source == "local-dir":
        return source, rest, None
    repo_id, _, revision = rest.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{name!r}: a Hub name is 'hf-hub:org/name[@revision]', e.g. 'hf-hub:zoo-org/pcrl_resnet18'")
    return source, repo_id, revision or None


def _read_config(path: Path, where: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{where}: cannot read {path} ({err}). Download it again: `zoo download --force {where}`") from err
    if not isinstance(config, dict):
        raise ValueError(f"{where}: {path} is not a JSON object")
    return config


def _cfg_from_config(config: dict[str, Any], where: str) -> PretrainedCfg:
    block = config.get("zoo")
    if not isinstance(block, dict) or not isinstance(block.get("pretrained_cfg"), dict):
        arch = config.get("architecture")
        hint = f" It describes a timm model ({arch}): load it with timm.create_model('{where}')." if arch else ""
        raise ValueError(f"{where}: config.json has no 'zoo' block, so it was not written by zoo.save_for_hf.{hint}")
    try:
        return PretrainedCfg.from_dict(block["pretrained_cfg"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: the zoo block of config.json does not fit this zoo version ({err}). "
                         f"Upgrade zoo (`pip install -U medzoo`).") from err


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/file``)."""
    if path.parent.parent.name == "snapshots" and _COMMIT.match(path.parent.name):
        return path.parent.name
    return None


def resolve_hub_model(
    name: str, pretrained: bool = True, *, download: bool = True, force: bool = False
) -> tuple[PretrainedCfg, Path | None]:
    """The config and (if ``pretrained``) the verified weights of an ``hf-hub:`` or ``local-dir:`` name.

    The repository (or directory) holds ``config.json`` with a ``zoo`` block (written by
    :func:`zoo.save_for_hf`) and ``model.safetensors``, whose sha256 the config records. An ``hf-hub:``
    name is looked up in the mirror, then the Hugging Face cache, then on the Hub; the weights are
    pinned to the commit the config came from.
    """
    source, target, revision = parse_hub_name(name)
    if source == "local-dir":
        root = Path(target).expanduser()
        config_path = root / CONFIG_NAME
        if not config_path.is_file():
            raise WeightsNotFoundError(f"{name}: {config_path} not found. Write the directory with "
                                       f"zoo.save_for_hf(model, {str(root)!r}).")
        cfg = _cfg_from_config(_read_config(config_path, name), name)
        cfg = cfg.replace(file=None, url=None, hf_hub_id=None, hf_hub_revision=None)
        if not pretrained:
            return cfg, None
        weights = root / WEIGHTS_NAME
        if not weights.is_file():
            raise WeightsNotFoundError(f"{name}: {weights} not found; the directory holds only a config.")
        verify_file(weights, cfg.sha256, cfg.file_size,
                    fix=f"write the directory again with zoo.save_for_hf(model, {str(root)!r})")
        return cfg, weights

    meta = WeightFile(name=name, hf_hub_id=target, hf_hub_filename=CONFIG_NAME, hf_hub_revision=revision,
                      hash_required=False)
    config_path = resolve_weights(meta, download=download, force=force)
    cfg = _cfg_from_config(_read_config(config_path, name), name)
    commit = _snapshot_commit(config_path) or revision
    cfg = cfg.replace(hf_hub_id=target, hf_hub_revision=commit, hf_hub_filename=WEIGHTS_NAME, file=None, url=None)
    if not pretrained:
        return cfg, None
    # next to a mirrored config.json, or at the commit the config came from
    weights = resolve_weights(WeightFile.from_cfg(cfg, name=name), download=download, force=force)
    return cfg, weights


# --- prefetch, mirror, verification ------------------------------------------------------------------
def _registered_cfg(name: str) -> PretrainedCfg:
    from ._registry import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if not cfg.has_weights:
        raise WeightsNotFoundError(f"{name} has no registered weights; see `zoo list --pretrained`.")
    return cfg


def download(name: str, force: bool = False) -> Path:
    """Make the weights of ``name`` available locally (downloading if needed) and verified; return the path.

    ``name`` is a registered ``arch.tag`` or an ``hf-hub:`` name; for the latter the whole repository
    snapshot (config, weights, model card) is fetched into the Hugging Face cache. ``force`` downloads
    again even if a copy exists (the fix for a corrupt cache).
    """
    if not is_hub_name(name):
        return resolve_weights(_registered_cfg(name), force=force)
    source, repo_id, revision = parse_hub_name(name)
    if source == "local-dir":
        raise ValueError(f"{name} is a local directory already; nothing to download")
    if not offline_mode():
        from huggingface_hub import snapshot_download

        try:
            snapshot = Path(snapshot_download(
                repo_id, revision=revision, cache_dir=hf_cache_dir(), endpoint=hf_endpoint(),
                allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME], force_download=force, library_name="zoo",
            ))
        except Exception as err:  # the client's errors name the repo/revision problem; keep that line
            raise WeightsNotFoundError(f"{name}: could not fetch the repository from {hf_endpoint()} "
                                       f"({_first_line(err)}). Check the name and revision, and the network.") from err
        name = f"hf-hub:{repo_id}@{snapshot.name}" if _COMMIT.match(snapshot.name) else name
    _, weights = resolve_hub_model(name, pretrained=True, download=False)
    assert weights is not None
    return weights


def _copy_verified(src: Path, dst: Path, sha256: str | None, size: int | None) -> str:
    """Copy ``src`` to ``dst`` atomically, check the copy's hash, stamp it; return the hash."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        actual = verify_file(tmp, sha256, size, fix=f"the source copy {src} changed while copying; retry",
                             use_stamp=False)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(dst, actual)
    return actual


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {"format": "zoo-mirror/1", "files": {}}
    data = json.loads(path.read_text())
    data.setdefault("files", {})
    return data


def mirror(names: Sequence[str], directory: str | os.PathLike[str]) -> Path:
    """Copy everything an air-gapped site needs for ``names`` into ``directory``; return the manifest.

    Registered names get their weight file (downloaded first if needed), ``hf-hub:`` names their
    ``config.json``, ``model.safetensors`` and ``README.md``; all laid out by repo id as
    :class:`MirrorSource` expects. ``manifest.json`` and ``SHA256SUMS`` list every file's sha256
    (``sha256sum -c SHA256SUMS`` checks them without zoo). Use it with ``ZOO_WEIGHTS_DIR=directory``.
    """
    root = Path(directory).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(root)
    files: dict[str, Any] = manifest["files"]
    for name in names:
        if is_hub_name(name):
            source, repo_id, _ = parse_hub_name(name)
            if source == "local-dir":
                raise ValueError(f"{name} is already a local directory: copy it as it is")
            weights = download(name)
            cfg, _ = resolve_hub_model(f"hf-hub:{repo_id}@{_snapshot_commit(weights) or 'main'}", pretrained=False,
                                       download=False)
            for fname in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
                src = weights.parent / fname
                if not src.is_file():
                    continue
                expected = cfg.sha256 if fname == WEIGHTS_NAME else None
                rel = f"{repo_id}/{fname}"
                digest = _copy_verified(src, root / rel, expected, cfg.file_size if expected else None)
                files[rel] = {"sha256": digest, "size": (root / rel).stat().st_size, "for": name,
                              "repo_id": repo_id, "revision": cfg.hf_hub_revision}
        else:
            cfg = _registered_cfg(name)
            wf = WeightFile.from_cfg(cfg)
            src = resolve_weights(wf)
            rel = mirror_paths(wf)[0]
            digest = _copy_verified(src, root / rel, wf.sha256, wf.size)
            files[rel] = {"sha256": digest, "size": (root / rel).stat().st_size, "for": name,
                          "repo_id": cfg.hf_hub_id, "revision": cfg.hf_hub_revision}
        _logger.info("mirrored %s into %s", name, root)
    from . import __version__

    manifest["zoo_version"] = __version__
    _write_json_atomic(root / MANIFEST_NAME, manifest, indent=2)
    sums = "".join(f"{meta['sha256']}  {rel}\n" for rel, meta in sorted(files.items()))
    (root / "SHA256SUMS").write_text(sums)
    return root / MANIFEST_NAME


@dataclass
class CheckResult:
    """One verified copy: ``status`` is ``ok``, ``corrupt`` or ``missing``."""

    name: str
    path: Path | None
    status: str
    detail: str = ""


def verify_local_copies(cfg: PretrainedCfg, sources: Sequence[WeightSource] | None = None) -> list[CheckResult]:
    """Re-hash every local copy of ``cfg``'s weights in every source (not only the one a load would use)."""
    wf = WeightFile.from_cfg(cfg)
    results = []
    for source in default_sources() if sources is None else sources:
        path = source.locate(wf)
        if path is None:
            continue
        try:
            verify_file(path, wf.sha256, wf.size, fix=source.repair_hint(wf), use_stamp=False)
            results.append(CheckResult(wf.name, path, "ok", source.name))
        except IntegrityError as err:
            results.append(CheckResult(wf.name, path, "corrupt", str(err)))
    return results


def _iter_hf_snapshots() -> Iterator[Path]:
    root = hf_cache_dir()
    if root.is_dir():
        yield from sorted(root.glob(f"models--*/snapshots/*/{CONFIG_NAME}"))


def verify_hf_cache() -> list[CheckResult]:
    """Re-hash the weights of every zoo model (``hf-hub:`` names) held in the Hugging Face cache."""
    results = []
    for config_path in _iter_hf_snapshots():
        repo_id = config_path.parent.parent.parent.name.removeprefix("models--").replace("--", "/")
        name = f"hf-hub:{repo_id}@{config_path.parent.name}"
        try:
            cfg = _cfg_from_config(_read_config(config_path, name), name)
        except ValueError:
            continue  # not a zoo model
        weights = config_path.parent / WEIGHTS_NAME
        if not weights.exists():
            continue
        try:
            verify_file(weights, cfg.sha256, cfg.file_size, fix=f"`zoo download --force {name}`", use_stamp=False)
            results.append(CheckResult(name, weights, "ok", "Hugging Face cache"))
        except IntegrityError as err:
            results.append(CheckResult(name, weights, "corrupt", str(err)))
    return results


def verify_mirror(directory: str | os.PathLike[str]) -> list[CheckResult]:
    """Re-hash every file listed in a mirror's ``manifest.json``."""
    root = Path(directory).expanduser()
    if not (root / MANIFEST_NAME).is_file():
        raise WeightsNotFoundError(f"{root} has no {MANIFEST_NAME}; create the mirror with `zoo mirror NAME --to {root}`")
    results = []
    for rel, meta in sorted(_read_manifest(root)["files"].items()):
        path = root / rel
        label = meta.get("for", rel)
        if not path.is_file():
            results.append(CheckResult(label, path, "missing", "listed in the manifest but absent"))
            continue
        try:
            verify_file(path, meta["sha256"], meta.get("size"), fix=f"copy it again: `zoo mirror {label} --to {root}`",
                        use_stamp=False)
            results.append(CheckResult(label, path, "ok", "mirror"))
        except IntegrityError as err:
            results.append(CheckResult(label, path, "corrupt", str(err)))
    return results
