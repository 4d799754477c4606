"""Latency of PyTorch eager vs onnxruntime fp32 vs onnxruntime int8, side by side.

For each model the parent process exports one fp32 and one int8 ONNX file (both verified by
``zoo.export_onnx`` on real data, from the same weights), then times every (runtime, batch) pair in
its own fresh subprocess, so that no runtime inherits another's thread pools, caches or allocations.
Each worker times ``--reps`` forward passes on real inputs (after ``--warmup``) and reports the median.

    python benchmarks/onnx_vs_eager.py                      # resnet18 @224, unet3d @64x64x32
    python benchmarks/onnx_vs_eager.py --reps 3 --threads 1 --batches 1 32

Ratios are speed-ups (eager time / ORT fp32 time, ORT fp32 time / ORT int8 time): > 1 is faster.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = {"resnet18": (224, 224), "unet3d": (64, 64, 32)}
RUNTIMES = ("eager", "ort_fp32", "ort_int8")


def _inputs(name: str, size: tuple[int, ...], batch: int):  # -> np.ndarray
    """``batch`` real inputs (up to 8 distinct ones, repeated) through the model's preprocessing."""
    import numpy as np

    import zoo
    from zoo.export import sample_inputs

    cfg = zoo.get_pretrained_cfg(name)
    x, _ = sample_inputs(cfg, (cfg.in_chans, *size), min(batch, 8))
    return np.ascontiguousarray(np.concatenate([x] * -(-batch // len(x)))[:batch])


def worker(args: argparse.Namespace) -> None:
    """Time one runtime at one batch size; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    x = _inputs(args.model, tuple(args.size), args.batch)
    if args.worker == "eager":
        import zoo

        torch.manual_seed(0)
        model = zoo.create_model(args.model).eval()
        xt = torch.from_numpy(x)

        def run() -> None:
            with torch.inference_mode():
                model(xt)
    else:
        from zoo.export import ort_session

        session = ort_session(args.onnx, threads=args.threads)

        def run() -> None:
            session.run(None, {"input": x})

    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_ms": 1e3 * statistics.median(times), "times_ms": [1e3 * t for t in times]}))


def _spawn(runtime: str, model: str, size: tuple[int, ...], batch: int, onnx: Path | None,
           args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--worker", runtime, "--model", model, "--size", *map(str, size),
           "--batch", str(batch), "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    if onnx is not None:
        cmd += ["--onnx", str(onnx)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="architectures to time")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--reps", type=int, default=10, help="timed forward passes per (runtime, batch)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime")
    parser.add_argument("--calibration-samples", type=int, default=32)
    # worker mode (internal)
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(REPO))
    logging.basicConfig(level=logging.WARNING)
    import torch

    import zoo
    from zoo.export import export_onnx

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, reps {args.reps} (median), warm-up {args.warmup}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        for name in args.models:
            size = DEFAULT_MODELS.get(name) or tuple(zoo.get_pretrained_cfg(name).input_size[1:])
            torch.manual_seed(0)  # the workers' eager model gets the same weights
            model = zoo.create_model(name).eval()
            fp32, int8 = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.int8.onnx"
            t0 = time.perf_counter()
            r32 = export_onnx(model, fp32, input_size=size)
            r8 = export_onnx(model, int8, input_size=size, quantize="int8",
                             calibration_samples=args.calibration_samples)
            print(f"\n{name} {'x'.join(map(str, size))}: exported and verified in {time.perf_counter() - t0:.0f} s; "
                  f"fp32 vs eager max abs diff {r32.fp32.max_abs_diff:.2g}, int8 vs fp32 cosine {r8.int8.cosine:.4f}; "
                  f"files {fp32.stat().st_size / 1e6:.1f} MB / {int8.stat().st_size / 1e6:.1f} MB")
            for batch in args.batches:
                ms = {rt: _spawn(rt, name, size, batch, {"eager": None, "ort_fp32": fp32, "ort_int8": int8}[rt], args)
                      for rt in RUNTIMES}
                rows.append((name, batch, ms))
                print(f"  batch {batch:>3}: eager {ms['eager']:9.1f} ms | ORT fp32 {ms['ort_fp32']:9.1f} ms | "
                      f"ORT int8 {ms['ort_int8']:9.1f} ms || ORT fp32 / eager {ms['eager'] / ms['ort_fp32']:.2f}x "
                      f"(goal 1.5x) | int8 / fp32 {ms['ort_fp32'] / ms['ort_int8']:.2f}x (goal 2.5x)", flush=True)
    print("\n| model | batch | eager ms | ORT fp32 ms | ORT int8 ms | fp32 speed-up vs eager | int8 speed-up vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, ms in rows:
        print(f"| {name} | {batch} | {ms['eager']:.1f} | {ms['ort_fp32']:.1f} | {ms['ort_int8']:.1f} | "
              f"{ms['eager'] / ms['ort_fp32']:.2f}x | {ms['ort_fp32'] / ms['ort_int8']:.2f}x |")


if __name__ == "__main__":
    main()
