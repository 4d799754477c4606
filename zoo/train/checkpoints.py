"""Checkpoints of a run: the method's state, the optimiser, the scheduler, every rank's RNG states and the
step, as safetensors plus a small JSON, written atomically (zoo/_io.py); :func:`restore` continues a run
exactly where it stopped."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from .._io import atomic_write, atomic_write_json, sha256_file
from ..methods.base import SSLMethod
from .config import RESUME_FIXED, PretrainConfig, PretrainError
from .distributed import Dist
from .precision import Precision

__all__ = ["save_checkpoint", "load_checkpoint", "restore"]

_logger = logging.getLogger(__name__)


def _rng_states(gen: torch.Generator, d: Dist) -> list[tuple[torch.Tensor, torch.Tensor]]:
    mine = (gen.get_state(), torch.get_rng_state())
    if d.world == 1:
        return [mine]
    states: list[Any] = [None] * d.world
    dist.all_gather_object(states, mine)
    return states


def save_checkpoint(
    out: Path, step: int, method: SSLMethod, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
    d: Dist, cfg: PretrainConfig, keep: int, amp: Precision | None = None,
) -> None:
    rng = _rng_states(gen, d)  # collective: every rank takes part
    if not d.main:
        return
    ckpt = out / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"method.{k}": v.detach().contiguous() for k, v in method.state_dict().items()}
    opt_sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt_sd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = val.contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = val
    for r, (g_state, t_state) in enumerate(rng):
        tensors[f"rng.{r}.generator"] = g_state
        tensors[f"rng.{r}.torch"] = t_state
    stem = f"step_{step:08d}"
    atomic_write(ckpt / f"{stem}.safetensors", lambda p: save_file(tensors, str(p)))
    meta = {
        "step": step,
        "world_size": d.world,
        "optimizer_param_groups": opt_sd["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": sched.state_dict(),
        "config": dataclasses.asdict(cfg),
        "grad_scaler": amp.state_dict() if amp is not None else {},
        "tensors": f"{stem}.safetensors",
        "sha256": sha256_file(ckpt / f"{stem}.safetensors"),
    }
    atomic_write_json(ckpt / f"{stem}.json", meta)
    atomic_write_json(ckpt / "latest.json", {"step": step, "checkpoint": f"{stem}.json"})
    olds = sorted(ckpt.glob("step_*.json"))[:-keep] if keep > 0 else []
    for old in olds:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    _logger.info("checkpoint at step %d -> %s", step, ckpt / stem)


def load_checkpoint(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    latest = out / "ckpt" / "latest.json"
    if not latest.is_file():
        raise PretrainError(f"--resume: no checkpoint in {out / 'ckpt'}; start the run without --resume.")
    meta_path = out / "ckpt" / json.loads(latest.read_text())["checkpoint"]
    meta = json.loads(meta_path.read_text())
    tensors_path = meta_path.with_name(meta["tensors"])
    if not tensors_path.is_file() or sha256_file(tensors_path) != meta["sha256"]:
        raise PretrainError(f"checkpoint {tensors_path} is missing or does not match its JSON (sha256); "
                            f"delete {latest} to fall back to an older checkpoint, or restart the run.")
    return meta, load_file(str(tensors_path))


def restore(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], cfg: PretrainConfig, method: SSLMethod,
    opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator, d: Dist, amp: Precision | None = None,
) -> int:
    saved = meta["config"]
    diffs = []
    for name in RESUME_FIXED:
        now, then = getattr(cfg, name), saved.get(name, {} if name in ("model_kwargs", "data_options") else
                                                   "fp32" if name == "precision" else None)
        if isinstance(now, tuple):
            now = list(now)
        if now != then:
            diffs.append(f"{name}: checkpoint {then!r} vs now {now!r}")
    if diffs:
        raise PretrainError("--resume with different settings than the checkpoint's:\n  " + "\n  ".join(diffs)
                            + "\nRun the same command again with --resume (only --max-steps, --workers, "
                              "--ckpt-every may change), or use a new --out.")
    if meta["world_size"] != d.world:
        raise PretrainError(f"the checkpoint was written by {meta['world_size']} process(es), this run has "
                            f"{d.world}; resume with the same --nproc_per_node.")
    method.load_state_dict({k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")})
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = val
    for pid, values in meta["optimizer_scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    gen.set_state(tensors[f"rng.{d.rank}.generator"])
    torch.set_rng_state(tensors[f"rng.{d.rank}.torch"])
    if amp is not None:
        amp.load_state_dict(meta.get("grad_scaler") or {})
    return int(meta["step"])

