"""One file for one checkpoint: every local source first, the network only when allowed, every hit verified."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..meta.cfg import PretrainedCfg
from .integrity import verify_file
from .paths import IntegrityError, WeightsNotFoundError, _offline_reason, offline_mode
from .sources import RemoteSource, WeightFile, WeightSource, _download_hint, default_sources

__all__ = ["resolve_weights", "resolve_weights_record", "record_checkpoint", "ResolvedWeights"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedWeights:
    """What a model was loaded from: resolved and hashed once, then read by eval, export, pretrain, publishing.

    ``verified`` is True when the bytes matched a recorded sha256 (the registry's, or the one that
    ``config.json`` of an ``hf-hub:`` / ``local-dir:`` repository records); a ``checkpoint_path=``
    file is hashed but verified against nothing. Passing a record as ``checkpoint_path`` to
    ``zoo.create_model`` loads the same file without resolving or hashing it again.
    """

    path: Path
    sha256: str | None
    source: str  # where it was found: "mirror $ZOO_WEIGHTS_DIR", "repository weights/", "Hugging Face Hub", ...
    name: str  # what the file is for: "arch.tag", "hf-hub:org/name@commit", "local-dir:/p" or the file path
    verified: bool
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (for run records, export metadata and model cards)."""
        return {"path": str(self.path), "sha256": self.sha256, "source": self.source, "name": self.name,
                "verified": self.verified, "size": self.size}


def record_checkpoint(path: str | os.PathLike[str], name: str | None = None) -> ResolvedWeights:
    """A ``checkpoint_path=`` file: hashed once (no stamp, no registry), marked unverified."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist")
    sha = verify_file(path, None)  # raises FileChangedError if it is written while hashed
    return ResolvedWeights(path=path, sha256=sha, source="checkpoint_path", name=name or str(path),
                           verified=False, size=path.stat().st_size)


# --- resolution --------------------------------------------------------------------------------------
def _check(wf: WeightFile, path: Path, fix: str, use_stamp: bool, source: str) -> ResolvedWeights:
    size = path.stat().st_size
    if wf.sha256 is None:
        log = _logger.warning if wf.hash_required else _logger.debug
        log("%s: no registered sha256 (verified=False); using %s unchecked", wf.name, path)
        return ResolvedWeights(path, None, source, wf.name, verified=False, size=size)
    sha = verify_file(path, wf.sha256, wf.size, fix=fix, use_stamp=use_stamp)
    return ResolvedWeights(path, sha, source, wf.name, verified=True, size=size)


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

    The path of :func:`resolve_weights_record`; see there.
    """
    return resolve_weights_record(cfg, sources, download=download, force=force, use_stamp=use_stamp).path


def resolve_weights_record(
    cfg: PretrainedCfg | WeightFile,
    sources: Sequence[WeightSource] | None = None,
    *,
    download: bool = True,
    force: bool = False,
    use_stamp: bool = True,
) -> ResolvedWeights:
    """Find a weight file locally, else download it; return what was found after checking its sha256.

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
            return _check(wf, path, source.repair_hint(wf), use_stamp, source.name)
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
        return _check(wf, path, fix, use_stamp=False, source=remote.remote_name)
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


