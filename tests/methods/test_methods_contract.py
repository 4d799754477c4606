"""One contract for every pretraining method (zoo.methods.METHODS), on tiny synthetic inputs.

For each method: the same seed gives the same losses; the loss falls on a fixed small subset; the
export strict-loads into its network (and, for a U-Net, its encoder network); the state (weights,
momentum encoders, queues, schedules) plus the optimiser and the generator resume a run exactly.
Method-specific behaviour is tested in tests/methods/test_methods_<name>.py; the loop's resume in test_pretrain.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import zoo
from zoo.methods import METHOD_SUMMARIES, METHODS, get_method
from zoo.models.unets import encoder_of


def _smooth(n: int, c: int, *size: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency random images / cubes in [0, 1] (structured enough for views and reconstructions)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, *(max(2, s // 8) for s in size), generator=g)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(coarse, size=size, mode=mode, align_corners=False).clamp(0, 1)


def _images(n: int = 4) -> torch.Tensor:
    return _smooth(n, 3, 32, 32)


def _cubes(n: int = 2) -> torch.Tensor:
    return _smooth(n, 1, 16, 16, 16)


def _pairs(n: int = 4) -> dict[str, torch.Tensor]:
    x = _images(n)
    return {"image": x, "partner": x.flip(-1)}


def _patches(n: int = 2) -> dict[str, torch.Tensor]:
    x = _smooth(2 * n, 3, 32, 32).view(n, 2, 3, 32, 32)
    labels = torch.arange(2 * n).view(n, 2, 1) % 3  # shared labels: every anchor has positives
    return {"patches": x, "labels": torch.cat([labels, torch.full_like(labels, -1)], dim=2)}


# method, network, hyper-parameters, model kwargs, batch maker
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], Callable[[], Any]]] = [
    ("simclr", "resnet18", {}, {}, _images),
    ("mocov2", "resnet18", {"queue_size": 8, "momentum": 0.99}, {}, _images),
    ("micle", "resnet18", {}, {}, _pairs),
    ("swcl", "resnet18", {}, {}, _patches),
    ("pcrl", "unet_resnet18", {"queue_size": 32}, {}, _images),
    ("pcrl", "unet3d_seg", {"queue_size": 32}, {"width": 4}, _cubes),
    ("pcrlv2", "resnet18", {"n_local": 1}, {}, _images),
    ("pcrlv2", "unet3d_seg", {"n_local": 1}, {"width": 4}, _cubes),
    ("genesis", "unet3d_seg", {}, {"width": 4}, _cubes),
]
IDS = [f"{m}-{a}" for m, a, *_ in CASES]


def _build(method: str, arch: str, hp: dict[str, Any], mk: dict[str, Any], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return get_method(method)(arch, model_kwargs=mk, **hp)


def _run(m: Any, batch: Any, steps: int, start: int = 0, opt: torch.optim.Optimizer | None = None,
         gen: torch.Generator | None = None, total: int = 4) -> tuple[list[float], torch.optim.Optimizer, torch.Generator]:
    opt = opt or torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    gen = gen or torch.Generator().manual_seed(1)
    losses = []
    for step in range(start, start + steps):
        torch.manual_seed(100 + step)  # any draw from the global generator is the same in both runs
        out = m(batch, gen)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        m.on_after_step(step, total)
        losses.append(out["loss"].item())
    return losses, opt, gen


def test_every_method_is_covered_and_listed() -> None:
    assert {m for m, *_ in CASES} == set(METHODS) == set(METHOD_SUMMARIES)


@pytest.mark.parametrize(("method", "arch", "hp", "mk", "batch"), CASES, ids=IDS)
def test_same_seed_same_losses_and_exact_resume(method: str, arch: str, hp: dict[str, Any], mk: dict[str, Any],
                                                batch: Callable[[], Any]) -> None:
    x = batch()
    full, _, _ = _run(_build(method, arch, hp, mk), x, 3)
    other, _, _ = _run(_build(method, arch, hp, mk, seed=1), x, 1)
    assert other[0] != full[0]  # the seed matters

    # the same seed again, stopped after 2 steps: the same losses; then everything moves to a fresh
    # instance (built with another seed) which continues 1 step exactly as the uninterrupted run
    m = _build(method, arch, hp, mk)
    part, opt, gen = _run(m, x, 2)
    assert part == full[:2]
    state, opt_state, gen_state = copy.deepcopy(m.state_dict()), copy.deepcopy(opt.state_dict()), gen.get_state()
    fresh = _build(method, arch, hp, mk, seed=7)
    fresh.load_state_dict(state)
    opt2 = torch.optim.SGD([p for p in fresh.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    opt2.load_state_dict(opt_state)
    rest, _, _ = _run(fresh, x, 1, start=2, opt=opt2, gen=torch.Generator().set_state(gen_state))
    assert part + rest == full


@pytest.mark.parametrize(("method", "arch", "hp", "mk", "batch"), CASES, ids=IDS)
def test_loss_falls_on_a_fixed_subset(method: str, arch: str, hp: dict[str, Any], mk: dict[str, Any],
                                      batch: Callable[[], Any]) -> None:
    """12 steps on one fixed batch with fixed views (one generator seed per step pattern): the loss must fall."""
    x = batch()
    m = _build(method, arch, hp, mk)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(12):
        out = m(x, torch.Generator().manual_seed(step % 2))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        m.on_after_step(step, 12)
        losses.append(out["loss"].item())
    first, last = sum(losses[1:4]) / 3, sum(losses[-3:]) / 3  # step 0 of a queue method sees the random queue
    assert last < 0.95 * first, losses


@pytest.mark.parametrize(("method", "arch", "hp", "mk", "batch"), CASES, ids=IDS)
def test_export_strict_loads(method: str, arch: str, hp: dict[str, Any], mk: dict[str, Any],
                             batch: Callable[[], Any], tmp_path: Path) -> None:
    m = _build(method, arch, hp, mk)
    path = tmp_path / "w.safetensors"
    save_file(m.export_state_dict(), str(path))
    model = zoo.create_model(m.arch, checkpoint_path=path, **m.export_kwargs)  # strict
    sd = load_file(str(path))
    assert set(model.state_dict()) == set(sd)
    encoder = encoder_of(m.arch)
    if encoder is not None and method != "pcrlv2" or (method == "pcrlv2" and m.dims == 3):
        # a U-Net's file also loads into its encoder network, and the encoder network is trained in its place
        kwargs = {k: v for k, v in m.export_kwargs.items() if k not in ("decoder", "out_act")}
        zoo.create_model(encoder, checkpoint_path=path, **kwargs)
        enc = _build(method, encoder, hp, mk)
        save_file(enc.export_state_dict(), str(tmp_path / "e.safetensors"))
        zoo.create_model(encoder, checkpoint_path=tmp_path / "e.safetensors", **enc.export_kwargs)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_hparams_are_typed_and_unknown_keys_refused(method: str) -> None:
    cls = get_method(method)
    defaults = cls.hparams_class()()
    assert cls.parse_hparams({}) == defaults
    with pytest.raises(ValueError, match=rf"unknown {method} hyper-parameter\(s\) \['nope'\]; known: "):
        cls.parse_hparams({"nope": 1})
    field = next(f for f in defaults.__dataclass_fields__.values())
    with pytest.raises(ValueError, match=rf"--hparam {field.name}=\[1\]: {method} expects"):
        cls.parse_hparams({field.name: [1]})
