"""Where zoo looks and what it calls things: environment switches, cache and weight directories, file names and the two errors of the hub."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["WeightsNotFoundError", "IntegrityError", "repo_weights_dir", "cache_dir", "hf_cache_dir", "hf_endpoint", "offline_mode", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "MANIFEST_NAME", "HUB_PREFIXES"]

_CHUNK = 1 << 20
_TIMEOUT = 30.0
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}
_DEFAULT_ENDPOINT = "https://huggingface.co"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
MANIFEST_NAME = "manifest.json"
HUB_PREFIXES = ("hf-hub:", "local-dir:")


class WeightsNotFoundError(FileNotFoundError):
    """No source holds the weight file; the message lists every source tried and the fix."""


class IntegrityError(RuntimeError):
    """A file's sha256 (or size) differs from the registered one; nothing was loaded."""


# --- environment, read at call time (not at import, unlike huggingface_hub.constants) -----------------
def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in _TRUE


def offline_mode() -> bool:
    """True when ``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: nothing may touch the network."""
    return _env_true("ZOO_OFFLINE") or _env_true("HF_HUB_OFFLINE")


def _offline_reason() -> str:
    return ", ".join(f"{v}={os.environ[v]}" for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE") if _env_true(v))


def hf_endpoint() -> str:
    """The Hub endpoint: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def repo_weights_dir() -> Path:
    """The repository's ``weights/`` directory (next to the ``zoo`` package)."""
    return Path(__file__).resolve().parents[2] / "weights"


def cache_dir() -> Path:
    """zoo's own cache (``$ZOO_CACHE_DIR``, default ``~/.cache/zoo``): stamps and URL downloads."""
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zoo"


