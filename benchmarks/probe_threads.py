"""The linear probe's fit time at one thread vs the default, before and after it pinned itself to one thread.

Fits :class:`zoo.eval.probe.LogisticRegression` (L2 chosen by 3-fold CV over 7 values, then refitted: 22 L-BFGS
fits) on ``--n`` x ``--dim`` Gaussian features with 2 classes (seed 0), the size of a 200-image probe of a
ResNet-18, ``--repeats`` times per setting, in alternation:

- ``threads=None`` at the default torch threads: the probe as it was (it used the process's threads);
- ``threads=1`` (the default now) with the process at its default threads (as ``zoo eval`` sets them);
- the process at 1 thread (``zoo eval --threads 1``).

    python benchmarks/probe_threads.py [--n 200] [--dim 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._machine import cpu_info  # noqa: E402
from zoo.eval.harness import usable_cpus  # noqa: E402
from zoo.eval.probe import LogisticRegression  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    y = rng.integers(0, 2, args.n)
    default = usable_cpus()
    settings = {f"before: probe on the process's {default} threads": (default, None),
                f"now: process at {default} threads (default), probe on 1": (default, 1),
                "process at 1 thread (--threads 1)": (1, 1)}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, (process, probe) in settings.items():
            torch.set_num_threads(process)
            t, c = time.perf_counter(), time.process_time()
            LogisticRegression(2, threads=probe).fit(x, y)
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    load = os.getloadavg()
    print(f"probe fit, {args.n} x {args.dim} features, {args.repeats} repeats; CPU {cpu_info()['cpu']}, "
          f"{default} usable CPUs, load average {load[0]:.1f} at the end")
    for name, ts in times.items():
        wall = [w for w, _ in ts]
        print(f"  {name:<52} wall min {min(wall):6.2f} s, median {statistics.median(wall):6.2f} s; "
              f"CPU median {statistics.median(c for _, c in ts):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
