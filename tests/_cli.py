"""Run the zoo CLI in-process and capture what it prints."""

from __future__ import annotations

import pytest

from zoo.cli import main

__all__ = ["run_cli"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``zoo ARGV`` (argparse's SystemExit included)."""
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse refused an argument
        rc = int(exit_.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err
