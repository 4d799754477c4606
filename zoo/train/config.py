"""What a pretraining run depends on: :class:`PretrainConfig`, its checks, ``--hparam`` parsing, and the
arguments of a run read back from its ``run.json`` (``zoo pretrain --out RUN --resume``)."""

from __future__ import annotations

import dataclasses
import json
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PretrainConfig", "PretrainResult", "PretrainError", "parse_hparams", "split_legacy_hparams", "RESUME_FIXED",
    "load_run_config",
]

# config fields that must not change between a run and its resumption
RESUME_FIXED = (
    "method", "arch", "data", "data_kind", "img_size", "cube_size", "spacing", "samples_per_volume", "epochs",
    "batch_size", "lr", "optimizer", "weight_decay", "momentum", "warmup_steps", "init_from", "bn_only",
    "seed", "hparams", "model_kwargs", "data_options", "precision",
)



class PretrainError(RuntimeError):
    """A pretraining run cannot start or continue; the message names the fix."""


@dataclass
class PretrainConfig:
    """Everything a run depends on (the CLI flags of ``zoo pretrain``)."""

    method: str
    arch: str
    data: str
    out: str
    img_size: int = 224
    cube_size: tuple[int, int, int] = (64, 64, 32)
    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    samples_per_volume: int = 64
    data_kind: str = "auto"
    epochs: int = 1
    batch_size: int = 32
    lr: float | None = None  # default: the method's recipe
    optimizer: str | None = None  # sgd | adamw (default: the method's recipe)
    weight_decay: float | None = None
    momentum: float | None = None
    warmup_steps: int = 0
    init_from: str | None = None
    bn_only: bool = False
    seed: int = 0
    resume: bool = False
    max_steps: int | None = None
    workers: int = 0
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    channels_last: bool | None = None  # default: on
    fp16: bool = False
    precision: str = "fp32"  # fp32 | bf16 | fp16 autocast (zoo.train.precision)
    device: str | None = None  # cpu | cuda (default: cuda when available)
    hparams: dict[str, Any] = field(default_factory=dict)  # the method's (typed: zoo.methods.hparams)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # network kwargs (create_model)
    data_options: dict[str, Any] = field(default_factory=dict)  # the method's data settings (SWCL's stages)
    progress: bool = True
    tag: str | None = None
    modality: str | None = None
    license_data: str = ""
    license_weights: str = ""
    command: str = ""

    def to_command(self) -> str:
        """The ``zoo pretrain`` command line that reproduces this run."""
        parts = ["zoo", "pretrain", "--method", self.method, "--arch", self.arch, "--data", self.data,
                 "--out", self.out, "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                 "--seed", str(self.seed)]
        defaults = PretrainConfig(method="", arch="", data="", out="")
        flags = {
            "img_size": "--img-size", "cube_size": "--cube-size", "spacing": "--spacing",
            "samples_per_volume": "--samples-per-volume", "data_kind": "--data-kind", "lr": "--lr",
            "optimizer": "--optimizer", "weight_decay": "--weight-decay", "momentum": "--momentum",
            "warmup_steps": "--warmup-steps", "init_from": "--init-from", "max_steps": "--max-steps",
            "fp16": "--fp16", "bn_only": "--bn-only", "precision": "--precision", "device": "--device",
        }
        for name, flag in flags.items():
            value = getattr(self, name)
            if value == getattr(defaults, name):
                continue
            if isinstance(value, bool):
                parts.append(flag)
            elif name == "spacing" and value is None:
                parts += [flag, "native"]
            elif isinstance(value, (tuple, list)):
                parts += [flag, *map(str, value)]
            else:
                parts += [flag, str(value)]
        for flag, values in (("--hparam", self.hparams), ("--model-kwarg", self.model_kwargs),
                             ("--data-option", self.data_options)):
            for k, v in sorted(values.items()):
                parts += [flag, f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
        return " ".join(shlex.quote(p) for p in parts)


@dataclass
class PretrainResult:
    """What a finished (or stopped) run produced."""

    out: Path
    steps: int
    total_steps: int
    losses: list[float]
    weights: Path | None
    pretrained_cfg: Path | None
    images_per_s: float
    wall_time_s: float


def parse_hparams(items: Sequence[str], flag: str = "--hparam") -> dict[str, Any]:
    """``["queue_size=4096", "aug=pcrl"]`` -> ``{"queue_size": 4096, "aug": "pcrl"}`` (JSON values, else strings).

    Types are checked against the method's hyper-parameter dataclass when the run starts."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise PretrainError(f"{flag} expects key=value with a Python identifier as key, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def split_legacy_hparams(cfg: PretrainConfig, data_option_keys: Sequence[str] = ()) -> PretrainConfig:
    """Move what older runs passed as ``--hparam`` to where it belongs, with a warning: ``model_kwargs={...}``
    to :attr:`PretrainConfig.model_kwargs`, a method's data settings (``data_option_keys``) to ``data_options``."""
    hp = dict(cfg.hparams)
    model_kwargs, data_options = dict(cfg.model_kwargs), dict(cfg.data_options)
    if "model_kwargs" in hp:
        legacy = hp.pop("model_kwargs") or {}
        if not isinstance(legacy, dict):
            raise PretrainError(f"--hparam model_kwargs must be a JSON object, got {legacy!r}; "
                                f"use --model-kwarg KEY=VALUE")
        warnings.warn("--hparam model_kwargs={...} is deprecated: use --model-kwarg KEY=VALUE",
                      DeprecationWarning, stacklevel=2)
        model_kwargs = {**legacy, **model_kwargs}
    moved = sorted(k for k in hp if k in data_option_keys)
    if moved:
        warnings.warn(f"--hparam {', '.join(moved)}: data settings, not hyper-parameters; use --data-option "
                      f"KEY=VALUE", DeprecationWarning, stacklevel=2)
        data_options = {**{k: hp.pop(k) for k in moved}, **data_options}
    return dataclasses.replace(cfg, hparams=hp, model_kwargs=model_kwargs, data_options=data_options)



def load_run_config(out: str | Path) -> dict[str, Any]:
    """The configuration recorded in ``out/run.json`` (written when the run started), as a dict of fields."""
    path = Path(out) / "run.json"
    if not path.is_file():
        raise PretrainError(f"--resume: {path} does not exist; give the run directory of an earlier `zoo pretrain` "
                            f"(or start a new run without --resume).")
    try:
        saved = json.loads(path.read_text())["config"]
    except (ValueError, KeyError) as err:
        raise PretrainError(f"--resume: {path} is not a zoo run record ({err}); start a new run.") from None
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    return {k: tuple(v) if isinstance(v, list) and k in ("cube_size", "spacing") else v
            for k, v in saved.items() if k in known}
