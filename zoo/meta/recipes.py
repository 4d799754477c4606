"""The pretraining recipes of zoo's reference weights, as data (``zoo/recipes/NAME.toml``; torch-free).

A recipe file holds ``[run]`` (the fields of ``zoo pretrain``: ``method``, ``arch``, ``data``,
``epochs``, ...), optional ``[hparams]`` / ``[model_kwargs]`` / ``[data_options]`` tables, an ``order``
(its place in ``scripts/pretrain_reference.sh``) and an optional ``base`` (a file whose settings it
extends, e.g. ``_kermany64``). Files whose name starts with ``_`` are bases, not recipes. ``$DATA`` in a
value is the data directory (``ZOO_DATA_DIR``; ``../shared/data`` if unset, as the script's default).

Read by ``zoo pretrain --recipe NAME``, by ``scripts/pretrain_reference.sh`` and by the catalog's
recorded ``command`` of each reference checkpoint: every recipe is written once, here.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["RecipeError", "list_recipes", "load_recipe", "recipe_args", "recipe_command", "DEFAULT_DATA_DIR"]

DEFAULT_DATA_DIR = "../shared/data"
_TABLES = {"hparams": "--hparam", "model_kwargs": "--model-kwarg", "data_options": "--data-option"}


class RecipeError(ValueError):
    """An unknown or malformed recipe; the message lists the known ones."""


def _dir() -> Any:
    return resources.files("zoo") / "recipes"


def _names() -> list[str]:
    return sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".toml"))


def _read(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise RecipeError(f"recipe {seen[0]!r}: circular base {' -> '.join((*seen, name))}")
    path = _dir() / f"{name}.toml"
    if not path.is_file():
        known = [n for n in _names() if not n.startswith("_")]
        raise RecipeError(f"unknown recipe {name!r}; known: {', '.join(known)}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe file {name}.toml: {err}") from None
    unknown = sorted(set(raw) - {"base", "order", "run", *_TABLES})
    if unknown:
        raise RecipeError(f"recipe file {name}.toml: unknown key(s) {unknown}")
    merged: dict[str, Any] = {"run": {}, **{t: {} for t in _TABLES}}
    if "base" in raw:
        merged = _read(raw["base"], (*seen, name))
    for table in ("run", *_TABLES):
        merged[table] = {**merged.get(table, {}), **raw.get(table, {})}
    merged["order"] = raw.get("order", merged.get("order"))
    return merged


def list_recipes() -> list[str]:
    """The recipe names, in the order ``scripts/pretrain_reference.sh`` runs them."""
    names = [n for n in _names() if not n.startswith("_")]
    return sorted(names, key=lambda n: (_read(n).get("order") or 1_000_000, n))


def load_recipe(name: str) -> dict[str, Any]:
    """``{"run": {...}, "hparams": {...}, "model_kwargs": {...}, "data_options": {...}, "order": int}``
    of recipe ``name`` (its bases merged in; ``$DATA`` not substituted)."""
    if name.startswith("_"):
        raise RecipeError(f"{name!r} is a base of recipes, not a recipe; known: {', '.join(list_recipes())}")
    return _read(name)


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def recipe_args(name: str, data_dir: str | None = None) -> list[str]:
    """The ``zoo pretrain`` arguments of recipe ``name`` (no ``--out``), ``$DATA`` replaced by ``data_dir``
    (default: ``ZOO_DATA_DIR``, else ``../shared/data``); ``data_dir="$DATA"`` keeps it literal."""
    recipe = load_recipe(name)
    data = data_dir if data_dir is not None else os.environ.get("ZOO_DATA_DIR") or DEFAULT_DATA_DIR
    args: list[str] = []
    first = ("method", "arch", "data")
    run = {**{k: recipe["run"][k] for k in first if k in recipe["run"]}, **recipe["run"]}
    for key, value in run.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if key == "progress":
                args += [] if value else ["--no-progress"]
            elif value:
                args.append(flag)
            continue
        if isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value).replace("$DATA", data)]
    for table, flag in _TABLES.items():
        for key, value in recipe[table].items():
            args += [flag, f"{key}={_value(value)}"]
    return args


def recipe_command(name: str, data_dir: str = "$DATA") -> str:
    """The ``zoo pretrain ...`` command line of recipe ``name`` (``$DATA`` literal unless ``data_dir`` is given)."""
    return "zoo pretrain " + " ".join(a if "$DATA" in a else shlex.quote(a) for a in recipe_args(name, data_dir))


if __name__ == "__main__":  # used by scripts/pretrain_reference.sh
    if sys.argv[1:] == ["list"]:
        print("\n".join(list_recipes()))
    elif len(sys.argv) == 3 and sys.argv[1] == "command":
        print(recipe_command(sys.argv[2]))
    else:
        sys.exit("usage: python -m zoo.meta.recipes list | command NAME")
