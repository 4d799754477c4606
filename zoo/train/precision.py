"""Training precision: ``fp32`` | ``bf16`` | ``fp16`` autocast, the fp16 grad scaler, what a run records.

The weights, the optimiser state and every loss stay float32; autocast runs the convolutions and
matrix products of the forward (and so of the backward) in the lower precision. Where a method's
math must not be rounded (the augmented views, the contrastive similarities), the method turns
autocast off itself (see :func:`zoo.data.augment.no_autocast`).

- ``fp32``: no autocast (the default; bit-identical to a run made before this option existed).
- ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` on CPU or CUDA; no scaler (bf16 has fp32's
  exponent range).
- ``fp16``: CUDA only, ``torch.autocast(dtype=torch.float16)`` with a dynamic
  :class:`torch.amp.GradScaler` (the official PCRL code's apex O1 is the same scheme). On CPU zoo
  refuses it (use ``bf16``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PRECISIONS", "Precision", "PrecisionError", "check_precision", "make_precision"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """The precision cannot be used on the device; the message names the fix."""


def check_precision(name: str, device: torch.device | str) -> str:
    """``name`` if the device can train in it, else :class:`PrecisionError` naming what to use."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise PrecisionError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise PrecisionError(f"--precision fp16 needs a CUDA device (fp16 autocast with a grad scaler); on "
                             f"{device.type} use --precision bf16 (or fp32).")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("--precision bf16: this GPU has no bfloat16 support; use --precision fp16 (or fp32).")
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise PrecisionError(f"--precision bf16 is supported on cpu and cuda, not {device.type}; use fp32.")
    return name


@dataclass
class Precision:
    """The precision of one run on one device: autocast context, optional grad scaler, the backward step."""

    name: str = "fp32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    scaler: torch.amp.GradScaler | None = None

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward's context: ``torch.autocast`` in the run's dtype, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """``loss.backward(); opt.step()``, through the grad scaler when there is one (fp16).

        With a scaler, a step whose gradients overflowed is skipped and the scale lowered, as apex O1 does.
        """
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def record(self) -> dict[str, Any]:
        """What ``run.json`` and the registry entry keep about the precision."""
        return {"precision": self.name, "autocast_dtype": None if self.name == "fp32" else str(self.dtype),
                "grad_scaler": self.scaler is not None, "device": self.device.type}

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (fp16), for checkpoints; empty otherwise."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_precision(name: str, device: torch.device | str) -> Precision:
    """A checked :class:`Precision` for ``device`` (``fp16`` gets a dynamic grad scaler)."""
    device = torch.device(device)
    check_precision(name, device)
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name=name, device=device, scaler=scaler)
