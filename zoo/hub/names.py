"""``hf-hub:org/name[@revision]`` and ``local-dir:/path`` names: their config.json and verified weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..meta.cfg import PretrainedCfg
from ..meta.registry import cfg_from_config, resolve_name, split_model_name
from .integrity import verify_file
from .paths import _COMMIT, CONFIG_NAME, HUB_PREFIXES, WEIGHTS_NAME, WeightsNotFoundError
from .resolve import ResolvedWeights, resolve_weights, resolve_weights_record
from .sources import WeightFile

__all__ = ["is_hub_name", "parse_hub_name", "resolve_hub_model"]

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
    except (OSError, ValueError, RecursionError) as err:
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
    return _current_name(cfg_from_config(block["pretrained_cfg"], f"{where}: config.json", require_sha256=True))


def _current_name(cfg: PretrainedCfg) -> PretrainedCfg:
    """A config written by zoo 0.1 names an old architecture (``pcrl_resnet18``): resolve it to its network
    (and ``old.tag`` to ``network.method_tag``) with a DeprecationWarning, keeping the recorded arch_kwargs."""
    new = resolve_name(cfg.name)
    if new == cfg.name:
        return cfg
    network, tag = split_model_name(new)
    return cfg.replace(architecture=network, tag=tag if cfg.tag else "")


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/file``)."""
    if path.parent.parent.name == "snapshots" and _COMMIT.match(path.parent.name):
        return path.parent.name
    return None


def resolve_hub_model(
    name: str, pretrained: bool = True, *, download: bool = True, force: bool = False
) -> tuple[PretrainedCfg, ResolvedWeights | None]:
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
        sha = verify_file(weights, cfg.sha256, cfg.file_size,
                          fix=f"write the directory again with zoo.save_for_hf(model, {str(root)!r})")
        return cfg, ResolvedWeights(weights, sha, "local-dir", name, verified=cfg.sha256 is not None,
                                    size=weights.stat().st_size)

    meta = WeightFile(name=name, hf_hub_id=target, hf_hub_filename=CONFIG_NAME, hf_hub_revision=revision,
                      hash_required=False)
    config_path = resolve_weights(meta, download=download, force=force)
    cfg = _cfg_from_config(_read_config(config_path, name), name)
    commit = _snapshot_commit(config_path) or revision
    cfg = cfg.replace(hf_hub_id=target, hf_hub_revision=commit, hf_hub_filename=WEIGHTS_NAME, file=None, url=None)
    if not pretrained:
        return cfg, None
    # next to a mirrored config.json, or at the commit the config came from
    pinned = f"hf-hub:{target}@{commit}" if commit else name
    weights = resolve_weights_record(WeightFile.from_cfg(cfg, name=pinned), download=download, force=force)
    return cfg, weights


