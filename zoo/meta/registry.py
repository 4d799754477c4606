"""Model registry: architecture names -> entry points and pretrained configs (torch-free).

Architectures are *declared* with the module that implements them (:func:`declare_model`), so that
listing and metadata never import torch; the implementing module binds its entry function with the
:func:`register_model` decorator when it is first imported, as in timm. User code may register new
architectures with the decorator alone.

Names are ``network.tag`` (``resnet18.pcrl_kermany64``): the architecture is the network, the weights are
its tag, carrying method, data and modality as metadata to filter on (:func:`list_pretrained`). A bare
network name means its explicit default tag (``default=True``), or random weights if it has none.
Old names (zoo 0.1's ``pcrl_resnet18.kermany64``) are aliases (:func:`declare_alias`) that resolve with a
DeprecationWarning naming the new name.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .cfg import PretrainedCfg, cfg_from_config_dict

__all__ = [
    "UnknownModelError",
    "declare_model",
    "declare_alias",
    "resolve_name",
    "list_aliases",
    "register_model",
    "register_pretrained",
    "split_model_name",
    "list_models",
    "list_pretrained",
    "is_model",
    "get_arch_entry",
    "get_pretrained_cfg",
    "get_model_entrypoint",
    "get_tags",
    "cfg_from_config",
]


class UnknownModelError(ValueError):
    """An unknown architecture or tag; the message lists the closest names."""


@dataclass
class _Arch:
    name: str
    module: str | None  # module whose import registers the entry point
    description: str
    base: PretrainedCfg  # defaults shared by all tags (input spec, heads, intensity)
    fn: Callable[..., Any] | None = None
    tags: dict[str, PretrainedCfg] = field(default_factory=dict)
    default_tag: str | None = None  # what the bare name loads (explicit, as torchvision's DEFAULT)


@dataclass(frozen=True)
class _Alias:
    """An old architecture name: a network, the method it was named after, what its bare name meant."""

    network: str
    method: str
    bare: str
    arch_kwargs: dict[str, Any]


_archs: dict[str, _Arch] = {}
_aliases: dict[str, _Alias] = {}
_lock = threading.RLock()
_catalog_loaded = False


def _ensure_catalog() -> None:
    global _catalog_loaded
    if not _catalog_loaded:
        with _lock:
            if not _catalog_loaded:
                _catalog_loaded = True
                importlib.import_module("zoo.meta.catalog")


def declare_model(name: str, module: str, description: str, **base: Any) -> None:
    """Declare a built-in architecture implemented in ``module`` (imported lazily)."""
    with _lock:
        if name in _archs:
            raise ValueError(f"architecture {name!r} is declared twice")
        cfg = PretrainedCfg(architecture=name, **base)
        _archs[name] = _Arch(name=name, module=module, description=description, base=cfg)


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator binding an entry function ``fn(pretrained=False, **kwargs) -> nn.Module``.

    The function's name is the architecture name. Built-ins are declared in ``zoo.meta.catalog``;
    a new name (a user's own model) is registered with default metadata from its docstring.
    """
    name = fn.__name__
    _ensure_catalog()
    with _lock:
        arch = _archs.get(name)
        if arch is None:
            doc = (fn.__doc__ or "").strip().splitlines()
            arch = _Arch(name=name, module=fn.__module__, description=doc[0] if doc else "",
                         base=PretrainedCfg(architecture=name))
            _archs[name] = arch
        elif arch.fn is not None and arch.fn is not fn:
            raise ValueError(f"architecture {name!r} is registered twice")
        arch.fn = fn
    return fn


def register_pretrained(name: str, *, default: bool = False, **fields: Any) -> PretrainedCfg:
    """Register the weights ``network.tag``: ``fields`` overlay the network's defaults.

    ``default=True`` makes this tag what the bare network name loads. A zoo 0.1 name (``pcrl_resnet18.x``)
    registers ``resnet18.pcrl_x`` with the method and network kwargs the old name implied.
    """
    arch_name, tag = split_model_name(name)
    if not tag:
        raise ValueError(f"pretrained entry {name!r} needs a tag (network.tag)")
    alias = _aliases.get(arch_name)
    if alias is not None and arch_name not in _archs:
        new = f"{alias.network}.{alias.method}_{tag}"
        _warn_alias(name, new)
        fields.setdefault("method", alias.method)
        fields["arch_kwargs"] = {**alias.arch_kwargs, **fields.get("arch_kwargs", {})}
        arch_name, tag = split_model_name(new)
    with _lock:
        arch = _archs.get(arch_name)
        if arch is None:
            raise ValueError(f"declare network {arch_name!r} before its pretrained entries")
        if tag in arch.tags:
            raise ValueError(f"pretrained entry {arch_name}.{tag} is registered twice")
        if default and arch.default_tag is not None:
            raise ValueError(f"{arch_name} already has a default tag ({arch.default_tag}); one default per network")
        arch_kwargs = {**arch.base.arch_kwargs, **fields.pop("arch_kwargs", {})}
        cfg = arch.base.replace(tag=tag, arch_kwargs=arch_kwargs, **fields)
        arch.tags[tag] = cfg
        if default:
            arch.default_tag = tag
    return cfg


def declare_alias(old: str, network: str, method: str, bare: str, arch_kwargs: dict[str, Any] | None = None) -> None:
    """Keep an old architecture name working: ``old`` -> ``bare``; ``old.tag`` -> ``network.method_tag``."""
    with _lock:
        if old in _archs or old in _aliases:
            raise ValueError(f"alias {old!r} is already a name")
        _aliases[old] = _Alias(network=network, method=method, bare=bare, arch_kwargs=dict(arch_kwargs or {}))


def _caller_stacklevel() -> int:
    """The stack level of the first frame outside zoo (and torch.hub's loader), for warnings."""
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(root) or path.endswith("hubconf.py") or "torch/hub.py" in path
                or "importlib" in path):
            return level
        frame, level = frame.f_back, level + 1
    return level


def _warn_alias(old: str, new: str) -> None:
    warnings.warn(f"{old!r} is a deprecated zoo 0.1 name: use {new!r} (the network is the architecture, the "
                  "weights are its tag; `zoo list --pretrained` lists them)", DeprecationWarning,
                  stacklevel=_caller_stacklevel())


def list_aliases() -> list[str]:
    """The old (zoo 0.1) architecture names that still resolve."""
    _ensure_catalog()
    with _lock:
        return sorted(_aliases)


def resolve_name(name: str, warn: bool = True) -> str:
    """The current name of ``name``: itself, or what an old (aliased) name stands for, with a DeprecationWarning."""
    _ensure_catalog()
    arch, tag = split_model_name(name)
    alias = _aliases.get(arch)
    if alias is None or arch in _archs:
        return name
    new = f"{alias.network}.{alias.method}_{tag}" if tag else alias.bare
    if warn:
        _warn_alias(name, new)
    return new


def split_model_name(name: str) -> tuple[str, str]:
    """``"arch.tag"`` -> ``("arch", "tag")``; ``"arch"`` -> ``("arch", "")``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def _all_names(pretrained: bool) -> list[str]:
    names: list[str] = []
    for arch in _archs.values():
        if pretrained:
            names.extend(cfg.name for cfg in arch.tags.values() if cfg.has_weights)
        else:
            names.append(arch.name)
    return names


MetaFilter = str | Iterable[str] | None


def _patterns(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _meta_hit(cfg: PretrainedCfg, filters: dict[str, list[str]]) -> bool:
    """True when every metadata field of ``cfg`` matches one of its patterns (wildcards, case-insensitive)."""
    return all(any(fnmatch.fnmatch(str(getattr(cfg, key)).lower(), p.lower()) for p in pats)
               for key, pats in filters.items())


def list_models(
    filter: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] = (),
    *,
    method: MetaFilter = None,
    modality: MetaFilter = None,
    pretrain_data: MetaFilter = None,
) -> list[str]:
    """Sorted names matching the wildcard ``filter`` (one pattern or several).

    With ``pretrained=True`` the result lists every ``network.tag`` that has weights; otherwise the
    networks. ``method``, ``modality`` and ``pretrain_data`` filter on the weights' metadata (wildcards
    allowed, case-insensitive, one value or several): a network matches when one of its weight tags does.
    Old (aliased) names are never listed.
    """
    _ensure_catalog()
    includes = _patterns(filter)
    excludes = _patterns(exclude_filters)
    meta = {key: _patterns(value) for key, value in
            (("method", method), ("modality", modality), ("pretrain_data", pretrain_data)) if value is not None}
    with _lock:
        if pretrained:
            names = [cfg.name for arch in _archs.values() for cfg in arch.tags.values()
                     if cfg.has_weights and _meta_hit(cfg, meta)]
        else:
            names = [arch.name for arch in _archs.values()
                     if not meta or any(cfg.has_weights and _meta_hit(cfg, meta) for cfg in arch.tags.values())]

    def hit(name: str, patterns: list[str]) -> bool:
        arch = split_model_name(name)[0]
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(arch, p) for p in patterns)

    return sorted(n for n in names if hit(n, includes) and not hit(n, excludes))


def list_pretrained(
    filter: str | Iterable[str] = "*",
    exclude_filters: str | Iterable[str] = (),
    *,
    method: MetaFilter = None,
    modality: MetaFilter = None,
    pretrain_data: MetaFilter = None,
) -> list[str]:
    """Every ``network.tag`` with registered weights, filtered as :func:`list_models` does."""
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters, method=method,
                       modality=modality, pretrain_data=pretrain_data)


def is_model(name: str) -> bool:
    """True if ``name`` is a known network or ``network.tag`` (old names included)."""
    _ensure_catalog()
    arch, tag = split_model_name(resolve_name(name, warn=False))
    with _lock:
        entry = _archs.get(arch)
        return entry is not None and (not tag or tag in entry.tags)


def _unknown(name: str) -> UnknownModelError:
    with _lock:
        candidates = _all_names(False) + _all_names(True) + list(_aliases)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if not close:
        close = [c for c in candidates if name.split(".")[0].split("_")[0] in c][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownModelError(f"Unknown model {name!r}.{hint} Run `zoo list` to see every name.")


def _network(name: str) -> tuple[_Arch, str]:
    """The registered network of ``name`` (old names resolve with a warning) and the tag it names."""
    _ensure_catalog()
    arch_name, tag = split_model_name(resolve_name(name))
    with _lock:
        arch = _archs.get(arch_name)
    if arch is None:
        raise _unknown(name)
    return arch, tag


def get_arch_entry(name: str) -> tuple[str, str | None, str]:
    """``(network, module, description)`` of a network (old names resolve with a warning)."""
    entry, _ = _network(name)
    return entry.name, entry.module, entry.description


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The :class:`PretrainedCfg` of ``network.tag``; a bare network gives its default tag.

    A network without a default tag returns its base cfg (``has_weights`` is False). Old names resolve to
    the new ones with a DeprecationWarning.
    """
    arch, tag = _network(name)
    with _lock:
        if not tag:
            return arch.tags[arch.default_tag] if arch.default_tag else arch.base
        if tag not in arch.tags:
            tags = ", ".join(f"{arch.name}.{t}" for t in arch.tags) or "none"
            raise UnknownModelError(
                f"Unknown tag {tag!r} for {arch.name!r}. Registered weights: {tags}."
            )
        return arch.tags[tag]


def get_tags(network: str) -> tuple[list[str], str | None]:
    """``(tags, default_tag)`` of a network."""
    arch, _ = _network(network)
    with _lock:
        return list(arch.tags), arch.default_tag


def get_model_entrypoint(name: str) -> Callable[..., Any]:
    """The entry function of the architecture of ``name``, importing its module if needed."""
    arch_name, module, _ = get_arch_entry(name)
    with _lock:
        fn = _archs[arch_name].fn
    if fn is None and module is not None:
        importlib.import_module(module)
        with _lock:
            fn = _archs[arch_name].fn
    if fn is None:
        raise RuntimeError(f"module {module!r} declares {arch_name!r} but does not register it")
    return fn


def cfg_from_config(data: Any, where: str = "config.json", *, require_sha256: bool = False) -> PretrainedCfg:
    """:func:`~zoo.meta.cfg.cfg_from_config_dict` that also checks the architecture against the registry.

    A config written under a zoo 0.1 name still validates (its network is looked up without a warning).
    """

    def base_of(architecture: str) -> PretrainedCfg:
        return get_pretrained_cfg(resolve_name(architecture, warn=False))

    return cfg_from_config_dict(data, where, require_sha256=require_sha256, base_of=base_of)
