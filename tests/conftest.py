"""Shared fixtures: every test runs offline, with temporary caches, on one thread.

The variables below are also set when this file is imported, before anything imports
huggingface_hub (which reads them once, at import): a stray request goes to the discard port.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo._io import sha256_file
from zoo.meta import registry as _registry

REPO = Path(__file__).resolve().parents[1]

_SESSION = Path(tempfile.mkdtemp(prefix="zoo-tests-"))
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": str(_SESSION / "hf"),
    "HF_ENDPOINT": "http://127.0.0.1:9",
    "ZOO_CACHE_DIR": str(_SESSION / "zoo"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
})
for _var in ("ZOO_WEIGHTS_DIR", "HF_HUB_CACHE", "HF_TOKEN"):
    os.environ.pop(_var, None)

torch.set_num_threads(1)


def require_data(*parts: str) -> Path:
    """The real data at ``data_root()/parts``, or skip the test naming the path and ``ZOO_DATA_DIR``.

    The one way tests handle missing data: call it in a test or fixture (``xrays = require_data("cxr",
    "kermany", "train")``), or use :func:`needs_data` as a module or test mark.
    """
    from zoo.data.paths import data_root

    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path}; set ZOO_DATA_DIR to the shared data directory "
                     f"(now {os.environ.get('ZOO_DATA_DIR', 'unset')})")
    return path


def needs_data(*parts: str) -> pytest.MarkDecorator:
    """A skip mark for tests reading ``data_root()/parts`` (the message names the path and ``ZOO_DATA_DIR``)."""
    from zoo.data.paths import data_root

    path = data_root().joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path}; set ZOO_DATA_DIR to the "
                              f"shared data directory (now {os.environ.get('ZOO_DATA_DIR', 'unset')})")


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state: random-weight models (e.g. int8 agreement) are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(base / "zoo-cache"))
    monkeypatch.setenv("TORCH_HOME", str(base / "torch"))
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)


@pytest.fixture
def register_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Save a model's weights to a temporary mirror and register them as ``arch.tag``.

    Returns a function ``(name, state_dict, **cfg_fields) -> path``; entries are removed afterwards.
    """
    from safetensors.torch import save_file

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(mirror))
    added: list[str] = []

    def register(name: str, state_dict: dict[str, torch.Tensor], **fields: Any) -> Path:
        arch, tag = name.split(".")
        path = mirror / f"{arch}.{tag}.safetensors"
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
        defaults: dict[str, Any] = dict(
            file=path.name, sha256=sha256_file(path), file_size=path.stat().st_size,
            method="test", pretrain_data="random", modality="none", license_weights="Apache-2.0",
            license_data="none", command="pytest", metrics={"none": 0.0}, verified=True,
        )
        _registry.register_pretrained(name, **{**defaults, **fields})
        added.append(name)
        return path

    yield register
    for name in added:
        arch, tag = name.split(".")
        _registry._archs[arch].tags.pop(tag, None)


def small_input(name: str, batch: int = 2, in_chans: int | None = None) -> torch.Tensor:
    """A random input of the smallest size every model family accepts."""
    cfg = _registry.get_pretrained_cfg(name)
    c = cfg.in_chans if in_chans is None else in_chans
    spatial = (32, 32) if cfg.spatial_dims == 2 else (16, 16, 16)
    return torch.randn(batch, c, *spatial, generator=torch.Generator().manual_seed(0))


def train_steps(
    method: Any, x: torch.Tensor | dict[str, torch.Tensor], steps: int, seed: int = 0, lr: float = 1e-3
) -> list[dict[str, float]]:
    """Adam steps of an SSL method on one fixed batch (a tensor, or a dict batch of a method's own dataset);
    the loss terms of every step."""
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        out = method(x, g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_after_step(step, steps)
        log.append({k: float(v.detach()) for k, v in out.items()})
    return log
