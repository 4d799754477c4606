"""One file for one checkpoint: every local source first, the network only when allowed, every hit verified."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..meta.cfg import PretrainedCfg
from .integrity import verify_file
from .paths import IntegrityError, WeightsNotFoundError, _offline_reason, offline_mode
from .sources import RemoteSource, WeightFile, WeightSource, _download_hint, default_sources

__all__ = ["resolve_weights"]

_logger = logging.getLogger(__name__)


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


