"""CPU cost of the load-time value checks (``zoo.models.builder.check_state_dict``) per model.

Random weights, 1 thread, process time, median of ``--runs``; the same state dict in float32 and
float16 (zoo ships float16 files). Compare with the load times of ``benchmarks/load_speed.py``.

    python benchmarks/load_checks.py [--runs 9] [--models pcrl_resnet18 mocov2_resnet50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import torch

    import zoo
    from zoo.models.builder import check_state_dict

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--models", nargs="+", default=["pcrl_resnet18", "mocov2_resnet50"])
    args = parser.parse_args()
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
