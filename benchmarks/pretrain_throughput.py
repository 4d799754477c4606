"""Pretraining throughput per method, measured with the training loop's own step on real data.

2D methods: a batch of 16 real chest X-rays at 128 px; 3D methods: a batch of 4 real CT cubes of
32^3 voxels. Each row is one full optimisation step (views and augmentations, forward, backward,
optimiser, momentum/queue updates) as ``zoo pretrain`` runs it, in images (or cubes) per second.
Methods whose module is not importable yet are skipped. When both exist, the cost of a PCRL step
relative to a SimCLR step on the same ResNet-18 is printed.

    python benchmarks/pretrain_throughput.py [--steps 5] [--threads 2] [--method pcrl ...]
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

from zoo.data.ct import CTCubeDataset  # noqa: E402
from zoo.data.datasets import ImageFolderDataset  # noqa: E402
from zoo.data.paths import data_path  # noqa: E402
from zoo.meta.registry import get_pretrained_cfg  # noqa: E402
from zoo.methods import METHODS, get_method  # noqa: E402
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


def _batch_2d(size: int, batch: int) -> torch.Tensor:
    ds = ImageFolderDataset(data_path("cxr/kermany/train/PNEUMONIA"), img_size=size, limit=batch)
    return torch.stack([ds[i][0] for i in range(batch)])


def _batch_3d(cube: int, batch: int) -> torch.Tensor:
    ds = CTCubeDataset(data_path("ct/volumes/lungdx_a0002_series2.nii.gz"), cube_size=(cube,) * 3,
                       spacing=(1.0, 1.0, 1.0), samples_per_volume=batch)
    return torch.stack([ds[i][0] for i in range(batch)])


def measure(method_name: str, arch: str, x: torch.Tensor, steps: int, warmup: int) -> tuple[float, float]:
    """Median wall and CPU seconds per step of ``steps`` timed steps after ``warmup``.

    CPU time (all threads of this process) does not grow when other processes share the cores,
    so it is the number to compare across runs on a busy machine.
    """
    torch.manual_seed(0)
    method = get_method(method_name)(arch)
    spatial_dims = get_pretrained_cfg(arch).spatial_dims
    channels_last = True  # as `zoo pretrain` does by default
    prepare_method(method, torch.device("cpu"), spatial_dims, channels_last)
    opt, _ = build_optimizer(PretrainConfig(method=method_name, arch=arch, data="", out=""), method)
    gen = torch.Generator().manual_seed(0)
    wall, cpu = [], []
    total = warmup + steps
    for step in range(total):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(method, method, x, gen, opt, step, total, channels_last)
        if step >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    x2 = x3 = None
    rows: list[tuple[str, str, str, int, float, float]] = []
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
            try:
                wall, cpu = measure(name, arch, x, args.steps, args.warmup)
            except (ValueError, TypeError, RuntimeError) as err:
                print(f"skip {name} on {arch}: {type(err).__name__}: {err}")
                continue
            done_dims.add(dims)
            rows.append((name, arch, size, x.shape[0], wall, cpu))
    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\npretraining throughput: torch {torch.__version__}, {threads} thread(s), fp32, channels_last, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end")
    print(f"{'method':<8} {'architecture':<20} {'batch':<12} {'wall s/step':>11} {'img/s':>7} "
          f"{'CPU s/step':>10} {'img/CPU-s':>9}")
    for name, arch, size, n, wall, cpu in rows:
        print(f"{name:<8} {arch:<20} {size:<12} {wall:>11.2f} {n / wall:>7.2f} {cpu:>10.2f} {n / cpu:>9.2f}")
    by = {(r[0], get_pretrained_cfg(r[1]).spatial_dims): r for r in rows}
    for dims, what in ((2, "2D step (ResNet-18)"), (3, "3D step (3D U-Net)")):
        if ("pcrl", dims) in by and ("simclr" if dims == 2 else "genesis", dims) in by:
            ref = "simclr" if dims == 2 else "genesis"
            p, r = by[("pcrl", dims)], by[(ref, dims)]
            print(f"PCRL / {ref} cost per {what}: wall {p[4] / r[4]:.2f}x, CPU {p[5] / r[5]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
