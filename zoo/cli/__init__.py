"""The ``zoo`` command: one module per command group, each with its ``add_parsers``; heavy modules
(torch, onnx) are imported inside the handlers, so ``zoo list`` / ``zoo info`` answer instantly."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from .. import __version__
from ..hub.paths import IntegrityError
from ..meta.registry import UnknownModelError
from . import compare, evaluate, export, finetune, models, predict, pretrain, weights
from ._common import CliError

__all__ = ["main", "build_parser", "CliError"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zoo`` command."""
    parser = argparse.ArgumentParser(prog="zoo", description="Self-supervised medical-imaging model zoo.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (models, weights, export, pretrain, finetune, evaluate, compare, predict):
        group.add_parsers(sub)
    return parser


def _show_deprecations() -> None:
    """Old model names still work from the command line; say so on one line each (Python hides them by default)."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"zoo: warning: {message}", file=sys.stderr)

    warnings.simplefilter("default", DeprecationWarning)
    warnings.showwarning = show


#: Error types that mean "bad input" wherever they come from: (module, class name). Looked up in
#: ``sys.modules`` only, so that catching them never imports torch.
_USER_ERRORS = (
    ("zoo.models.builder", "CheckpointError"),
    ("zoo.export.onnx", "ExportError"),
    ("zoo.train.pretrain", "PretrainError"),
)


_MAX_CHARS = 1200  # an error stays readable; -v shows the rest


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Every expected error type: one line and exit code 2 (``-v`` adds the traceback)."""
    types: list[type[BaseException]] = [CliError, UnknownModelError, IntegrityError, ValueError, OSError]
    for module, name in _USER_ERRORS:
        found = getattr(sys.modules.get(module), name, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            types.append(found)
    return tuple(types)


def _one_line(err: BaseException) -> str:
    """The error as one line: its first non-empty line (OSError: with the path it concerns)."""
    if isinstance(err, OSError) and err.filename is not None and not isinstance(err, IntegrityError):
        text = f"{err.strerror or type(err).__name__}: {err.filename}"
        if isinstance(err, FileExistsError | NotADirectoryError):
            text += " (a file is in the way of a directory; choose another path)"
        elif isinstance(err, IsADirectoryError):
            text += " (a directory is given where a file is needed)"
        elif isinstance(err, PermissionError):
            text += " (choose a path you can write to)"
        return text
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS].rsplit(" ", 1)[0] + " ... (-v for the whole message)"
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script.

    Every bad input ends as ``zoo: error: <one line>`` and exit code 2 (argparse does the same for
    bad arguments); ``-v`` / ``--verbose`` also prints the traceback. Other exceptions are bugs and
    keep their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that log how they were run
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    _show_deprecations()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `zoo list | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:
        if not isinstance(err, _user_error_types()):
            raise
        if verbose:
            traceback.print_exc()
        print(f"zoo: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
