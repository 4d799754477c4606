"""CPU cost of the load-time value checks (``zoo.models.builder.check_state_dict``) per model.

Random weights, 1 thread, process time, median of ``--runs``; the same state dict in float32 and
float16 (zoo ships float16 files). ``--end-to-end``: warm ``create_model(name, pretrained=True)`` from a
mirror file in fresh processes, ``ZOO_CHECK_WEIGHTS=1`` vs ``0``, interleaved, medians.

    python benchmarks/load_checks.py [--runs 9] [--models resnet18 resnet50] [--end-to-end]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_LOAD = """
import json, sys, time
import torch, zoo
torch.set_num_threads(1)
c0 = time.process_time()
zoo.create_model(sys.argv[1], pretrained=True, pretrained_cfg_overlay=json.loads(sys.argv[2]))
print(time.process_time() - c0)
"""


def _end_to_end(name: str, runs: int) -> None:
    from safetensors.torch import save_file

    import zoo

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    path = tmp / f"{name}.bench.safetensors"
    save_file({k: v.contiguous() for k, v in zoo.create_model(name).state_dict().items()}, str(path))
    data = path.read_bytes()
    overlay = json.dumps({"tag": "bench", "file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                          "file_size": len(data), "hf_hub_id": None, "url": None})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ZOO_WEIGHTS_DIR": str(tmp),
           "ZOO_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {"1": [], "0": []}
    for i in range(runs + 1):
        for flag in times:
            out = subprocess.run([sys.executable, "-c", _LOAD, name, overlay], env={**env, "ZOO_CHECK_WEIGHTS": flag},
                                 capture_output=True, text=True, check=True)
            if i:  # the first round hashes and stamps the file
                times[flag].append(float(out.stdout.split()[-1]))
    on, off = statistics.median(times["1"]), statistics.median(times["0"])
    print(f"| {name} | create_model CPU, checks on {on * 1e3:.1f} ms | off {off * 1e3:.1f} ms | ratio {on / off:.3f} |")


def main() -> None:
    import torch

    import zoo
    from zoo.models.builder import check_state_dict

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--end-to-end", action="store_true")
    args = parser.parse_args()
    if args.end_to_end:
        for name in args.models:
            _end_to_end(name, args.runs)
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| model | parameters | dtype | check_state_dict CPU (median) |")
    print("|---|---|---|---|")
    for name in args.models:
        target = zoo.create_model(name).state_dict()
        n = sum(v.numel() for v in target.values() if v.is_floating_point())
        for dtype in (torch.float32, torch.float16):
            sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in target.items()}
            times = []
            for _ in range(args.runs):
                c0 = time.process_time()
                check_state_dict(sd, target)
                times.append(time.process_time() - c0)
            print(f"| {name} | {n:,} | {str(dtype).removeprefix('torch.')} | {statistics.median(times) * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
