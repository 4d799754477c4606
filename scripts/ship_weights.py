"""Copy a finished `zoo pretrain` export into weights/ as float16 safetensors, with its pretraining record.

    .venv/bin/python scripts/ship_weights.py /work/runs/mocov2_kermany resnet18.mocov2_kermany64

Writes weights/NAME.safetensors (or the file NAME is registered with: shipped files keep the names they were
released under, e.g. resnet18.mocov2_kermany64 -> weights/mocov2_resnet18.kermany64.safetensors; its metadata records the sha256 of the float32 source file; the bytes depend
on the source only) and the run's record in results/pretraining/: NAME.json (the run's run.json: command, seed,
steps, throughput, plus the source's sha256), NAME.log.jsonl.gz (every step's losses, lr and speed) and
NAME.loss.png (the loss curves). Prints the registry fields. Then: add
`register_pretrained(NAME, file=..., sha256=..., file_size=...)` to zoo/meta/catalog/ and run
`bash scripts/evaluate_reference.sh NAME`.

`--record-only` writes the record without touching weights/: for a re-run of a shipped recipe whose own log was
lost. NAME.json then says whether the re-run reproduced the shipped file (same source sha256).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from zoo._io import sha256_file
from zoo.hub import canonical_safetensors, repo_weights_dir
from zoo.report import load_pretrain_log, plot_pretrain_log

RECORDS = Path(__file__).resolve().parent.parent / "results" / "pretraining"


def ship(src: Path, source_sha256: str, dst: Path) -> None:
    """``src`` (a float32 export, sha256 ``source_sha256``) as float16 safetensors at ``dst``, byte for byte the
    same for the same source (the header canonicalised as for converted files)."""
    with safe_open(str(src), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, str(dst), metadata={"format": "pt", "source_sha256": source_sha256, "dtype": "float16"})
    canonical_safetensors(dst)
    os.chmod(dst, 0o644)


def write_record(run_dir: Path, run: dict[str, Any], source: str, name: str, shipped: Path,
                 records: Path = RECORDS) -> dict[str, Any]:
    """results/pretraining/NAME.json, NAME.log.jsonl.gz and NAME.loss.png of a run (in ``records``)."""
    steps = load_pretrain_log(run_dir / "log.jsonl")
    if len(steps) != run["summary"]["steps"]:
        raise SystemExit(f"{run_dir}/log.jsonl has {len(steps)} steps, run.json {run['summary']['steps']}")
    with safe_open(str(shipped), "pt") as f:
        shipped_source = (f.metadata() or {}).get("source_sha256")
    record = {**run, "name": name, "source_sha256": source, "shipped_source_sha256": shipped_source,
              "same_run_as_shipped": source == shipped_source,
              "step_time_s_total": round(sum(s["step_time_s"] for s in steps), 1)}
    records.mkdir(parents=True, exist_ok=True)
    (records / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log = (run_dir / "log.jsonl").read_bytes()
    (records / f"{name}.log.jsonl.gz").write_bytes(gzip.compress(log, mtime=0))
    what = "the shipped run" if record["same_run_as_shipped"] else "a re-run of the recipe, not the shipped file"
    plot_pretrain_log(steps, records / f"{name}.loss.png",
                      title=f"{name}: {run['config']['method']} pretraining, {len(steps)} steps ({what})")
    return record


def _registered_file(name: str) -> str | None:
    """The file ``name`` is registered with (its release name), or None for a new name."""
    from zoo.meta.registry import UnknownModelError, get_pretrained_cfg

    try:
        return get_pretrained_cfg(name).file
    except UnknownModelError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the --out directory of a finished zoo pretrain run")
    ap.add_argument("name", help="network.tag to ship (weights/<name>.safetensors, or its registered file)")
    ap.add_argument("--record-only", action="store_true",
                    help="write only the results/pretraining/NAME.* record (weights/NAME.safetensors must exist)")
    ap.add_argument("--weights-dir", type=Path, default=repo_weights_dir(), help="default: the repository's weights/")
    ap.add_argument("--records-dir", type=Path, default=RECORDS, help="default: the repository's results/pretraining/")
    args = ap.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    if not run.get("finished"):
        raise SystemExit(f"{args.run} is not finished (run.json: finished is not true); resume it first")
    src = args.run / f"{run.get('network', run['config']['arch'])}.safetensors"  # the network's current name
    dst = args.weights_dir / (_registered_file(args.name) or f"{args.name}.safetensors")
    source = sha256_file(src)
    if not args.record_only:
        ship(src, source, dst)
    elif not dst.is_file():
        raise SystemExit(f"{dst} does not exist: ship the weights first (without --record-only)")
    record = write_record(args.run, run, source, args.name, dst, args.records_dir)
    summary = run["summary"]
    print(json.dumps({"file": dst.name, "sha256": sha256_file(dst), "file_size": dst.stat().st_size,
                      "source_arch": run["config"]["arch"], "steps": summary["steps"],
                      "wall_time_s": summary["wall_time_s"], "step_time_s_total": record["step_time_s_total"],
                      "images_per_s": summary["images_per_s"], "final_loss": summary["final_loss"],
                      "same_run_as_shipped": record["same_run_as_shipped"]}, indent=1))


if __name__ == "__main__":
    main()
