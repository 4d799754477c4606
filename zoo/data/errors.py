"""The one error of the data readers (torch-free)."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data path that cannot be used (missing, empty, wrong layout); the message names the fix."""
