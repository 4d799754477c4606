"""Test isolation: offline, temporary caches, never the internet.

The variables are set when this file is imported, before any test imports huggingface_hub (whose
constants are read at import time); each test then gets its own fresh cache directories.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION = Path(tempfile.mkdtemp(prefix="zoo-tests-"))
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": str(_SESSION / "hf"),
    "HF_ENDPOINT": "http://127.0.0.1:9",  # the discard port: any stray request fails at once
    "ZOO_CACHE_DIR": str(_SESSION / "zoo"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
})
os.environ.pop("ZOO_WEIGHTS_DIR", None)
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HF_TOKEN", None)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
