"""Warm ``zoo.create_model(name, pretrained=True)`` against the bare floor, in fresh processes.

The floor is what a user would write by hand for the same file: ``timm.create_model`` of the same
architecture + ``safetensors.torch.load_file`` + ``load_state_dict``. zoo additionally resolves the
file through its sources (mirror, weights/, Hugging Face cache), checks the sha256 stamp, filters and
checks keys. Each measurement is one fresh Python process (imports of torch/timm/zoo happen before
the timer; zoo's lazy imports on the first call are inside it). Runs are interleaved, medians reported.

    python benchmarks/load_speed.py [--runs 7] [--models resnet18.pcrl_kermany64 resnet50]

Sources: ``mirror`` (``ZOO_WEIGHTS_DIR``) and ``hf-cache`` (a Hugging Face cache filled once by the
real client from a loopback Hub, then used with ``HF_HUB_OFFLINE=1``). Random weights: only the
loading path is measured.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

_ZOO = """
import json, sys, time
import torch, timm
from safetensors.torch import load_file
import zoo
torch.set_num_threads(1)
name, overlay = sys.argv[1], json.loads(sys.argv[2])
t0, c0 = time.perf_counter(), time.process_time()
model = zoo.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
print(time.perf_counter() - t0, time.process_time() - c0)
"""

_FLOOR = """
import sys, time
import torch, timm
from safetensors.torch import load_file
import zoo
torch.set_num_threads(1)
arch, path = sys.argv[1], sys.argv[2]
t0, c0 = time.perf_counter(), time.process_time()
model = timm.create_model(arch, num_classes=0)
model.load_state_dict(load_file(path))
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of the timed block, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=["resnet18.pcrl_kermany64"])
    args = parser.parse_args()

    import torch
    from hub_server import FakeHub
    from safetensors.torch import save_file

    import zoo
    from zoo.export.huggingface import _file_shapes, _timm_architecture
    from zoo.hub import WeightFile, resolve_weights

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp / "hf"),
                "ZOO_CACHE_DIR": str(tmp / "zoo"), "ZOO_WEIGHTS_DIR": str(tmp / "mirror"), "HF_HUB_OFFLINE": "1"}
    # as after `pip install`: zoo's modules byte-compiled once (the first, unmeasured run writes the .pyc files)
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.update({k: base_env[k] for k in ("HF_HOME", "ZOO_CACHE_DIR")})
    rows = []
    for name in args.models:
        model = zoo.create_model(name)
        path = tmp / "mirror" / f"{name}.bench.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        timm_arch = _timm_architecture(model.pretrained_cfg, _file_shapes(path))
        assert timm_arch, f"{name} has no timm equivalent: the floor needs one"
        common = {"tag": "bench", "sha256": sha, "file_size": len(data)}

        # the Hugging Face cache, filled once by the real client from a loopback Hub
        with FakeHub() as hub:
            commit = hub.commit(f"bench/{name}", {"model.safetensors": data})
            wf = WeightFile(name=name, hf_hub_id=f"bench/{name}", hf_hub_revision=commit, sha256=sha, size=len(data))
            os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0")
            import huggingface_hub

            huggingface_hub.constants.HF_HUB_OFFLINE = False
            blob = resolve_weights(wf)
            os.environ["HF_HUB_OFFLINE"] = "1"
        sources = {
            "mirror": ({**common, "file": path.name}, path),
            "hf-cache": ({**common, "hf_hub_id": f"bench/{name}", "hf_hub_revision": commit}, blob),
        }
        for source, (overlay, file) in sources.items():
            env = dict(base_env)
            if source == "hf-cache":
                env["ZOO_WEIGHTS_DIR"] = str(tmp / "empty")
            zoo_args = [name, json.dumps(overlay)]
            floor_args = [timm_arch[0], str(file)]
            _run(_ZOO, zoo_args, env)  # first load: hashes the file and stamps it; later loads are warm
            _run(_FLOOR, floor_args, env)
            zoo_t, floor_t = [], []
            for _ in range(args.runs):  # interleaved, so machine load affects both alike
                zoo_t.append(_run(_ZOO, zoo_args, env))
                floor_t.append(_run(_FLOOR, floor_args, env))
            zw, fw = (statistics.median(t[0] for t in ts) for ts in (zoo_t, floor_t))
            zc, fc = (statistics.median(t[1] for t in ts) for ts in (zoo_t, floor_t))
            rows.append((name, source, zw, fw, zw / fw, zc, fc, zc / fc))
            print(f"{name:<18} {source:<9} wall zoo {zw * 1000:6.1f} ms floor {fw * 1000:6.1f} ms ratio {zw / fw:.3f}"
                  f" | cpu zoo {zc * 1000:6.1f} ms floor {fc * 1000:6.1f} ms ratio {zc / fc:.3f}", flush=True)
    print(f"\nmedian of {args.runs} fresh processes each (torch {torch.__version__}, 1 thread)")
    print(f"{'model':<18} {'source':<9} {'zoo ms':>7} {'floor ms':>8} {'ratio':>6} {'zoo cpu':>8} {'floor cpu':>9} "
          f"{'cpu ratio':>9}")
    for name, source, zw, fw, rw, zc, fc, rc in rows:
        print(f"{name:<18} {source:<9} {zw * 1000:7.1f} {fw * 1000:8.1f} {rw:6.3f} {zc * 1000:8.1f} {fc * 1000:9.1f} "
              f"{rc:9.3f}")
    worst = max(r[4] for r in rows)
    print(f"\nworst median wall ratio {worst:.3f} (goal <= 1.10): {'met' if worst <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
