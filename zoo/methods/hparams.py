"""Typed method hyper-parameters: one dataclass per method, made from its constructor's signature.

The constructor's keyword arguments (after ``arch``; not ``model_kwargs``) are the method's
hyper-parameters, with their types and today's defaults: :func:`hparams_class` turns them into a
dataclass (``PCRLHparams``, ...) and :func:`parse_hparams` checks ``--hparam KEY=VALUE`` values against
it, refusing unknown keys with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["HparamError", "hparams_class", "parse_hparams", "describe_hparams"]

_SKIP = ("self", "arch", "model_kwargs")


class HparamError(ValueError):
    """A hyper-parameter is unknown or of the wrong type; the message lists the known ones."""


@functools.cache
def hparams_class(method_cls: type) -> type:
    """The dataclass of ``method_cls``'s hyper-parameters (fields, types and defaults of its constructor)."""
    init = method_cls.__init__
    hints = typing.get_type_hints(init)
    fields = []
    for name, p in inspect.signature(init).parameters.items():
        if name in _SKIP or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            raise TypeError(f"{method_cls.__name__}: hyper-parameter {name!r} needs a default")
        fields.append((name, hints.get(name, Any), dataclasses.field(default=p.default)))
    return dataclasses.make_dataclass(f"{method_cls.__name__}Hparams", fields, frozen=True,
                                      namespace={"__module__": method_cls.__module__})


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    if tp is Any:
        return value
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError


def describe_hparams(method_cls: type) -> str:
    """``key: type = default`` of every hyper-parameter, comma-separated."""
    return ", ".join(f"{f.name}: {_type_name(f.type)} = {f.default!r}"
                     for f in dataclasses.fields(hparams_class(method_cls)))


def parse_hparams(method_cls: type, values: Mapping[str, Any]) -> Any:
    """``values`` checked into ``method_cls``'s hyper-parameter dataclass (unset keys keep their defaults)."""
    cls = hparams_class(method_cls)
    types_ = {f.name: f.type for f in dataclasses.fields(cls)}
    name = getattr(method_cls, "name", "") or method_cls.__name__
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise HparamError(f"unknown {name} hyper-parameter(s) {unknown}; known: {describe_hparams(method_cls)}")
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = _coerce(value, types_[key])
        except TypeError:
            raise HparamError(f"--hparam {key}={value!r}: {name} expects {_type_name(types_[key])} "
                              f"(known: {describe_hparams(method_cls)})") from None
    return cls(**checked)
