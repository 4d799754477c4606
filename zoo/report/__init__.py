"""Results files (``zoo eval``) -> registry metrics, MODEL_CARD.md tables and plots (torch-free)."""

from .card import *  # noqa: F403
from .card import __all__  # noqa: F401
