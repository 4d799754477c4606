"""Pretraining throughput per method, measured with the training loop's own step on real data.

2D methods: a batch of 16 real chest X-rays at 128 px; 3D methods: a batch of 4 real CT cubes of
32^3 voxels. Each row is one full optimisation step (views and augmentations, forward, backward,
optimiser, momentum/queue updates) as ``zoo pretrain`` runs it, in images (or cubes) per second.
Methods whose module is not importable yet are skipped. When both exist, the cost of a PCRL step
relative to a SimCLR step on the same ResNet-18 is printed.

Each method is measured in every ``--precision`` given (default: fp32 and bf16, side by side, in one
run), and the PCRL steps are compared with the official PCRL code's step measured earlier on this
machine's class of CPU (fixed figures, fp32, 2 threads, excluding its data loading; see README
"Pretraining speed and precision").

    python benchmarks/pretrain_throughput.py [--steps 5] [--threads 2] [--method pcrl ...] [--precision fp32 bf16]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._machine import cpu_info  # noqa: E402
from zoo.data.ct import CTCubeDataset  # noqa: E402
from zoo.data.datasets import ImageFolderDataset  # noqa: E402
from zoo.data.paths import data_path  # noqa: E402
from zoo.meta.registry import get_pretrained_cfg  # noqa: E402
from zoo.methods import METHODS, get_method  # noqa: E402
from zoo.train.precision import PRECISIONS, make_precision  # noqa: E402
from zoo.train.pretrain import PretrainConfig, build_optimizer, prepare_method, train_step  # noqa: E402

# the architectures each method is measured on (the first that its class accepts is used per dimension)
ARCHS = {
    "simclr": ["resnet18"],
    "mocov2": ["resnet18"],
    "pcrl": ["unet_resnet18", "unet3d_seg"],
    "pcrlv2": ["resnet18", "unet3d_seg"],
    "genesis": ["unet3d_seg"],
    "swcl": ["resnet18"],
    "micle": ["resnet18"],
}


# the official PCRL (v1) step on this project's 2-core AMD EPYC, fp32, 2 threads, pre-built batches:
# (low, high) seconds per step, measured earlier with the same shapes (the official code is not in this repo)
OFFICIAL_PCRL_S = {2: (3.10, 3.69), 3: (16.2, 16.2)}


def _batch_2d(size: int, batch: int) -> torch.Tensor:
    ds = ImageFolderDataset(data_path("cxr/kermany/train/PNEUMONIA"), img_size=size, limit=batch)
    return torch.stack([ds[i][0] for i in range(batch)])


def _batch_3d(cube: int, batch: int) -> torch.Tensor:
    ds = CTCubeDataset(data_path("ct/volumes/lungdx_a0002_series2.nii.gz"), cube_size=(cube,) * 3,
                       spacing=(1.0, 1.0, 1.0), samples_per_volume=batch)
    return torch.stack([ds[i][0] for i in range(batch)])


def measure(
    method_name: str, arch: str, x: torch.Tensor, steps: int, warmup: int, precision: str = "fp32",
    channels_last: bool = True,
) -> tuple[float, float, float]:
    """(min wall, median wall, median CPU) seconds per step of ``steps`` timed steps after ``warmup``.

    CPU time (all threads of this process) grows less than wall time when other processes share
    the cores; the minimum wall time is the least disturbed step.
    """
    torch.manual_seed(0)
    method = get_method(method_name)(arch)
    spatial_dims = get_pretrained_cfg(arch).spatial_dims
    prepare_method(method, torch.device("cpu"), spatial_dims, channels_last)
    opt, _ = build_optimizer(PretrainConfig(method=method_name, arch=arch, data="", out=""), method)
    amp = make_precision(precision, "cpu")
    gen = torch.Generator().manual_seed(0)
    wall, cpu = [], []
    total = warmup + steps
    for step in range(total):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(method, method, x, gen, opt, step, total, channels_last, amp)
        if step >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return min(wall), statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--method", action="append", default=None, help="only these methods (repeatable)")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-2d", type=int, default=16)
    parser.add_argument("--cube", type=int, default=32)
    parser.add_argument("--batch-3d", type=int, default=4)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS,
                        help="training precisions to measure side by side (default: fp32 bf16)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="contiguous (NCHW / NCDHW) layout instead of channels_last (zoo pretrain's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    x2 = x3 = None
    rows: list[tuple[str, str, str, int, str, float, float, float]] = []
    for name in args.method or list(METHODS):
        try:
            cls = get_method(name)
        except (ImportError, AttributeError) as err:
            print(f"skip {name}: not importable yet ({type(err).__name__}: {err})")
            continue
        done_dims: set[int] = set()
        for arch in ARCHS.get(name, [f"{name}_resnet18"]):
            dims = get_pretrained_cfg(arch).spatial_dims
            if dims not in cls.spatial_dims or dims in done_dims:
                continue
            if dims == 2:
                x2 = _batch_2d(args.img_size, args.batch_2d) if x2 is None else x2
                x, size = x2, f"{args.batch_2d} x {args.img_size}^2"
            else:
                x3 = _batch_3d(args.cube, args.batch_3d) if x3 is None else x3
                x, size = x3, f"{args.batch_3d} x {args.cube}^3"
            measured = False
            for precision in args.precision:
                try:
                    best, wall, cpu = measure(name, arch, x, args.steps, args.warmup, precision, args.channels_last)
                except (ValueError, TypeError, RuntimeError) as err:
                    print(f"skip {name} on {arch} ({precision}): {type(err).__name__}: {err}")
                    continue
                measured = True
                rows.append((name, arch, size, x.shape[0], precision, best, wall, cpu))
                print(f"  {name} {arch} {precision}: min {best:.2f} s, median {wall:.2f} s/step", flush=True)
            if measured:
                done_dims.add(dims)
    threads = torch.get_num_threads()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    layout = "channels_last" if args.channels_last else "contiguous"
    print(f"\npretraining throughput: torch {torch.__version__}, {threads} thread(s), {layout}, "
          f"{args.steps} timed steps after {args.warmup}, CPU {cpu_info()['cpu']}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end")
    print(f"{'method':<8} {'architecture':<22} {'batch':<12} {'prec':<5} {'min s':>7} {'median s':>9} "
          f"{'img/s':>7} {'CPU s':>7} {'vs fp32':>8}")
    fp32 = {(r[0], r[1]): r[6] for r in rows if r[4] == "fp32"}
    for name, arch, size, n, precision, best, wall, cpu in rows:
        ref = fp32.get((name, arch))
        rel = f"{ref / wall:.2f}x" if ref and precision != "fp32" else ""
        print(f"{name:<8} {arch:<22} {size:<12} {precision:<5} {best:>7.2f} {wall:>9.2f} {n / wall:>7.2f} "
              f"{cpu:>7.2f} {rel:>8}")
    by = {(r[0], get_pretrained_cfg(r[1]).spatial_dims, r[4]): r for r in rows}
    for dims, what in ((2, "2D step (ResNet-18)"), (3, "3D step (3D U-Net)")):
        ref = "simclr" if dims == 2 else "genesis"
        for precision in args.precision:
            if ("pcrl", dims, precision) in by and (ref, dims, precision) in by:
                p, r = by[("pcrl", dims, precision)], by[(ref, dims, precision)]
                print(f"PCRL / {ref} cost per {what}, {precision}: wall {p[6] / r[6]:.2f}x, CPU {p[7] / r[7]:.2f}x")
    for dims in (2, 3):
        lo, hi = OFFICIAL_PCRL_S[dims]
        for precision in args.precision:
            r = by.get(("pcrl", dims, precision))
            if r is None:
                continue
            official = f"{lo:.2f}-{hi:.2f} s" if hi != lo else f"{lo:.2f} s"
            print(f"PCRL {dims}D {r[2]} {precision}: official step {official} (fp32) / zoo median {r[6]:.2f} s = "
                  f"{lo / r[6]:.2f}-{hi / r[6]:.2f}x (min {r[5]:.2f} s: {lo / r[5]:.2f}-{hi / r[5]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
