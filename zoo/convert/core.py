"""Convert an official upstream checkpoint into a zoo safetensors file.

The flow: read the pickle with ``torch.load(weights_only=True)`` (only tensors, containers and the
few harmless types in :data:`ALLOWED_GLOBALS`; anything else is refused) -> take the state dicts the
layout names -> strip prefixes, drop heads on purpose, rename -> write safetensors with provenance
metadata -> strict-load it into every zoo architecture of the layout (``zoo.create_model`` with
``checkpoint_path``, i.e. the family filters and ``_builder.load_checkpoint``) -> move it into place.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from .._io import sha256_file
from ..hub import canonical_safetensors
from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_pretrained_cfg, is_model, list_pretrained, split_model_name
from ..models.builder import CheckpointError, create_model
from .layouts import Layout, get_layout

__all__ = [
    "ALLOWED_GLOBALS",
    "ConvertError",
    "ConversionResult",
    "read_official",
    "extract_state_dict",
    "convert_checkpoint",
    "registry_entry",
]

_logger = logging.getLogger(__name__)

#: Non-tensor types the official files contain that are safe to rebuild: PCRL and PCRLv2 store their
#: argparse options as ``opt``. Everything else a pickle asks for is refused.
ALLOWED_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


class ConvertError(ValueError):
    """An official checkpoint cannot be converted; the message names the problem and the fix."""


@dataclass
class ConversionResult:
    """What :func:`convert_checkpoint` did."""

    output: Path
    sha256: str
    file_size: int
    source: Path
    source_sha256: str
    layout: str
    name: str  # the registry name the file is for (arch or arch.tag)
    validated: list[str]  # models the file was strict-loaded into
    kept: int
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> upstream keys
    ignored: list[str] = field(default_factory=list)  # top-level entries that hold no kept weights
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # needed at create_model time


def read_official(path: str | os.PathLike[str]) -> Any:
    """Unpickle an official checkpoint without running code: ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path} does not exist (or is not a file)")
    if path.suffix == ".safetensors":
        raise ConvertError(
            f"{path} is already a safetensors file: load it with create_model(..., checkpoint_path=...)"
        )
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(err))
        if found:
            allowed = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in ALLOWED_GLOBALS)
            raise ConvertError(
                f"refusing to load {path}: its pickle asks for {found.group(1)}, which is not a tensor, a "
                f"container or an allowed type ({allowed}). Such a pickle can run code when loaded, so "
                f"zoo does not open it. Use the original file from the official source."
            ) from None
        raise ConvertError(_unreadable(path, err)) from None
    except Exception as err:  # zip, EOF and garbage errors all mean the same thing here
        raise ConvertError(_unreadable(path, err)) from None


def _unreadable(path: Path, err: BaseException) -> str:
    detail = (str(err).splitlines() or [""])[0][:200]
    return (
        f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {detail}). "
        f"It may be truncated or corrupted, or another format: download it again."
    )


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: ``an int``, ``a list``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _kind(value: Any) -> str:
    """What a non-tensor value is, for messages: ``an int``, ``a str``, ``a dict``."""
    return _a(type(value).__name__)


def _short_list(items: list[str], n: int = 8) -> str:
    """The first ``n`` items and how many there are: a long key list stays one short line."""
    shown = ", ".join(items[:n])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > n else (shown or "none")


def _tensor_problem(value: torch.Tensor) -> str | None:
    """Why a tensor cannot be stored as a dense safetensors weight, with the fix; None if it can."""
    if value.is_meta or value.device.type == "meta":
        return ("a meta tensor (shape only, no data: the file was saved from a model built on the "
                "'meta' device); save it again from a model with real weights")
    if value.layout != torch.strided:
        return f"a sparse tensor ({value.layout}); save the checkpoint with dense tensors (tensor.to_dense())"
    if value.is_quantized:
        return (f"a quantized tensor ({value.dtype}); zoo converts float checkpoints: use the original "
                f"float file (or tensor.dequantize())")
    if value.is_complex():
        return f"a complex tensor ({value.dtype}); network weights are real-valued"
    return None


def _looks_like_state_dict(obj: Mapping[str, Any]) -> bool:
    """True for a bare ``{name: tensor}`` dict (what ``torch.load(f)['state_dict']`` returns)."""
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _opt_value(obj: Mapping[str, Any], key: str) -> Any:
    opt = obj.get("opt")
    if isinstance(opt, Mapping):
        return opt.get(key)
    return getattr(opt, key, None)


def extract_state_dict(
    obj: Any, layout: Layout, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]], list[str]]:
    """Apply ``layout`` to an unpickled checkpoint: ``(zoo state dict, dropped by reason, ignored entries)``."""
    if not isinstance(obj, Mapping):
        raise ConvertError(f"{source} holds {_kind(obj)}, not a dict: it is not a {layout.name} checkpoint "
                           f"({layout.description})")
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: dict[str, list[str]] = {}
    used: set[str] = set()
    for entry, prefix in layout.containers:
        if entry is None:
            container: Any = obj
        elif entry in obj:
            container = obj[entry]
            used.add(entry)
        elif _looks_like_state_dict(obj):
            wrap = ", ".join(f"{e!r}: ..." for e, _ in layout.containers)
            raise ConvertError(
                f"{source} is a bare state dict ({len(obj)} tensors: {_short_list([str(k) for k in obj], 4)}), "
                f"not the full {layout.name} checkpoint, which keeps it under {entry!r}. Convert the file as "
                f"downloaded, or wrap it: torch.save({{{wrap.replace('...', 'sd', 1)}}}, 'wrapped.pt')"
                + (" (with the other entries too)" if len(layout.containers) > 1 else "")
            )
        else:
            raise ConvertError(
                f"{source} has no {entry!r} entry, so it is not a {layout.name} checkpoint "
                f"({layout.description}). Its entries: {_short_list([str(k) for k in obj])}."
            )
        if not isinstance(container, Mapping):
            raise ConvertError(f"{source}: {entry!r} is {_kind(container)}, not a state dict")
        for key, value in container.items():
            where = f"{entry}[{key!r}]" if entry else repr(key)
            if not isinstance(value, torch.Tensor):
                if entry is None:  # a plain state dict must hold tensors only
                    raise ConvertError(f"{source}: {where} is {_kind(value)}, not a tensor; "
                                       f"this is not a {layout.name} checkpoint ({layout.description})")
                raise ConvertError(f"{source}: {where} is {_kind(value)}, not a tensor")
            # Non-finite and non-float weights are refused by the loader's checks (models/builder.py),
            # which the strict load below runs before anything is written.
            problem = _tensor_problem(value)
            if problem is not None:
                raise ConvertError(f"{source}: {where} is {problem}")
            new, reason = layout.map_key(str(key), prefix)
            if reason is not None:
                dropped.setdefault(reason, []).append(str(key))
                continue
            if new in out:
                raise ConvertError(f"{source}: {origin[new]} and {where} both map to {new!r}")
            out[new] = value
            origin[new] = where
    if not out:
        n_dropped = sum(map(len, dropped.values()))
        hint = _other_layout_hint(layout, [k for keys in dropped.values() for k in keys])
        raise ConvertError(
            f"{source}: no weights left after dropping {n_dropped} keys "
            f"({'; '.join(dropped) or 'the containers are empty'}). {hint}"
        )
    ignored = [] if any(e is None for e, _ in layout.containers) else [str(k) for k in obj if k not in used]
    return out, dropped, ignored


def _other_layout_hint(layout: Layout, keys: list[str]) -> str:
    """Which other layout a file whose keys all got dropped probably is."""
    from .layouts import LAYOUTS

    if any(k.removeprefix("module.").startswith("encoder_q.") for k in keys) and layout.name != "moco-v2":
        return ("Its weights are under encoder_q: it is a facebookresearch/moco checkpoint; "
                "convert it with `zoo convert --from moco-v2`.")
    return f"Is it really a {layout.name} file? Layouts: {', '.join(LAYOUTS)}."


def _check_arch_kwargs(layout: Layout, kwargs: dict[str, Any], source: str) -> None:
    """Architecture arguments read from the checkpoint's ``opt`` must be ones zoo can build."""
    if "norm" in kwargs:
        from ..models.unet3d import NORMS

        if not isinstance(kwargs["norm"], str) or kwargs["norm"] not in NORMS:
            raise ConvertError(
                f"{source}: opt.norm is {kwargs['norm']!r}, which zoo's 3D U-Net does not build (one of "
                f"{', '.join(NORMS)}); the file is damaged or not a {layout.name} checkpoint"
            )


def _resolve_name(layout: Layout, name: str | None, source: Path) -> str:
    """The registry name the output is for: ``--name``, else the official entry using this layout."""
    if name:
        get_pretrained_cfg(split_model_name(name)[0])  # an unknown architecture raises, with suggestions
        return name
    cfgs = [get_pretrained_cfg(n) for n in list_pretrained()]
    cfgs = [c for c in cfgs if c.convert_from == layout.name]
    files = {c.file for c in cfgs}
    if len(files) > 1:  # several official files share the layout: pick by the original file name
        cfgs = [c for c in cfgs if source.name in c.origin] or cfgs
        files = {c.file for c in cfgs}
    if len(files) == 1:
        main = [c for c in cfgs if c.architecture == layout.archs[0]] or cfgs
        return main[0].name
    if cfgs:
        names = ", ".join(c.name for c in cfgs)
        _logger.info("several official entries use layout %s (%s); pass --name to pick one", layout.name, names)
    return layout.archs[0]


def _targets(layout: Layout, name: str) -> list[str]:
    """The models to strict-load into: every arch of the layout (with ``name``'s tag when registered)."""
    arch, tag = split_model_name(name)
    if arch not in layout.archs:
        _logger.info("%s is not one of the %s architectures %s; validating %s only",
                     arch, layout.name, layout.archs, name)
        return [name]
    out = []
    for a in layout.archs:
        candidate = f"{a}.{tag}" if tag else a
        out.append(candidate if is_model(candidate) else a)
    return out


def _default_output(cfg: PretrainedCfg | None, source: Path) -> Path:
    file = cfg.file if cfg is not None and cfg.file else f"{source.stem}.safetensors"
    mirror = os.environ.get("ZOO_WEIGHTS_DIR")
    return (Path(mirror) if mirror else Path.cwd()) / file


def convert_checkpoint(
    source: str | os.PathLike[str],
    layout: str | Layout,
    output: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> ConversionResult:
    """Convert the official file ``source`` (in ``layout``) to a zoo safetensors file.

    Args:
        source: the file as downloaded from the official source.
        layout: a :data:`zoo.convert.LAYOUTS` name (``zoo convert --from``).
        output: where to write; default ``$ZOO_WEIGHTS_DIR/<registered file>`` (or the current directory).
        name: the registry ``arch.tag`` the file is for; default: the official entry using ``layout``.

    Nothing is written unless the converted weights strict-load into every architecture of the layout.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    source = Path(source)
    obj = read_official(source)
    state, dropped, ignored = extract_state_dict(obj, layout, source.name)
    name = _resolve_name(layout, name, source)
    cfg = get_pretrained_cfg(name) if is_model(name) else None
    out = Path(output) if output is not None else _default_output(cfg, source)
    if out.is_dir():
        raise ConvertError(f"the output {out} is a directory; give a file name, e.g. -o {out / (name + '.safetensors')}")
    if out.suffix != ".safetensors":
        raise ConvertError(f"the output must be a .safetensors file, got {out}")

    arch_kwargs: dict[str, Any] = {}
    for key in layout.opt_arch_kwargs:
        value = _opt_value(obj, key) if isinstance(obj, Mapping) else None
        base = (cfg.arch_kwargs if cfg is not None else {}).get(key)
        if value is not None and value != base:
            arch_kwargs[key] = value
    _check_arch_kwargs(layout, arch_kwargs, source.name)
    source_sha = sha256_file(source)
    dropped_keys = sorted(k for keys in dropped.values() for k in keys)
    metadata = {
        "format": "pt",
        "zoo_version": __version__,
        "layout": layout.name,
        "name": name,
        "source_file": source.name,
        "source_sha256": source_sha,
        "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True),
        "dropped": json.dumps(dropped_keys),
    }
    tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}  # no shared storage

    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.safetensors")
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata=metadata)
            canonical_safetensors(tmp)
        except OSError as err:
            raise ConvertError(f"cannot write {out}: {err}") from None
        targets = _targets(layout, name)
        for target in targets:
            try:
                create_model(target, checkpoint_path=tmp, **arch_kwargs)
            except CheckpointError as err:
                detail = str(err).split(":", 1)[-1].strip()
                raise ConvertError(
                    f"{source.name} does not convert to {target} with layout {layout.name}:\n  {detail}\n"
                    f"Is it really a {layout.name} file ({layout.description})?"
                ) from None
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    result = ConversionResult(
        output=out, sha256=sha256_file(out), file_size=out.stat().st_size, source=source,
        source_sha256=source_sha, layout=layout.name, name=name, validated=targets, kept=len(tensors),
        dropped=dropped, ignored=ignored, arch_kwargs=arch_kwargs,
    )
    _logger.info("%s -> %s (%d tensors, sha256 %s)", source, out, result.kept, result.sha256)
    return result


def registry_entry(result: ConversionResult) -> str:
    """The ``_catalog.py`` lines that pin this converted file (sha256 and size) for its registry names."""
    names = [n if "." in n else f"{n}.TAG" for n in result.validated]  # TAG: pick one for an unregistered file
    fields = [
        f'file="{result.output.name}"',
        f'sha256="{result.sha256}"',
        f"file_size={result.file_size}",
        f'convert_from="{result.layout}"',
        "verified=True",
    ]
    if result.arch_kwargs:
        fields.append(f"arch_kwargs={result.arch_kwargs!r}")
    body = ",\n    ".join(fields)
    lines = [f"# converted from {result.source.name} (sha256 {result.source_sha256}); keep verified=True only\n"
             f"# if that is the official file's hash"]
    lines += [f'register_pretrained(\n    "{n}",\n    {body},\n)' for n in names]
    return "\n".join(lines)
