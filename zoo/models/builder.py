"""Build a model from its pretrained config and load its weights.

The flow of ``create_model(name, pretrained=True)``: registry (or, for ``hf-hub:`` / ``local-dir:``
names, the repository's config.json via ``_hub``) -> entry function -> here: resolve the weight file
(``_hub``) -> verify sha256 -> read safetensors -> family filter -> adapt the first convolution to
``in_chans`` -> drop a classifier head that does not fit -> strict load -> ``features_only`` wrapper.

What was loaded is resolved and hashed once and recorded on the model as ``model.pretrained_source``
(a :class:`zoo.hub.ResolvedWeights`: path, sha256, source, name, verified; None for random init).
Eval, export, pretraining and publishing read it instead of resolving again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..hub import ResolvedWeights, is_hub_name, record_checkpoint, resolve_hub_model, resolve_weights_record
from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_model_entrypoint, get_pretrained_cfg

__all__ = [
    "CheckpointError",
    "create_model",
    "build_model_with_cfg",
    "load_checkpoint",
    "load_state_dict_file",
    "adapt_input_conv",
]

_logger = logging.getLogger(__name__)
FilterFn = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model (names the keys and the fix)."""


def create_model(
    model_name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: int | list[int] | tuple[int, ...] | None = None,
    checkpoint_path: str | os.PathLike[str] | ResolvedWeights | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a model by name, timm-style.

    Args:
        model_name: ``arch`` or ``arch.tag`` (see ``zoo list``), ``hf-hub:org/name[@revision]`` or
            ``local-dir:/path`` (a directory written by :func:`zoo.save_for_hf`).
        pretrained: load the registered weights (sha256-verified safetensors).
        num_classes: classifier classes; 0 gives pooled features (default: the checkpoint's).
        in_chans: input channels; the first convolution is adapted from the checkpoint's.
        features_only: return a model that outputs multi-scale feature maps (see ``feature_info``).
        out_indices: which feature levels to return with ``features_only``.
        checkpoint_path: a local safetensors file to load instead of the registered one (hashed, not
            verified), or a :class:`zoo.hub.ResolvedWeights` (e.g. another model's ``pretrained_source``),
            loaded without resolving or hashing it again.
        pretrained_cfg_overlay: fields replacing those of the registered pretrained config.
        **kwargs: architecture arguments (e.g. ``drop_rate``, ``norm``).
    """
    if is_hub_name(model_name):
        cfg, hub_weights = resolve_hub_model(model_name, pretrained=pretrained and checkpoint_path is None)
        checkpoint_path = checkpoint_path or hub_weights  # already verified against config.json's sha256
    else:
        cfg = get_pretrained_cfg(model_name)
    if pretrained_cfg_overlay:
        cfg = cfg.replace(**pretrained_cfg_overlay)
    fn = get_model_entrypoint(cfg.architecture)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    return fn(
        pretrained=pretrained,
        pretrained_cfg=cfg,
        features_only=features_only,
        out_indices=out_indices,
        checkpoint_path=checkpoint_path,
        **kwargs,
    )


def build_model_with_cfg(
    model_cls: Callable[..., nn.Module],
    name: str,
    pretrained: bool = False,
    pretrained_cfg: PretrainedCfg | None = None,
    features_only: bool = False,
    out_indices: int | list[int] | tuple[int, ...] | None = None,
    checkpoint_path: str | os.PathLike[str] | ResolvedWeights | None = None,
    filter_fn: FilterFn | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Instantiate ``model_cls`` with the config's arch kwargs, load weights, wrap for features.

    The weights are resolved and hashed once (zero times when stamped or given as a
    :class:`ResolvedWeights`); the record is ``model.pretrained_source`` (None without weights).
    """
    cfg = pretrained_cfg or get_pretrained_cfg(name)
    model_kwargs = {**cfg.arch_kwargs, **kwargs}
    model_kwargs.setdefault("num_classes", cfg.num_classes)
    model_kwargs.setdefault("in_chans", cfg.in_chans)
    model = model_cls(**model_kwargs)
    source: ResolvedWeights | None = None
    if isinstance(checkpoint_path, ResolvedWeights):
        source = checkpoint_path
    elif checkpoint_path is not None:
        path = Path(checkpoint_path)
        # a missing or unreadable file gets load_checkpoint's error; a readable one is hashed once
        source = record_checkpoint(path) if path.is_file() else None
        if source is None:
            load_checkpoint(model, path, cfg, filter_fn=filter_fn)
    elif pretrained:
        source = resolve_weights_record(cfg)
    if source is not None:
        load_checkpoint(model, source.path, cfg, filter_fn=filter_fn)
    # record every architecture argument, so that zoo.save_for_hf can rebuild exactly this model
    arch_kwargs = {k: v for k, v in model_kwargs.items() if k not in ("num_classes", "in_chans")}
    model.pretrained_cfg = cfg.replace(in_chans=model_kwargs["in_chans"], arch_kwargs=arch_kwargs,
                                       input_size=(model_kwargs["in_chans"], *cfg.input_size[1:]))
    model.pretrained_source = source
    if features_only:
        from timm.models._features import FeatureGetterNet

        wrapped = FeatureGetterNet(model, out_indices=len(model.feature_info) if out_indices is None else out_indices,
                                   output_fmt="NCHW")
        wrapped.pretrained_cfg = model.pretrained_cfg
        wrapped.pretrained_source = source
        wrapped.in_chans = model.in_chans
        wrapped.spatial_dims = model.spatial_dims
        return wrapped
    return model


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (pickles, truncated files) raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"):
        raise CheckpointError(
            f"{path} is a pickle checkpoint; zoo loads safetensors only. Convert it first: "
            f"`zoo convert --from <layout> {path} -o {path.with_suffix('.safetensors').name}`"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}). It may be truncated or corrupted: "
            f"download or convert it again."
        ) from err


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Adapt a first-conv weight ``(O, I, *k)`` (2D or 3D) to ``in_chans`` input channels.

    N -> 1 sums the input channels; I -> N repeats them cyclically and rescales by I / N, so the
    response to a constant image is preserved (timm's rule, for any kernel rank).
    """
    src = weight.shape[1]
    if in_chans == src:
        return weight
    dtype = weight.dtype
    weight = weight.float()
    if in_chans == 1:
        out = weight.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // src)
        out = weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :in_chans] * (src / in_chans)
    return out.to(dtype)


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    cfg: PretrainedCfg,
    filter_fn: FilterFn | None = None,
) -> None:
    """Strictly load a safetensors checkpoint into ``model``.

    Only the classifier head (``cfg.classifier``) may be left out, and only when the model's head does
    not match the checkpoint's (a different ``num_classes``); every other missing, unexpected or
    wrongly shaped key raises :class:`CheckpointError` naming them. Nothing is loaded on error.
    """
    state_dict = load_state_dict_file(path)
    if filter_fn is not None:
        before = len(state_dict)
        state_dict = filter_fn(state_dict, model)
        if len(state_dict) != before:
            _logger.info("%s: family filter kept %d of %d tensors", Path(path).name, len(state_dict), before)
    target = model.state_dict()

    conv_key = f"{cfg.first_conv}.weight"
    if conv_key in state_dict and conv_key in target:
        src_c, dst_c = state_dict[conv_key].shape[1], target[conv_key].shape[1]
        if src_c != dst_c:
            _logger.info("adapting %s from %d to %d input channels", conv_key, src_c, dst_c)
            state_dict[conv_key] = adapt_input_conv(dst_c, state_dict[conv_key])

    head = f"{cfg.classifier}."
    dropped = [
        k for k, v in state_dict.items()
        if k.startswith(head) and (k not in target or target[k].shape != v.shape)
    ]
    for k in dropped:
        del state_dict[k]
    if dropped:
        _logger.info("dropped the checkpoint's classifier head (%s): it does not match the model's",
                     ", ".join(dropped))

    missing = [k for k in target if k not in state_dict and not k.startswith(head)]
    unexpected = [k for k in state_dict if k not in target]
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state_dict.items() if k in target and target[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label} keys: {shown}")
        raise CheckpointError(
            f"{Path(path).name} does not fit {type(model).__name__} ({cfg.name}):\n  "
            + "\n  ".join(parts)
            + "\nCheck the model name and arch kwargs, or convert the file with `zoo convert`."
        )
    head_missing = [k for k in target if k not in state_dict]
    if head_missing:
        _logger.info("classifier head (%s) left at its random initialisation", ", ".join(head_missing))
    model.load_state_dict(state_dict, strict=False)
