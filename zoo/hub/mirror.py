"""``zoo download``, ``zoo mirror`` and ``zoo verify``: prefetch, air-gapped copies with a manifest, re-hashing."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from ..meta.cfg import PretrainedCfg
from .integrity import _write_stamp, verify_file
from .names import (
    _cfg_from_config,
    _read_config,
    _snapshot_commit,
    is_hub_name,
    parse_hub_name,
    resolve_hub_model,
)
from .paths import (
    _COMMIT,
    CARD_NAME,
    CONFIG_NAME,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    IntegrityError,
    WeightsNotFoundError,
    hf_cache_dir,
    hf_endpoint,
    offline_mode,
)
from .resolve import _first_line, resolve_weights
from .sources import WeightFile, WeightSource, default_sources, mirror_paths

__all__ = ["CheckResult", "copy_verified", "download", "mirror", "verify_local_copies", "verify_hf_cache", "verify_mirror"]

_logger = logging.getLogger(__name__)


# --- prefetch, mirror, verification ------------------------------------------------------------------
def _registered_cfg(name: str) -> PretrainedCfg:
    from ..meta.registry import get_pretrained_cfg

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
    return weights.path


def copy_verified(src: Path, dst: Path, sha256: str | None, size: int | None) -> str:
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
    try:  # the manifest lists whatever was copied, even when a later name fails
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
                    digest = copy_verified(src, root / rel, expected, cfg.file_size if expected else None)
                    files[rel] = {"sha256": digest, "size": (root / rel).stat().st_size, "for": name,
                                  "repo_id": repo_id, "revision": cfg.hf_hub_revision}
            else:
                cfg = _registered_cfg(name)
                wf = WeightFile.from_cfg(cfg)
                src = resolve_weights(wf)
                rel = mirror_paths(wf)[0]
                digest = copy_verified(src, root / rel, wf.sha256, wf.size)
                files[rel] = {"sha256": digest, "size": (root / rel).stat().st_size, "for": name,
                              "repo_id": cfg.hf_hub_id, "revision": cfg.hf_hub_revision}
            _logger.info("mirrored %s into %s", name, root)
    finally:
        from .. import __version__

        manifest["zoo_version"] = __version__
        atomic_write_json(root / MANIFEST_NAME, manifest, indent=2, sort_keys=False)
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
