"""Copy a finished `zoo pretrain` export into weights/ as float16 safetensors, and print its registry fields.

    .venv/bin/python scripts/ship_weights.py /work/runs/mocov2_kermany mocov2_resnet18.kermany64

The metadata records the sha256 of the float32 source file; the bytes depend on the source only.
Then: add `register_pretrained(NAME, file=..., sha256=..., file_size=...)` to zoo/_catalog.py, run
`bash scripts/evaluate_reference.sh NAME` and paste `zoo report --metrics` into the entry.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from zoo._hub import repo_weights_dir, sha256_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the --out directory of a finished zoo pretrain run")
    ap.add_argument("name", help="arch.tag to ship (weights/<name>.safetensors)")
    args = ap.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    if not run.get("finished"):
        raise SystemExit(f"{args.run} is not finished (run.json: finished is not true); resume it first")
    arch = run["config"]["arch"]
    src = args.run / f"{arch}.safetensors"
    with safe_open(str(src), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    dst = repo_weights_dir() / f"{args.name}.safetensors"
    save_file(state, str(dst), metadata={"format": "pt", "source_sha256": sha256_file(src), "dtype": "float16"})
    os.chmod(dst, 0o644)
    summary = run["summary"]
    print(json.dumps({"file": dst.name, "sha256": sha256_file(dst), "file_size": dst.stat().st_size,
                      "source_arch": arch, "steps": summary["steps"], "wall_time_s": summary["wall_time_s"],
                      "images_per_s": summary["images_per_s"], "final_loss": summary["final_loss"]}, indent=1))


if __name__ == "__main__":
    main()
