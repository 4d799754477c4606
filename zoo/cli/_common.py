"""What every subcommand shares: the user-error type."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["CliError", "Handler"]

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""
