"""Publishing to the Hugging Face Hub: a repository folder (:func:`save_for_hf`) and a push (:func:`push_to_hub`).

The folder holds ``model.safetensors``, ``config.json`` and a model card ``README.md``. Every
config.json carries a ``zoo`` block (the zoo name and the full :class:`PretrainedCfg`, including the
weights' sha256) that ``zoo.create_model("hf-hub:org/name")`` reads. For 2D backbones whose state dict
is exactly a timm architecture's (checked key by key and shape by shape before it is claimed),
config.json is otherwise written the way timm writes it, so ``timm.create_model("hf-hub:org/name",
pretrained=True)`` loads the same weights.

A registered name whose file holds exactly the model's tensors is copied byte for byte (the registered
sha256 still holds). One whose file holds more (``resnet18.pcrl_kermany64`` ships the whole PCRL U-Net;
its name is the encoder) is published as the model's own state dict: the encoder, with its own sha256,
and config.json and the card record the registered file and its sha256 it was taken from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from .._io import atomic_write
from ..hub import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    ResolvedWeights,
    copy_verified,
    hf_endpoint,
    is_hub_name,
    offline_mode,
    resolve_hub_model,
    resolve_weights_record,
)
from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_arch_entry, get_pretrained_cfg

__all__ = ["save_for_hf", "push_to_hub"]

_logger = logging.getLogger(__name__)


def _bit_name(cfg: PretrainedCfg) -> str | None:
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}.get(tuple(cfg.arch_kwargs.get("layers", ())))
    return f"resnetv2_{depth}x{cfg.arch_kwargs.get('width_factor', 1)}_bit" if depth else None


# Model families whose state dicts are timm architectures' (family module -> timm name, note for the card).
# The claim is checked against timm's own model before config.json is written timm's way.
_TIMM_EQUIVALENT: dict[str, tuple[Callable[[PretrainedCfg], str | None], str]] = {
    "zoo.models.resnet": (lambda cfg: f"resnet{cfg.arch_kwargs.get('depth', 18)}", ""),
    "zoo.models.resnetv2": (
        _bit_name,
        "timm's BiT models standardise conv weights with eps 1e-8, zoo's (SWCL's) with 1e-10; the conv "
        "weights in this file are stored already standardised (standardising them again changes nothing "
        "in float32 with either eps), so timm and zoo give identical outputs from this file.",
    ),
}


def _standardised_convs(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight-standardised conv weights of a BiT model, by state-dict key (empty for other models).

    Standardisation is idempotent: a standardised weight has mean 0 and variance ~1 per output channel,
    so ``var + eps`` rounds to ``var`` in float32 for timm's eps (1e-8) and zoo's (1e-10) alike.
    """
    import torch.nn.functional as F
    from timm.layers import StdConv2d

    out = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, StdConv2d) and m.eps != 1e-8:
                w = F.batch_norm(m.weight.reshape(1, m.out_channels, -1), None, None, training=True,
                                 momentum=0.0, eps=m.eps).reshape_as(m.weight)
                out[f"{name}.weight"] = w.detach().cpu().contiguous()
    return out

_HF_LICENSES = {
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0",
    "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "openrail",
}


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def _file_float_dtypes(path: Path) -> set[torch.dtype]:
    names = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
    with safe_open(str(path), framework="pt") as fh:
        return {names[d] for d in (fh.get_slice(k).get_dtype() for k in fh.keys()) if d in names}


def _timm_architecture(cfg: PretrainedCfg, shapes: dict[str, tuple[int, ...]]) -> tuple[str, int, str] | None:
    """``(timm name, num_features, note)`` when the weights are exactly a timm architecture's, else None."""
    import timm

    module = get_arch_entry(cfg.architecture)[1]
    name_fn, note = _TIMM_EQUIVALENT.get(module or "", (None, ""))
    arch = name_fn(cfg) if name_fn else None
    if arch is None or not timm.is_model(arch):
        return None
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ref = timm.create_model(arch, pretrained=False, num_classes=cfg.num_classes, in_chans=cfg.in_chans)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    if ref_shapes != shapes:
        diff = sorted(set(ref_shapes.items()) ^ set(shapes.items()))[:5]
        _logger.info("%s: weights differ from timm's %s (%s...): writing a zoo-only config", cfg.name, arch, diff)
        return None
    return arch, int(ref.num_features), note


def _timm_config(cfg: PretrainedCfg, arch: str, num_features: int) -> dict[str, Any]:
    """config.json as timm's ``save_for_hf`` lays it out (architecture, num_classes, pretrained_cfg...)."""
    it = cfg.intensity
    mean, std = it.mean, it.std
    if it.kind != "mean_std" or mean is None or std is None:  # timm only knows mean/std; [0, 1] is mean 0, std 1
        mean, std = (0.0,) * cfg.in_chans, (1.0,) * cfg.in_chans
    pretrained_cfg = {
        "tag": cfg.tag or None,
        "custom_load": False,
        "input_size": list(cfg.input_size),
        "fixed_input_size": False,
        "interpolation": cfg.interpolation,
        "crop_pct": cfg.crop_pct,
        "crop_mode": "center",
        "mean": list(mean),
        "std": list(std),
        "num_classes": cfg.num_classes,
        "first_conv": cfg.first_conv,
        "classifier": cfg.classifier,
        "license": cfg.license_weights or None,
        "description": get_arch_entry(cfg.architecture)[2] or None,
        "origin_url": cfg.origin or None,
        "paper_name": cfg.paper or None,
    }
    config: dict[str, Any] = {
        "architecture": arch,
        "num_classes": cfg.num_classes,
        "num_features": num_features,
        "global_pool": "avg",
        "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v is not None},
    }
    if cfg.in_chans != 3:
        config["model_args"] = {"in_chans": cfg.in_chans}
    return config


def _zoo_config(cfg: PretrainedCfg) -> dict[str, Any]:
    """config.json for models timm cannot build (3D, U-Nets): everything ``zoo.create_model`` needs."""
    return {
        "architecture": cfg.architecture,
        "library_name": "zoo",
        "num_classes": cfg.num_classes,
        "in_chans": cfg.in_chans,
        "spatial_dims": cfg.spatial_dims,
        "input_size": list(cfg.input_size),
        "arch_kwargs": cfg.arch_kwargs,
    }


def _save_state_dict(model: nn.Module, dst: Path, float_dtype: torch.dtype | None = None) -> tuple[PretrainedCfg, str]:
    """Write the model's state dict to ``dst`` (floats as ``float_dtype`` if given); return its cfg for a
    new file and the file's sha256."""
    from timm.models._features import FeatureGetterNet

    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, PretrainedCfg):
        raise TypeError(f"save_for_hf needs a model made by zoo.create_model (it carries a PretrainedCfg) or "
                        f"a registered name; got {type(model).__name__}")
    if isinstance(model, FeatureGetterNet):
        raise ValueError("save_for_hf got a features_only wrapper: save the backbone "
                         "(zoo.create_model(name) without features_only) instead")
    try:
        json.dumps(cfg.arch_kwargs)
    except TypeError as err:
        raise ValueError(f"{cfg.name}: the architecture arguments {cfg.arch_kwargs} cannot be written to "
                         f"config.json ({err}); create the model with JSON-friendly arguments") from err
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state.update(_standardised_convs(model))  # BiT: timm's eps differs from zoo's (see _TIMM_EQUIVALENT)
    if float_dtype is not None:
        state = {k: v.to(float_dtype) if v.is_floating_point() else v for k, v in state.items()}
    data = save(state, metadata={"format": "pt"})  # hashed in memory: the written file is not read back
    atomic_write(dst, lambda tmp: tmp.write_bytes(data), fsync=False)
    # the file is new: the registry's measured results, recipe and upstream file no longer describe it
    # (licences and origin stay: weights derived from a checkpoint keep its terms)
    cfg = cfg.replace(num_classes=int(getattr(model, "num_classes", cfg.num_classes)),
                      verified=False, command="", metrics={}, convert_from="")
    return cfg, hashlib.sha256(data).hexdigest()


def _registered(name: str) -> tuple[PretrainedCfg, ResolvedWeights]:
    if is_hub_name(name):
        cfg, src = resolve_hub_model(name, pretrained=True)
        assert src is not None
        return cfg, src
    cfg = get_pretrained_cfg(name)
    if not cfg.has_weights:
        raise ValueError(f"{name} has no registered weights; pass a model (zoo.create_model(...)) to "
                         f"publish your own, or pick a name from `zoo list --pretrained`")
    return cfg, resolve_weights_record(cfg)  # verified once (or read from its stamp)


def _copy_registered(name: str, dst: Path) -> tuple[PretrainedCfg, str, ResolvedWeights | None]:
    """The registered weights of ``name`` at ``dst``: ``(cfg, sha256 of dst, extracted-from record or None)``.

    A file holding exactly the model's tensors is copied byte for byte. A file holding more (a U-Net
    registered under its encoder's name) gives the model's state dict: what ``create_model(name,
    pretrained=True)`` loads from it, with its own sha256; the registered file is never changed.
    """
    from ..models.builder import create_model

    cfg, src = _registered(name)
    with torch.device("meta"):  # shapes only
        meta = create_model(name)
        shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    if _file_shapes(src.path) == shapes and not _standardised_convs(meta):
        sha = copy_verified(src.path, dst, src.sha256, src.size)  # byte for byte: the registered sha256 holds
        return cfg, sha, None
    model = create_model(name, pretrained=True, checkpoint_path=src)  # the record: no second resolution
    # keep the registered file's float type (e.g. float16): the loaded values came from it, so this is exact
    dtypes = _file_float_dtypes(src.path)
    new_cfg, sha = _save_state_dict(model, dst, float_dtype=dtypes.pop() if len(dtypes) == 1 else None)
    _logger.info("%s: the registered file %s holds more than the model; published the model's %d tensors "
                 "(sha256 %s)", name, src.path.name, len(shapes), sha)
    # the same weights, measured results and recipe; the file is new, so its bytes are not the verified ones
    return cfg.replace(num_classes=new_cfg.num_classes, verified=False), sha, src


def save_for_hf(
    model_or_name: nn.Module | str,
    directory: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a Hugging Face model repository folder: model.safetensors, config.json and README.md.

    Args:
        model_or_name: a registered ``arch.tag`` (its verified weight file is copied byte for byte),
            an ``hf-hub:`` name, or a model made by :func:`zoo.create_model` (its state dict is saved).
        directory: the folder to write (created if needed).
        repo_id: the Hub repository the folder is meant for (used in config.json and the card).
        metrics: measured results to record (default: the registered ones for a name, none for a model).

    Returns:
        ``directory``; ``zoo.create_model("local-dir:" + directory, pretrained=True)`` loads it.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_NAME
    extracted: ResolvedWeights | None = None
    loaded_from: ResolvedWeights | None = None
    if isinstance(model_or_name, str):
        cfg, sha, extracted = _copy_registered(model_or_name, weights)
    else:
        cfg, sha = _save_state_dict(model_or_name, weights)
        loaded_from = getattr(model_or_name, "pretrained_source", None)
    if metrics is not None:
        cfg = cfg.replace(metrics=dict(metrics))
    cfg = cfg.replace(hf_hub_id=repo_id, hf_hub_filename=WEIGHTS_NAME, hf_hub_revision=None, file=None, url=None,
                      sha256=sha, file_size=weights.stat().st_size)
    shapes = _file_shapes(weights)
    timm_arch = _timm_architecture(cfg, shapes) if cfg.spatial_dims == 2 else None
    config = _timm_config(cfg, *timm_arch[:2]) if timm_arch else _zoo_config(cfg)
    from .. import __version__

    config["zoo"] = {"format": 1, "name": cfg.name, "zoo_version": __version__, "pretrained_cfg": cfg.to_dict()}
    if extracted is not None:
        config["zoo"]["extracted_from"] = _provenance(extracted)
    elif loaded_from is not None:
        config["zoo"]["initialised_from"] = _provenance(loaded_from)
    text = json.dumps(config, indent=2)
    PretrainedCfg.from_dict(json.loads(text)["zoo"]["pretrained_cfg"])  # it must read back
    (directory / CONFIG_NAME).write_text(text + "\n")
    n_params = sum(math.prod(s) for s in shapes.values())
    (directory / CARD_NAME).write_text(_model_card(cfg, repo_id, timm_arch, n_params, extracted, loaded_from))
    _logger.info("wrote %s (%s config) to %s", cfg.name, "timm" if timm_arch else "zoo", directory)
    return directory


def _provenance(src: ResolvedWeights) -> dict[str, Any]:
    """The registered file a published file came from (no local paths: they mean nothing on the Hub)."""
    return {"name": src.name, "file": src.path.name, "sha256": src.sha256, "size": src.size,
            "verified": src.verified}


# --- the model card ----------------------------------------------------------------------------------
def _hf_license(text: str) -> tuple[str, str | None]:
    key = text.strip().lower().replace(" ", "-")
    return (key, None) if key in _HF_LICENSES else ("other", text.strip() or "unknown")


def _model_card(cfg: PretrainedCfg, repo_id: str | None, timm_arch: tuple[str, int, str] | None, n_params: int,
                extracted: ResolvedWeights | None = None, loaded_from: ResolvedWeights | None = None) -> str:
    from huggingface_hub import ModelCardData


    license_id, license_name = _hf_license(cfg.license_weights)
    tags = ["zoo", "medical-imaging", "self-supervised", f"{cfg.spatial_dims}d", cfg.method, cfg.modality]
    data = ModelCardData(
        license=license_id, license_name=license_name, tags=[t for t in tags if t] + (["timm"] if timm_arch else []),
        datasets=[cfg.pretrain_data] if cfg.pretrain_data else None, library_name="timm" if timm_arch else "zoo",
        pipeline_tag="image-feature-extraction",
    )
    description = get_arch_entry(cfg.architecture)[2]
    hub_name = f"hf-hub:{repo_id}" if repo_id else "local-dir:/path/to/this/folder"
    spatial = "2D" if cfg.spatial_dims == 2 else "3D"
    shape = ", ".join(str(s) for s in (1, *cfg.input_size))
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {cfg.name}", "", description, "",
        "## Model details", "",
        f"- zoo name: `{cfg.name}`; architecture `{cfg.architecture}` ({spatial}, {n_params:,} parameters)",
        f"- pretraining method: {cfg.method or 'unknown'}; pretrained on: {cfg.pretrain_data or 'unknown'}; "
        f"modality: {cfg.modality or 'unknown'}",
        f"- weights: `{WEIGHTS_NAME}`, sha256 `{cfg.sha256}`, {cfg.file_size} bytes",
        f"- licences: weights {cfg.license_weights or 'unknown'}, pretraining data {cfg.license_data or 'unknown'}, "
        f"code {cfg.license_code}",
        f"- verified by zoo (these bytes hashed and loaded): {'yes' if cfg.verified else 'no'}",
    ]
    if extracted is not None:
        lines.append(f"- these are the `{cfg.architecture}` tensors of the registered file `{extracted.path.name}` "
                     f"(sha256 `{extracted.sha256}`, which also holds the rest of the network it was trained in); "
                     f"`zoo.create_model(\"{extracted.name}\", pretrained=True)` loads the same tensors from it")
    elif loaded_from is not None:
        lines.append(f"- the model was initialised from `{loaded_from.name}` (`{loaded_from.path.name}`, sha256 "
                     f"`{loaded_from.sha256}`); these weights may have changed since")
    if cfg.command:
        lines.append(f"- produced by: `{cfg.command}`")
    if cfg.origin:
        lines.append(f"- original weights: {cfg.origin}")
    lines += [
        "", "## Intended use and limits", "",
        f"- A pretrained backbone for research on {cfg.modality or 'medical'} images: feature extraction, "
        "linear probing and fine-tuning.",
        "- Not a medical device. It has not been validated for diagnosis or any clinical decision.",
        f"- Pretrained on {cfg.pretrain_data or 'the data named above'}; behaviour on other scanners, sites, "
        "populations or modalities is unknown until measured.",
        "- Check the licences of both the weights and the pretraining data before use.",
    ]
    if cfg.notes:
        lines.append(f"- {cfg.notes}")
    lines += [
        "", "## Preprocessing", "",
        f"- input: {cfg.in_chans} channel(s), size {tuple(cfg.input_size)}"
        + (f", voxel spacing {tuple(cfg.voxel_spacing)} mm" if cfg.voxel_spacing else "")
        + ("; layout (N, C, X, Y, Z), slice axis last" if cfg.spatial_dims == 3 else "; layout (N, C, H, W)"),
        f"- intensity: {cfg.intensity.describe()}",
        f"- resize: {cfg.interpolation} interpolation, crop fraction {cfg.crop_pct}"
        + (f"; whole images resized by {cfg.image_scale:g} first (and outputs back)" if cfg.image_scale != 1 else ""),
        "- `zoo.create_transform(zoo.resolve_data_config(model))` builds this pipeline.",
        "", "## Usage", "", "zoo:", "", "```python", "import torch, zoo",
        f'model = zoo.create_model("{hub_name}", pretrained=True).eval()',
        f"features = model.forward_features(torch.randn({shape}))", "```", "",
        "torch.hub (the zoo repository's hubconf.py):", "", "```python", "import torch",
        f'model = torch.hub.load("path/to/zoo", "create_model", "{hub_name}", source="local", pretrained=True)',
        "```", "",
    ]
    if timm_arch:
        lines += ["timm:", "", "```python", "import timm",
                  f'model = timm.create_model("{hub_name}", pretrained=True)  # timm\'s {timm_arch[0]}', "```", ""]
        if timm_arch[2]:
            lines += [f"Note: {timm_arch[2]}", ""]
    else:
        lines += [f"timm: not available; `{cfg.architecture}` ({spatial}) has no timm equivalent. Use zoo.", ""]
    lines += ["## Measured results", ""]
    if cfg.metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in cfg.metrics.items()]
    else:
        lines.append("No measured results are recorded for these weights.")
    lines += ["", "## Citation", "", "```text", cfg.paper or "(no paper recorded)", "```", ""]
    return "\n".join(lines)


# --- push --------------------------------------------------------------------------------------------
def push_to_hub(
    model_or_name: nn.Module | str,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    *,
    token: str | None = None,
    commit_message: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Any:
    """Write :func:`save_for_hf`'s folder and commit it to ``repo_id`` with ``huggingface_hub``.

    Creates the repository (and the branch ``revision``) if needed; with ``create_pr`` the commit
    becomes a pull request against ``revision`` (default ``main``). Returns the client's
    ``CommitInfo``; its ``oid`` is the commit hash to register as ``hf_hub_revision``. ``metrics``
    as in :func:`save_for_hf`.
    """
    if offline_mode():
        raise RuntimeError("cannot push to the Hub while offline: unset ZOO_OFFLINE / HF_HUB_OFFLINE")
    if isinstance(model_or_name, str) and not is_hub_name(model_or_name):
        cfg = get_pretrained_cfg(model_or_name)
        if cfg.is_official:
            raise ValueError(f"{model_or_name} are the upstream authors' weights (licence: {cfg.license_weights}); "
                             f"zoo does not redistribute them. Publish weights you trained, or point users to "
                             f"{cfg.origin} and `zoo convert`.")
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hf_endpoint(), token=token, library_name="zoo")
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    label = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "pretrained_cfg", None)
    label = label if isinstance(label, str) else getattr(label, "name", "a model")
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        folder = save_for_hf(model_or_name, tmp, repo_id=repo_id, metrics=metrics)
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f))
                      for f in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)]
        info = api.create_commit(repo_id, operations, commit_message=commit_message or f"Upload {label} with zoo",
                                 revision=revision, create_pr=create_pr)
    _logger.info("pushed %s to %s (commit %s)", label, repo_id, getattr(info, "oid", "?"))
    return info
