"""What every subcommand shares: the user-error type and the argparse ``type=`` validators.

The validators make a bad number or path fail at parse time, with argparse's usage line, one
``error:`` line naming the fix and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CliError",
    "Handler",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "fraction",
    "unit_interval",
    "spacing_value",
    "existing_file",
    "existing_dir",
    "existing_path",
    "output_file",
    "output_dir",
    "read_json_file",
]

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _number(text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} expected, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a finite number expected, got {text!r}")
    return value


def _bounded(kind: type, what: str, low: float, inclusive: bool, problem: str) -> Callable[[str], Any]:
    """An argparse ``type=`` for a number of ``kind`` above ``low`` (or at it, when ``inclusive``)."""

    def parse(text: str) -> Any:
        value = _number(text, kind, what)
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return kind(value)

    return parse


positive_int = _bounded(int, "an integer", 1, True, "a positive integer (1, 2, ...)")
nonnegative_int = _bounded(int, "an integer", 0, True, "0 or a positive integer")
positive_float = _bounded(float, "a number", 0.0, False, "a positive number")
nonnegative_float = _bounded(float, "a number", 0.0, True, "0 or a positive number")


def fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    value = _number(text, float, "a number")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], e.g. 0.01, 0.1 or 1; got {text}")
    return float(value)


def unit_interval(text: str) -> float:
    """A number in [0, 1)."""
    value = _number(text, float, "a number")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), e.g. 0.9; got {text}")
    return float(value)


def spacing_value(text: str) -> str:
    """One voxel spacing in mm (a positive number) or ``native``; kept as text for ``--spacing``."""
    if text == "native":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a spacing in mm (e.g. 1 1 1 or 0.7 0.7 1.5) or 'native' expected, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a spacing must be a positive number of mm, got {text}")
    return text


def _path(text: str) -> Path:
    """``text`` as a path; an empty string (``Path('')`` is the current directory) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a path expected, got an empty string")
    return Path(text).expanduser()


def existing_file(text: str) -> str:
    """A path to an existing file (not a directory)."""
    path = _path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} does not exist; check the path")
    return str(path)


def existing_dir(text: str) -> str:
    """A path to an existing directory."""
    path = _path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} does not exist; check the path")
    return str(path)


def existing_path(text: str) -> str:
    """A path to an existing file or directory."""
    path = _path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist; check the path")
    return str(path)


def output_file(text: str) -> str:
    """A file to write: not an existing directory, in a directory that is not a file."""
    path = _path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name inside it, e.g. {path / 'out'}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{parent} is a file, so {text} cannot be created; choose another path")
    return str(path)


def output_dir(text: str) -> str:
    """A directory to create or fill: not an existing file (nor under one)."""
    path = _path(text)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise argparse.ArgumentTypeError(f"{p} is a file, not a directory; choose another path")
    return str(path)


def read_json_file(path: str, what: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or malformed file raises :class:`CliError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"cannot read {path} ({type(err).__name__}); {what}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise CliError(f"{path} is not valid JSON ({err}); {what}") from None
