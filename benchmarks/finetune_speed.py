"""``zoo finetune``: seconds per epoch and the validation metrics, fp32 vs bf16 and 1 vs N processes, side by side.

Each variant is the real command (``zoo finetune ...``, or ``torchrun --nproc_per_node=N -m zoo.cli finetune
...`` for ``fp32x2``), run one after the other on the same data with the same seed; every number comes from
the run's own ``finetune.json`` (``epoch_times_s``, ``val_metrics``, ``cpu``). Prints a markdown table and
writes ``--json``. The arguments after ``--`` are those of ``zoo finetune`` (without ``--out``/``--precision``).

    nice python benchmarks/finetune_speed.py --runs /tmp/ftspeed --variants fp32 bf16 -- \\
        resnet18.swcl_fundus64 --data ../shared/data/fundus/hrf/images --masks ../shared/data/fundus/hrf/manual1 \\
        --scale 0.25 --img-size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zoo._machine import cpu_info  # noqa: E402

VARIANT = re.compile(r"^(fp32|bf16)(?:x(\d+))?$")


def run_variant(variant: str, args: list[str], runs: Path) -> dict[str, Any]:
    """One ``zoo finetune`` run (``PRECISION`` or ``PRECISIONxN`` for N torchrun processes); its record's figures."""
    match = VARIANT.match(variant)
    if match is None:
        raise SystemExit(f"variant {variant!r}: expected fp32, bf16, fp32x2, bf16x2, ...")
    precision, procs = match.group(1), int(match.group(2) or 1)
    out = runs / variant
    shutil.rmtree(out, ignore_errors=True)
    launcher = [sys.executable, "-m", "zoo.cli"] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m", "zoo.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if procs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or procs) // procs))
    start = time.perf_counter()
    proc = subprocess.run([*launcher, "finetune", *args, "--out", str(out), "--precision", precision, "--no-progress"],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    rec = json.loads((out / "finetune.json").read_text())
    times = rec["epoch_times_s"]
    scalar = {k: v for k, v in rec["val_metrics"].items() if isinstance(v, (int, float))}
    return {"variant": variant, "precision": precision, "processes": procs, "threads": rec["num_threads"],
            "train_s_per_epoch": [t["train_s"] for t in times], "val_s_per_epoch": [t["val_s"] for t in times],
            "median_train_s": statistics.median(t["train_s"] for t in times),
            "median_val_s": statistics.median(t["val_s"] for t in times),
            "history": rec["history"], "best_epoch": rec["best_epoch"], "val_metrics": scalar,
            "wall_s": round(time.perf_counter() - start, 1), "cpu": rec["cpu"], "command": rec["command"],
            "seed": rec["seed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, type=Path, help="scratch directory for the run folders")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16"], help="fp32, bf16, fp32x2 (2 processes)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("finetune_args", nargs=argparse.REMAINDER, help="-- NAME --data ... (zoo finetune's)")
    ns = parser.parse_args()
    args = ns.finetune_args[1:] if ns.finetune_args[:1] == ["--"] else ns.finetune_args
    if not args:
        parser.error("give zoo finetune's arguments after --")
    ns.runs.mkdir(parents=True, exist_ok=True)
    rows = [run_variant(v, args, ns.runs) for v in ns.variants]
    keys = sorted({k for r in rows for k in r["val_metrics"] if k in ("dice", "auc", "acc", "loss")})
    machine = {**cpu_info(), "cores": os.cpu_count(), "load_average_after": os.getloadavg()}
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, vector ISA {' '.join(machine['isa'])} (torch: "
          f"{machine['torch_cpu_capability']}), load average after {machine['load_average_after'][0]:.1f}; "
          f"zoo finetune {' '.join(args)}")
    print("| variant | processes x threads | train s/epoch (median) | val s/epoch | best epoch | "
          + " | ".join(f"val {k}" for k in keys) + " | wall s |")
    print("|---" * (6 + len(keys)) + "|")
    for r in rows:
        print(f"| {r['variant']} | {r['processes']} x {r['threads']} | {r['median_train_s']:.1f} | "
              f"{r['median_val_s']:.1f} | {r['best_epoch']} of {len(r['history'])} | "
              + " | ".join(f"{r['val_metrics'].get(k, float('nan')):.4f}" for k in keys) + f" | {r['wall_s']:.0f} |")
    if ns.json is not None:
        ns.json.parent.mkdir(parents=True, exist_ok=True)
        ns.json.write_text(json.dumps({"args": args, "machine": machine, "variants": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
