"""fp32 vs bf16 loss parity of the runs made by ``benchmarks/precision_parity.sh``.

For each recipe with both runs (``RUNS/NAME_fp32`` and ``RUNS/NAME_bf16``), over the steps both logged:
the relative difference ``|bf16 - fp32| / |fp32|`` of the total loss and of every loss term, raw and
smoothed (trailing mean over ``--window`` steps), max and mean; the median step time of each run.
A recipe passes when the smoothed total loss stays within ``--tol`` (relative) at every step.
Writes a JSON summary and a PNG with both curves per recipe.

    python benchmarks/precision_parity.py --runs /work/runs/parity [--out results/precision] [--tol 0.02]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._io import atomic_write_json  # noqa: E402
from zoo._plot import pyplot, save_figure  # noqa: E402

NAMES = ("pcrl_kermany", "genesis_ct", "simclr_kermany")
_SKIP = {"step", "epoch", "lr", "images_per_s", "step_time_s", "data_time_s", "pos_prob"}


def _log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def _smooth(values: list[float], window: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def _rel(a: list[float], b: list[float]) -> list[float]:
    return [abs(y - x) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True)]


def compare(fp32: list[dict[str, Any]], bf16: list[dict[str, Any]], window: int) -> dict[str, Any]:
    """Relative differences of every loss term over the common steps."""
    n = min(len(fp32), len(bf16))
    fp32, bf16 = fp32[:n], bf16[:n]
    assert [r["step"] for r in fp32] == [r["step"] for r in bf16], "the two logs do not share their steps"
    terms = sorted(k for k in fp32[0] if k not in _SKIP and isinstance(fp32[0][k], (int, float)))
    out: dict[str, Any] = {"steps": n, "window": window, "terms": {}}
    for term in terms:
        a, b = [r[term] for r in fp32], [r[term] for r in bf16]
        raw, smooth = _rel(a, b), _rel(_smooth(a, window), _smooth(b, window))
        out["terms"][term] = {
            "raw_max": max(raw), "raw_mean": statistics.fmean(raw), "smoothed_max": max(smooth),
            "smoothed_mean": statistics.fmean(smooth), "fp32_first": a[0], "fp32_last": a[-1], "bf16_last": b[-1],
        }
    out["step_time_s_median"] = {"fp32": statistics.median(r["step_time_s"] for r in fp32),
                                 "bf16": statistics.median(r["step_time_s"] for r in bf16)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="the RUNS directory of precision_parity.sh")
    parser.add_argument("--out", default="results/precision", help="where parity.json and parity.png go")
    parser.add_argument("--window", type=int, default=5, help="trailing mean window of the smoothed curves")
    parser.add_argument("--tol", type=float, default=0.02, help="max relative difference of the smoothed loss")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    found = [n for n in NAMES if (runs / f"{n}_fp32/log.jsonl").is_file() and (runs / f"{n}_bf16/log.jsonl").is_file()]
    if not found:
        print(f"no pair of NAME_fp32 / NAME_bf16 runs with a log.jsonl in {runs}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {"tolerance": args.tol, "window": args.window, "runs": {}}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(found), figsize=(4.2 * len(found), 3.2), squeeze=False)
    ok = True
    for ax, name in zip(axes[0], found, strict=True):
        fp32, bf16 = _log(runs / f"{name}_fp32"), _log(runs / f"{name}_bf16")
        res = compare(fp32, bf16, args.window)
        res["commands"] = {p: json.loads((runs / f"{name}_{p}/run.json").read_text())["config"].get("command") or ""
                           for p in ("fp32", "bf16") if (runs / f"{name}_{p}/run.json").is_file()}
        res["pass"] = res["terms"]["loss"]["smoothed_max"] <= args.tol
        ok &= res["pass"]
        summary["runs"][name] = res
        n = res["steps"]
        for logs, label in ((fp32, "fp32"), (bf16, "bf16")):
            steps = [r["step"] for r in logs[:n]]
            ax.plot(steps, [r["loss"] for r in logs[:n]], lw=0.6, alpha=0.35)
            ax.plot(steps, _smooth([r["loss"] for r in logs[:n]], args.window), lw=1.4, label=label,
                    color=ax.lines[-1].get_color())
        t = res["terms"]["loss"]
        ax.set_title(f"{name}: {n} steps\nsmoothed loss max rel. diff {100 * t['smoothed_max']:.2f}%", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        print(f"{name}: {n} common steps; loss rel. diff smoothed max {100 * t['smoothed_max']:.2f}% "
              f"mean {100 * t['smoothed_mean']:.2f}% (raw max {100 * t['raw_max']:.2f}%); "
              f"fp32 {t['fp32_first']:.4f} -> {t['fp32_last']:.4f}, bf16 last {t['bf16_last']:.4f}; "
              f"median step fp32 {res['step_time_s_median']['fp32']:.2f} s, bf16 {res['step_time_s_median']['bf16']:.2f} s (run at different times: not a speed comparison); "
              f"{'PASS' if res['pass'] else 'FAIL'} (tol {100 * args.tol:.1f}%)")
        for term, v in res["terms"].items():
            if term != "loss":
                print(f"    {term:<16} smoothed max {100 * v['smoothed_max']:6.2f}%  mean {100 * v['smoothed_mean']:6.2f}%")
    fig.tight_layout()
    out = Path(args.out)
    save_figure(fig, out / "parity.png", dpi=90)
    atomic_write_json(out / "parity.json", summary)
    print(f"written {out / 'parity.json'} and {out / 'parity.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
