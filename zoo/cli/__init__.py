"""The ``zoo`` command: one module per command group, each with its ``add_parsers``; heavy modules
(torch, onnx) are imported inside the handlers, so ``zoo list`` / ``zoo info`` answer instantly."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..meta.registry import UnknownModelError
from . import evaluate, export, finetune, models, predict, pretrain, weights
from ._common import CliError

__all__ = ["main", "build_parser", "CliError"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zoo`` command."""
    parser = argparse.ArgumentParser(prog="zoo", description="Self-supervised medical-imaging model zoo.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (models, weights, export, pretrain, finetune, evaluate, predict):
        group.add_parsers(sub)
    return parser


def _show_deprecations() -> None:
    """Old model names still work from the command line; say so on one line each (Python hides them by default)."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"zoo: warning: {message}", file=sys.stderr)

    warnings.simplefilter("default", DeprecationWarning)
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that log how they were run
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    _show_deprecations()
    try:
        return int(args.func(args) or 0)
    except (UnknownModelError, CliError) as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `zoo list | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
