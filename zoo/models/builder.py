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

import contextlib
import contextvars
import inspect
import json
import logging
import numbers
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..hub import ResolvedWeights, is_hub_name, record_checkpoint, resolve_hub_model, resolve_weights_record
from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_model_entrypoint, get_pretrained_cfg, is_model

__all__ = [
    "CheckpointError",
    "create_model",
    "build_model_with_cfg",
    "load_checkpoint",
    "load_state_dict_file",
    "read_file_metadata",
    "adapt_input_conv",
    "check_state_dict",
    "check_cfg_modules",
    "check_arch_kwargs",
    "check_model_kwargs",
    "CHECK_WEIGHTS_ENV",
    "head_trained_next",
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
    check_model_kwargs(model_cls, model_kwargs, cfg.name or name)
    model = model_cls(**model_kwargs)
    source: ResolvedWeights | None = None
    if isinstance(checkpoint_path, ResolvedWeights):
        source = checkpoint_path
    elif checkpoint_path is not None:
        path = Path(checkpoint_path)
        # a missing or unreadable file gets load_checkpoint's error; a readable one is hashed once
        source = record_checkpoint(path) if path.is_file() else None
        if source is None:
            load_checkpoint(model, path, cfg, filter_fn=filter_fn, arch_kwargs=model_kwargs)
    elif pretrained:
        source = resolve_weights_record(cfg)
    if source is not None:
        load_checkpoint(model, source.path, cfg, filter_fn=filter_fn, arch_kwargs=model_kwargs)
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


# --- reading and checking checkpoint files ------------------------------------------------------------
CHECK_WEIGHTS_ENV = "ZOO_CHECK_WEIGHTS"
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_NON_STRUCTURAL = ("drop_rate", "drop_path_rate")  # arch kwargs that change no weight and no output in eval
_WARNED_HEADS: set[str] = set()
_HEAD_TRAINED_NEXT = contextvars.ContextVar("zoo_head_trained_next", default=False)


@contextlib.contextmanager
def head_trained_next() -> Iterator[None]:
    """Inside the block, a pretrained model with a new (random) head is logged at INFO, not warned about:
    for code that trains the head right after (fine-tuning, probes), where the warning would be noise."""
    token = _HEAD_TRAINED_NEXT.set(True)
    try:
        yield
    finally:
        _HEAD_TRAINED_NEXT.reset(token)


def _shorten(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def read_file_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file (empty when it has none or cannot be read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - metadata is advisory; load_state_dict_file reports unreadable files
        return {}


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (pickles, truncated or malformed files) raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"):
        raise CheckpointError(
            f"{path} is a pickle checkpoint; zoo loads safetensors only. Convert it first: "
            f"`zoo convert --from <layout> {path} -o {path.with_suffix('.safetensors').name}`"
        )
    try:
        return load_file(str(path))  # safetensors validates the header (sizes, offsets, dtypes) itself
    except BaseException as err:  # a Rust panic surfaces as PanicException, a BaseException
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        reason = str(err) if isinstance(err, (SafetensorError, OSError, ValueError)) else f"{type(err).__name__}: {err}"
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({reason[:300]}). It may be truncated or corrupted: "
            f"download or convert it again."
        ) from None


def _values_checked(check_values: bool | None) -> bool:
    if check_values is not None:
        return check_values
    return os.environ.get(CHECK_WEIGHTS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def check_state_dict(
    state_dict: Mapping[str, Any],
    target: Mapping[str, torch.Tensor] | None = None,
    *,
    where: str = "the checkpoint",
) -> None:
    """Raise :class:`CheckpointError` unless every tensor's values can be weights.

    Checks: floating tensors (float32 / float16 / bfloat16 / float64) where the model has floats (without
    ``target``: everywhere but BatchNorm's integer ``num_batches_tracked``); integer tensors where it has
    integers; every value finite; BatchNorm ``running_var`` >= 0. The error names the tensors (shortened
    lists) and the fix. ``zoo convert`` and the loader share this function.
    """
    dtype_bad: list[str] = []
    nonfinite: list[str] = []
    negative: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            dtype_bad.append(f"{key} ({type(value).__name__}, not a tensor)")
            continue
        ref = target.get(key) if target is not None else None
        want_float = ref.is_floating_point() if ref is not None else not key.endswith("num_batches_tracked")
        if not want_float:
            if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
                dtype_bad.append(f"{key} ({str(value.dtype).removeprefix('torch.')}, integers expected)")
            continue
        if value.dtype not in _FLOAT_DTYPES:
            dtype_bad.append(f"{key} ({str(value.dtype).removeprefix('torch.')}, floats expected)")
            continue
        if value.numel() == 0:
            continue
        low, high = torch.aminmax(value)  # one pass, no temporary (5x faster than isfinite(value).all())
        if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):  # NaN propagates into min / max
            nonfinite.append(f"{key} ({int((~torch.isfinite(value)).sum())} of {value.numel()})")
        elif key.endswith("running_var") and float(low) < 0:
            negative.append(f"{key} (min {float(low):.3g})")
    parts = [f"{label}: {_shorten(items)}" for label, items in (
        ("wrong dtype", dtype_bad), ("NaN or Inf values", nonfinite), ("negative BatchNorm running_var", negative),
    ) if items]
    if parts:
        raise CheckpointError(
            f"{where} holds tensors that are not usable weights:\n  " + "\n  ".join(parts)
            + "\nThe file is corrupted or was saved from a broken run: download, convert or export it again. "
            f"To load it anyway, set {CHECK_WEIGHTS_ENV}=0 (or pass check_values=False to "
            f"zoo.models.builder.load_checkpoint)."
        )


def _last_param_module(model: nn.Module) -> str | None:
    last = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return last


def check_cfg_modules(model: nn.Module, cfg: PretrainedCfg) -> None:
    """Raise :class:`CheckpointError` unless ``cfg.classifier`` / ``cfg.first_conv`` are the model's head / stem.

    The classifier must be the model's output layer (its last module with parameters, or a parameter-free
    placeholder such as ``nn.Identity`` for ``num_classes=0``); the first convolution must be a convolution
    taking the model's input channels. A config naming another module would let the loader leave that
    module random or adapt the wrong weight.
    """
    where = f"{cfg.name or type(model).__name__}: pretrained config field"
    try:
        head = model.get_submodule(cfg.classifier)
    except AttributeError:
        raise CheckpointError(f"{where} 'classifier' = {cfg.classifier!r} is not a module of "
                              f"{type(model).__name__}. Fix the config (e.g. config.json) to name its head.") from None
    has_params = any(True for _ in head.parameters(recurse=False))
    last = _last_param_module(model)
    if (has_params and cfg.classifier != last) or (not has_params and any(True for _ in head.parameters())):
        raise CheckpointError(f"{where} 'classifier' = {cfg.classifier!r} is not the output layer of "
                              f"{type(model).__name__} (that is {last!r}). Fix the config (e.g. config.json).")
    try:
        conv = model.get_submodule(cfg.first_conv)
    except AttributeError:
        raise CheckpointError(f"{where} 'first_conv' = {cfg.first_conv!r} is not a module of "
                              f"{type(model).__name__}. Fix the config (e.g. config.json).") from None
    in_chans = getattr(model, "in_chans", None)
    if not isinstance(conv, nn.modules.conv._ConvNd) or (in_chans is not None and conv.in_channels != in_chans):
        raise CheckpointError(f"{where} 'first_conv' = {cfg.first_conv!r} is not the first convolution of "
                              f"{type(model).__name__} (a convolution over its {in_chans} input channels). "
                              f"Fix the config (e.g. config.json).")


def _file_arch_kwargs(meta: Mapping[str, str]) -> dict[str, Any]:
    """The architecture arguments a zoo-written file records (``zoo convert``: a diff to its registry entry)."""
    try:
        recorded = json.loads(meta["arch_kwargs"]) if "arch_kwargs" in meta else None
        if recorded is None and "zoo" in meta:
            recorded = json.loads(meta["zoo"]).get("arch_kwargs")
    except (ValueError, AttributeError, RecursionError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    base: dict[str, Any] = {}
    name = meta.get("name")
    with warnings.catch_warnings():  # a file converted under a deprecated name: the alias still resolves
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(name, str) and is_model(name):
            base = dict(get_pretrained_cfg(name).arch_kwargs)
    return {**base, **recorded}


def _same_arch_value(key: str, a: Any, b: Any) -> bool:
    """Equal as JSON (tuples are lists), or interchangeable by design.

    ``bn`` and ``batch_stats_bn`` have the same parameters and buffers; whether inference uses the running
    or the batch statistics is the user's documented choice (Models Genesis files under ``norm='bn'``).
    """
    def plain(v: Any) -> Any:
        try:
            return json.loads(json.dumps(v, sort_keys=True))
        except (TypeError, ValueError):
            return v
    a, b = plain(a), plain(b)
    if key == "norm" and isinstance(a, str) and isinstance(b, str) and {a, b} <= {"bn", "batch_stats_bn"}:
        return True
    return bool(a == b)


def check_arch_kwargs(
    model: nn.Module, meta: Mapping[str, str], arch_kwargs: Mapping[str, Any] | None, where: str
) -> None:
    """Raise :class:`CheckpointError` when the file's recorded arch kwargs contradict the model's.

    Some variants have the same keys and shapes (PCRL 3D with ``norm='gn'`` vs ``'in'``), so only the
    metadata tells them apart. Keys the model's class does not take are ignored.
    """
    recorded = _file_arch_kwargs(meta)
    if not recorded:
        return
    params = inspect.signature(type(model).__init__).parameters
    clashes = []
    for key, value in recorded.items():
        if key in _NON_STRUCTURAL or key in ("num_classes", "in_chans") or key not in params:
            continue
        if arch_kwargs is not None and key in arch_kwargs:
            actual = arch_kwargs[key]
        elif params[key].default is not inspect.Parameter.empty:
            actual = params[key].default
        else:
            continue
        if not _same_arch_value(key, value, actual):
            clashes.append(f"{key}={value!r} (model: {actual!r})")
    if clashes:
        fix = ", ".join(c.split(" (")[0] for c in clashes)
        raise CheckpointError(
            f"{where} was made for other architecture arguments: {', '.join(clashes)}. The keys match, the "
            f"outputs would not. Create the model with {fix}."
        )


def _init_params(model_cls: Callable[..., nn.Module]) -> dict[str, inspect.Parameter] | None:
    """Named ``__init__`` parameters (following ``**kwargs`` to the parent class once); None if open-ended."""
    params: dict[str, inspect.Parameter] = {}
    classes = [c for c in getattr(model_cls, "__mro__", ()) if "__init__" in vars(c) and c is not nn.Module]
    for cls in classes[:2]:
        sig = inspect.signature(cls.__init__).parameters
        params.update({k: v for k, v in sig.items() if k != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)
                       and k not in params})
        if not any(v.kind is v.VAR_KEYWORD for v in sig.values()):
            return params
    return None


def check_model_kwargs(model_cls: Callable[..., nn.Module], kwargs: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming an architecture argument the model does not take, or of the wrong kind.

    The arguments come from the pretrained config (``arch_kwargs``, e.g. of a config.json) and from the
    ``create_model`` call; a typo or a string where a number belongs fails here with its name, not as a
    TypeError deep inside the network. Only plain defaults (numbers, strings, booleans) are type-checked.
    """
    params = _init_params(model_cls)
    if params is None:
        return
    fix = "Fix arch_kwargs in the pretrained config (e.g. config.json) or the create_model arguments."
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise ValueError(f"{where}: {getattr(model_cls, '__name__', model_cls)} takes no argument(s) {unknown}. "
                         f"It takes {_shorten(sorted(params), 12)}. {fix}")
    for key, value in kwargs.items():
        default = params[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy scalars too
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ValueError(f"{where}: argument {key}={value!r:.80} should be of type {type(default).__name__} like its "
                             f"default {default!r}. {fix}")


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Adapt a first-conv weight ``(O, I, *k)`` (2D or 3D) to ``in_chans`` input channels.

    N -> 1 sums the input channels; I -> N repeats them cyclically and rescales by I / N, so the
    response to a constant image is preserved (timm's rule, for any kernel rank). A weight that is not a
    convolution's (fewer than 3 dimensions, no input channels) raises :class:`CheckpointError`.
    """
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    if weight.ndim < 3:
        raise CheckpointError(
            f"the first-convolution weight has shape {tuple(weight.shape)}, not (out, in, *kernel): it is not a "
            f"convolution's weight. Check first_conv in the pretrained config, or convert the file again."
        )
    src = weight.shape[1]
    if src == 0 or weight.shape[0] == 0:
        raise CheckpointError(
            f"the first-convolution weight has shape {tuple(weight.shape)}: no input or output channels to adapt "
            f"from. The file is corrupted: download or convert it again."
        )
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


def _warn_random_head(cfg: PretrainedCfg, keys: list[str]) -> None:
    """Say once per process and name that a pretrained model's head is random."""
    msg = ("%s: the classifier head (%s) is randomly initialised: the checkpoint has no head for this "
           "num_classes, so the logits are not predictions. Train the head first: fine-tune on your labelled "
           "data (`zoo finetune NAME --data PATH --out RUN`, then `create_model('local-dir:RUN')`; README, "
           "'Fine-tune on your data'), or a linear probe or fine-tuning on a built-in task (`zoo eval NAME "
           "--protocol linear|finetune`), or use num_classes=0 for features.")
    if cfg.name in _WARNED_HEADS or _HEAD_TRAINED_NEXT.get():
        _logger.info(msg, cfg.name, ", ".join(keys))
        return
    _WARNED_HEADS.add(cfg.name)
    _logger.warning(msg, cfg.name, ", ".join(keys))


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    cfg: PretrainedCfg,
    filter_fn: FilterFn | None = None,
    *,
    arch_kwargs: Mapping[str, Any] | None = None,
    check_values: bool | None = None,
) -> None:
    """Strictly load a safetensors checkpoint into ``model``.

    Only the classifier head (``cfg.classifier``) may be left out, and only as a whole and when the model's
    head does not match the checkpoint's (a different ``num_classes``); every other missing, unexpected or
    wrongly shaped key raises :class:`CheckpointError` naming them. Values are checked too
    (:func:`check_state_dict`; ``check_values=False`` or ``ZOO_CHECK_WEIGHTS=0`` turns that off), as are the
    file's recorded ``arch_kwargs`` against the model's (``arch_kwargs``: the arguments it was built with).
    Nothing is loaded on error.
    """
    name = Path(path).name
    check_cfg_modules(model, cfg)
    state_dict = load_state_dict_file(path)
    check_arch_kwargs(model, read_file_metadata(path), arch_kwargs, name)
    if filter_fn is not None:
        before = len(state_dict)
        state_dict = filter_fn(state_dict, model)
        if len(state_dict) != before:
            _logger.info("%s: family filter kept %d of %d tensors", name, len(state_dict), before)
    target = model.state_dict()
    if _values_checked(check_values):
        check_state_dict(state_dict, target, where=name)

    conv_key = f"{cfg.first_conv}.weight"
    if conv_key in state_dict and conv_key in target:
        if state_dict[conv_key].ndim != target[conv_key].ndim:
            raise CheckpointError(f"{name}: {conv_key} has shape {tuple(state_dict[conv_key].shape)}, the model's "
                                  f"{tuple(target[conv_key].shape)}. Check the model name and arch kwargs.")
        src_c, dst_c = state_dict[conv_key].shape[1], target[conv_key].shape[1]
        if src_c != dst_c:
            _logger.info("adapting %s from %d to %d input channels", conv_key, src_c, dst_c)
            state_dict[conv_key] = adapt_input_conv(dst_c, state_dict[conv_key])

    head = f"{cfg.classifier}."
    dropped = [
        k for k, v in state_dict.items()
        if k.startswith(head) and (k not in target or target[k].shape != v.shape)
    ]
    model_classes = getattr(model, "num_classes", None)
    if dropped and cfg.num_classes and model_classes == cfg.num_classes and all(k in target for k in dropped):
        shapes = ", ".join(f"{k} {tuple(state_dict[k].shape)}" for k in dropped)
        raise CheckpointError(
            f"{name}: the pretrained config says num_classes={cfg.num_classes}, but the file's head does not fit "
            f"it ({shapes}; the model's: {', '.join(str(tuple(target[k].shape)) for k in dropped)}). Fix "
            f"num_classes in the config (e.g. config.json), or pass num_classes=... to train a new head."
        )
    for k in dropped:
        del state_dict[k]
    if dropped:
        _logger.info("dropped the checkpoint's classifier head (%s): it does not match the model's",
                     ", ".join(dropped))
    head_target = [k for k in target if k.startswith(head)]
    head_loaded = [k for k in head_target if k in state_dict]
    if head_loaded and len(head_loaded) != len(head_target):
        absent = [k for k in head_target if k not in state_dict]
        raise CheckpointError(
            f"{name}: the classifier head is incomplete: it has {', '.join(head_loaded)} but not "
            f"{', '.join(absent)}, which would stay random. Export the whole head, or drop it from the file "
            f"to train a new one."
        )

    missing = [k for k in target if k not in state_dict and not k.startswith(head)]
    unexpected = [k for k in state_dict if k not in target]
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state_dict.items() if k in target and target[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [f"{label} keys: {_shorten(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(
            f"{name} does not fit {type(model).__name__} ({cfg.name}):\n  "
            + "\n  ".join(parts)
            + "\nCheck the model name and arch kwargs, or convert the file with `zoo convert`."
        )
    head_missing = [k for k in target if k not in state_dict]
    if head_missing:
        _warn_random_head(cfg, head_missing)
    model.load_state_dict(state_dict, strict=False)
