"""What a run's floating-point results depend on besides its seed: the CPU and the kernels torch picks for it.

Two runs of a recipe with the same seed, code and torch version give the same bytes on one machine (tested),
but CPUs with other vector instructions take other kernels (other summation orders), so a pretraining run
and a benchmark record :func:`cpu_info` next to their results.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

__all__ = ["cpu_info"]

# the instruction sets that change which float / int8 kernels torch, oneDNN and onnxruntime run
_ISA_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"})


def cpu_info() -> dict[str, object]:
    """The CPU model, its vector instruction sets (``/proc/cpuinfo`` flags) and torch's CPU capability."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {"cpu": model, "isa": sorted(flags & _ISA_FLAGS),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
