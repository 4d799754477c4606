"""Bounded fuzz benchmark: malformed weights, official checkpoints and command lines against zoo.

Every case is generated from ``--seed`` and the case number, so a run (and any single case) can be
replayed. Families:

* ``st-path``: a registered safetensors file mutated (truncations, header byte flips, header length,
  dtype / shape / offset / key edits, whole-file replacements, non-finite values) and loaded with
  ``create_model(name, checkpoint_path=...)``;
* ``st-mirror``: the same mutations plus data-region flips, as the copy in ``$ZOO_WEIGHTS_DIR`` loaded
  with ``create_model(name, pretrained=True)`` (sha256-checked);
* ``st-localdir``: a ``save_for_hf`` folder whose ``model.safetensors`` or ``config.json`` is mutated,
  loaded as ``local-dir:``;
* ``convert``: each ``zoo convert`` layout's official object (built as in tests/convert/test_convert.py),
  mutated as an object (entries, containers, tensors, keys, ``opt``) or as a pickle file (truncations,
  garbage, a pickle that runs code, the wrong layout), converted with ``convert_checkpoint``;
* ``cli``: ``zoo`` invocations with one bad argument (numbers, paths, choices, names) or a bad file.

Cases run in worker subprocesses (torch imported once per worker), in batches; the parent watches
each case with a timeout, so a hang or a crash of the interpreter (signal) is caught and the batch
goes on in a new worker. Outcomes:

* ``clean``: a zoo error (a class defined in zoo, or a ValueError / OSError raised by zoo's own code; for the CLI: exit code 2, one ``error:`` line that
  names the bad argument where there is one, no traceback);
* ``crash``: any other exception (a traceback), or the worker died (signal);
* ``hang``: no answer within ``--timeout`` seconds;
* ``silent``: the bad input was accepted (loaded, converted, exit code 0);
* ``unclear``: a builtin ``ValueError`` / ``OSError`` raised by a library (not by zoo), or a CLI error that
  does not name the bad argument, or an unexpected exit code.

    python benchmarks/fuzz_loaders.py --quick            # ~100 cases
    nice -n 10 python benchmarks/fuzz_loaders.py         # 1,000 cases, table + results/fuzz_loaders.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import queue
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("clean", "crash", "hang", "silent", "unclear")
#: share of the cases per family
FAMILIES = {"st-path": 0.27, "st-mirror": 0.13, "st-localdir": 0.13, "convert": 0.22, "cli": 0.25}
#: registered files the safetensors families mutate (small ones, shipped in weights/)
ST_MODELS = ("resnet18.micle_kermany64", "unet3d_small_seg.genesis_ct32")
#: mutations whose refusal is the loader's own non-finite / non-float check (models/builder.py):
#: reported in their own rows so that the table says what that check will change
LOADER_CHECKS = {"st:nonfinite", "st:int-dtype", "conv:nonfinite", "conv:int-dtype"}
#: that row also holds the malformed config.json cases (cfg:*): config validation is the same other work
LOADER_ROW = "loader/config checks"


# ==================================================================================================
# case generation (parent)
# ==================================================================================================
def case_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little")


def make_cases(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` cases, families interleaved in proportion to :data:`FAMILIES`."""
    names = list(FAMILIES)
    weights = [FAMILIES[f] for f in names]
    counts = {f: 0 for f in names}
    cases = []
    for i in range(n):  # deterministic proportional interleaving
        family = min(names, key=lambda f: (counts[f] + 1) / weights[names.index(f)])
        counts[family] += 1
        cases.append({"id": i, "family": family, "seed": case_seed(seed, i)})
    return cases


# ==================================================================================================
# worker side: building, mutating, running one case
# ==================================================================================================
class Worker:
    """Runs cases in this process; torch and zoo are imported once."""

    def __init__(self, workdir: Path) -> None:
        import torch

        torch.set_num_threads(1)
        import zoo  # noqa: F401

        self.workdir = workdir
        self.base = workdir / "base"
        self.base.mkdir(parents=True, exist_ok=True)
        self._convert_objs: dict[str, Any] = {}

    # --- safetensors ------------------------------------------------------------------------------
    def base_st(self, name: str) -> bytes:
        """The registered file of ``name``, re-serialised without ``__metadata__`` (so that header
        mutations only touch tensor entries)."""
        path = self.base / f"{name}.nometa.safetensors"
        if not path.exists():
            from zoo.meta.registry import get_pretrained_cfg

            data = (REPO / "weights" / get_pretrained_cfg(name).file).read_bytes()
            header, body = split_st(data)
            header.pop("__metadata__", None)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(join_st(header, body))
            os.replace(tmp, path)
        return path.read_bytes()

    def mutate_st(self, rng: random.Random, data: bytes, data_flips: bool) -> tuple[str, bytes | str]:
        """A malformed variant of the safetensors bytes ``data``: ``(mutation, bytes)``, or
        ``(mutation, "dir")`` / ``(mutation, "missing")`` for a path that is not a file."""
        header, body = split_st(data)
        keys = [k for k in header if k != "__metadata__"]
        n_header = struct.unpack("<Q", data[:8])[0]
        options = ["truncate", "header-flip", "header-length", "drop-key", "rename-key", "dtype", "shape",
                   "offsets", "extra-key", "duplicate-key", "header-type", "whole-file", "int-dtype", "nonfinite",
                   "append"]
        if data_flips:
            options.append("data-flip")
        kind = rng.choice(options)
        if kind == "truncate":
            cut = rng.choice([0, rng.randrange(1, 8), rng.randrange(8, 8 + n_header), rng.randrange(8 + n_header, len(data))])
            return "st:truncate", data[:cut]
        if kind == "header-flip":
            out = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(8, 8 + n_header)
                out[pos] ^= rng.randrange(1, 256)
            return "st:header-flip", bytes(out)
        if kind == "data-flip":
            out = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                out[rng.randrange(8 + n_header, len(out))] ^= rng.randrange(1, 256)
            return "st:data-flip", bytes(out)
        if kind == "header-length":
            value = rng.choice([0, 1, n_header - 1, n_header + 1, n_header * 2, len(data), 2**32, 2**63 - 1, 2**64 - 1])
            return "st:header-length", struct.pack("<Q", value) + data[8:]
        if kind == "append":
            return "st:append", data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 64, 4096])))
        floats = [k for k in keys if header[k]["dtype"] in ("F32", "F16", "BF16", "F64") and header[k]["shape"]]
        if kind in ("int-dtype", "nonfinite") and not floats:
            kind = "drop-key"
        key = rng.choice(floats if kind in ("int-dtype", "nonfinite", "shape") else keys)
        entry = dict(header[key])
        if kind == "drop-key":
            del header[key]
            return "st:drop-key", join_st(header, body)
        if kind == "rename-key":
            header[rng.choice(["fuzz.", "module.", ""]) + key + rng.choice(["_x", ".weight", "", "\u00e9"])] = header.pop(key)
            if key in header:  # the empty prefix + suffix: rename to something new anyway
                header["fuzz." + key] = header.pop(key)
            return "st:rename-key", join_st(header, body)
        if kind == "dtype":  # another dtype of a different size: the offsets no longer fit
            size = DTYPE_SIZE.get(entry["dtype"], 4)
            entry["dtype"] = rng.choice([d for d, s in DTYPE_SIZE.items() if s != size] + ["F33", "", "float"])
            header[key] = entry
            return "st:dtype", join_st(header, body)
        if kind == "int-dtype":  # same size, integer: the bytes read as integers
            size = DTYPE_SIZE.get(entry["dtype"], 4)
            ints = [d for d, s in DTYPE_SIZE.items() if s == size and (d[0] in "IU" or d == "BOOL")]
            if not ints:
                return "st:int-dtype", data
            entry["dtype"] = rng.choice(ints)
            header[key] = entry
            return "st:int-dtype", join_st(header, body)
        if kind == "shape":
            shape = list(entry["shape"])
            numel = 1
            for s in shape:
                numel *= s
            choice = rng.choice(["flat", "reverse", "grow", "shrink", "negative", "empty", "str"])
            if choice == "flat" or (choice == "reverse" and len(shape) < 2):
                new = [numel] if len(shape) != 1 else [1, numel]
            elif choice == "reverse":
                new = shape[::-1] if shape[::-1] != shape else [numel]
            elif choice == "grow":
                new = [*shape[:-1], (shape[-1] if shape else 1) + 1]
            elif choice == "shrink":
                new = [max(0, s - 1) for s in shape] or [0]
            elif choice == "negative":
                new = [-1, *shape[1:]]
            elif choice == "empty":
                new = [0]
            else:
                new = ["a", *shape[1:]]
            if new == shape:
                new = [numel + 1]
            entry["shape"] = new
            header[key] = entry
            return "st:shape", join_st(header, body)
        if kind == "offsets":
            start, end = entry["data_offsets"]
            entry["data_offsets"] = rng.choice([[end, start], [start, end + 8], [0, len(body) + 1], [start, start],
                                                [-1, end], [start + 1, end + 1], [0, 2**62]])
            header[key] = entry
            return "st:offsets", join_st(header, body)
        if kind == "extra-key":
            header["fuzz_extra.weight"] = dict(entry)
            return "st:extra-key", join_st(header, body)
        if kind == "duplicate-key":
            text = json.dumps(header, separators=(",", ":"))
            other = rng.choice([k for k in keys if k != key])  # the same entry twice would change nothing
            dup = json.dumps({key: header[other]}, separators=(",", ":"))[1:-1]
            text = text[:-1] + "," + dup + "}"
            return "st:duplicate-key", raw_st(text.encode(), body)
        if kind == "header-type":
            text = rng.choice(["[]", "null", '"x"', "1", "{", "", '{"__metadata__": {"a": 1}}', "\xff\xfe"])
            return "st:header-type", raw_st(text.encode("utf-8", "surrogateescape"), body)
        if kind == "nonfinite":
            import numpy as np

            k = key
            start, end = header[k]["data_offsets"]
            np_dtype = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}.get(header[k]["dtype"])
            if np_dtype is None:
                return "st:drop-key", join_st({kk: v for kk, v in header.items() if kk != k}, body)
            arr = np.frombuffer(body[start:end], dtype=np_dtype).copy()
            idx = rng.randrange(arr.size)
            arr[idx] = rng.choice([float("nan"), float("inf"), float("-inf")])
            body = body[:start] + arr.tobytes() + body[end:]
            return "st:nonfinite", join_st(header, body)
        # whole-file replacements
        # a missing file (or a directory in its place) is not malformed where other sources exist:
        # the mirror then falls back to the next source, as documented
        what = rng.choice(["empty", "random", "json", "pickle", "text", "zeros", *(["dir", "missing"] if not data_flips else [])])
        if what == "dir" or what == "missing":
            return "st:whole-file", what
        if what == "pickle":
            import torch

            buf = io.BytesIO()
            torch.save({"state_dict": {"w": torch.zeros(2)}}, buf)
            return "st:whole-file", buf.getvalue()
        return "st:whole-file", {
            "empty": b"", "random": bytes(rng.randrange(256) for _ in range(rng.choice([8, 100, 5000]))),
            "json": b'{"a": 1}', "text": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
            "zeros": bytes(4096),
        }[what]

    @staticmethod
    def place(path: Path, content: bytes | str) -> None:
        if content == "dir":
            path.mkdir(parents=True)
        elif content == "missing":
            return
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)  # type: ignore[arg-type]

    def run_st(self, case: dict[str, Any], tmp: Path) -> tuple[str, str, str]:
        import zoo
        from zoo.meta.registry import get_pretrained_cfg

        rng = random.Random(case["seed"])
        name = rng.choice(ST_MODELS)
        family = case["family"]
        if family == "st-path":
            mutation, content = self.mutate_st(rng, self.base_st(name), data_flips=False)
            path = tmp / "weights.safetensors"
            self.place(path, content)
            return mutation, *run_api(lambda: zoo.create_model(name, checkpoint_path=path))
        if family == "st-mirror":
            mutation, content = self.mutate_st(rng, self.base_st(name), data_flips=True)
            mirror = tmp / "mirror"
            mirror.mkdir()
            self.place(mirror / get_pretrained_cfg(name).file, content)
            with env(ZOO_WEIGHTS_DIR=str(mirror)):
                return mutation, *run_api(lambda: zoo.create_model(name, pretrained=True))
        # local-dir: a save_for_hf folder
        folder = tmp / "repo"
        src = self.base / f"hf-{name}"
        if not src.exists():
            from zoo.export.huggingface import save_for_hf

            save_for_hf(name, self.base / f"hf-{name}.tmp")
            os.replace(self.base / f"hf-{name}.tmp", src)
        shutil.copytree(src, folder)
        if rng.random() < 0.5:
            mutation, content = self.mutate_st(rng, (folder / "model.safetensors").read_bytes(), data_flips=True)
            (folder / "model.safetensors").unlink()
            self.place(folder / "model.safetensors", content)
        else:
            mutation = mutate_config(rng, folder / "config.json")
        return mutation, *run_api(lambda: zoo.create_model(f"local-dir:{folder}", pretrained=True))

    # --- convert ----------------------------------------------------------------------------------
    def convert_obj(self, layout: str) -> Any:
        """The official object of ``layout`` (built by tests/convert/test_convert.py's builders, cached on disk)."""
        import torch

        path = self.base / f"convert-{layout}.pt"
        if not path.exists():
            sys.path.insert(0, str(REPO))
            from tests.convert.test_convert import BUILDERS

            with torch.no_grad():
                obj = BUILDERS[layout]()[0]
            torch.save(obj, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        return torch.load(path, weights_only=False)  # our own file, written just above

    def run_convert(self, case: dict[str, Any], tmp: Path) -> tuple[str, str, str]:
        import torch

        from zoo.convert import LAYOUTS, convert_checkpoint

        rng = random.Random(case["seed"])
        layout = rng.choices(CONVERT_LAYOUTS, weights=[CONVERT_WEIGHTS[x] for x in CONVERT_LAYOUTS])[0]
        lay = LAYOUTS[layout]
        src = tmp / "official.pt"
        out = tmp / "out.safetensors"
        use = layout
        level = rng.random()
        if level < 0.25:  # a pickle-level mutation of a valid file
            obj = self.convert_obj(layout)
            torch.save(obj, src)
            data = src.read_bytes()
            # no byte flips here: a flip in an official file's tensor data is a valid file with other
            # weights, which nothing can tell without the official hash (flips are fuzzed where a hash exists)
            kind = rng.choice(["truncate", "garbage", "empty", "evil", "wrong-layout"])
            if kind == "truncate":
                src.write_bytes(data[: rng.randrange(0, len(data))])
            elif kind == "garbage":
                src.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096]))))
            elif kind == "empty":
                src.write_bytes(b"")
            elif kind == "evil":
                marker = tmp / "code_ran"
                torch.save({"opt": _Evil(str(marker)), "state_dict": {}, "epoch": 1}, src)
                mutation = "conv:evil-pickle"
                outcome, detail = run_api(lambda: convert_checkpoint(src, layout, out))
                if marker.exists():
                    return mutation, "crash", "the pickle ran code: " + detail
                return mutation, outcome, detail
            else:
                others = [n for n, other in LAYOUTS.items() if not set(other.archs) & set(lay.archs)]
                use = rng.choice(others)
            mutation = f"conv:pickle-{kind}"
        else:
            obj = self.convert_obj(layout)
            mutation = None
            while mutation is None:  # some mutations do not apply to every layout (e.g. opt.norm): draw again
                mutation = mutate_convert(rng, obj, lay)
            torch.save(obj.get("__fuzz_replace__", obj) if isinstance(obj, dict) else obj, src)
        outcome, detail = run_api(lambda: convert_checkpoint(src, use, out))
        if outcome == "clean" and (out.exists() or list(tmp.glob("*.tmp.safetensors"))):
            return mutation, "unclear", "refused but left a file behind: " + detail
        return f"{mutation}", outcome, f"[{layout}{'->' + use if use != layout else ''}] {detail}"

    # --- CLI --------------------------------------------------------------------------------------
    def run_cli(self, case: dict[str, Any], tmp: Path) -> tuple[str, str, str]:
        rng = random.Random(case["seed"])
        (tmp / "file").write_text("a file\n")
        (tmp / "dir").mkdir()
        (tmp / "imgs").mkdir()
        (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
        kind = rng.random()
        if kind < 0.7:
            cmd, option, vkind = rng.choice(CLI_OPTIONS)
            value = rng.choice(BAD_VALUES[vkind])
            argv = [*CLI_PREFIX[cmd], option, *([value] if not isinstance(value, list) else value)]
            if option == "--cube-size" and not isinstance(value, list):
                argv += ["8", "8"]
            mutation = f"cli:{cmd} {option} <{vkind}>"
            needles = [option, *([value] if isinstance(value, str) else value)]
        elif kind < 0.85:
            cmd = rng.choice(list(NAME_COMMANDS))
            value = rng.choice(BAD_NAMES)
            argv = [a if a != "NAME" else value for a in NAME_COMMANDS[cmd]]
            mutation = f"cli:{cmd} <bad name>"
            needles = []
        else:
            content = rng.choice(BAD_RESULTS)
            (tmp / "results.json").write_text(content)
            argv = ["report", "{t}/results.json"]
            mutation = "cli:report <bad results file>"
            needles = []
        argv = [a.replace("{t}", str(tmp)) for a in argv]
        needles = [n.replace("{t}", str(tmp)) for n in needles if n]
        allowed = {1, 2} if argv[0] == "download" else {2}
        return mutation, *run_cli(argv, needles, allowed)

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix=f"case{case['id']}-", dir=self.workdir))
        t0 = time.perf_counter()
        try:
            if case["family"].startswith("st-"):
                mutation, outcome, detail = self.run_st(case, tmp)
            elif case["family"] == "convert":
                mutation, outcome, detail = self.run_convert(case, tmp)
            else:
                mutation, outcome, detail = self.run_cli(case, tmp)
        except Exception as err:  # the harness itself failed building the case: say so
            mutation, outcome, detail = "harness", "harness-error", f"{type(err).__name__}: {err}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {**case, "mutation": mutation, "outcome": outcome, "detail": detail[:400],
                "seconds": round(time.perf_counter() - t0, 3)}


# --- safetensors helpers ------------------------------------------------------------------------------
DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}


def split_st(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def raw_st(header: bytes, body: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + body


def join_st(header: dict[str, Any], body: bytes) -> bytes:
    return raw_st(json.dumps(header, separators=(",", ":")).encode(), body)


def mutate_config(rng: random.Random, path: Path) -> str:
    """A malformed ``config.json`` of a ``save_for_hf`` folder."""
    config = json.loads(path.read_text())
    zoo_cfg = config.get("zoo", {}).get("pretrained_cfg", {})
    kind = rng.choice(["not-json", "list", "empty", "drop-zoo", "sha256", "file-size", "architecture", "arch-kwargs",
                       "num-classes", "input-size", "mean", "types"])
    if kind == "not-json":
        path.write_text(rng.choice(["{", "", "\x00\x01", "null", "[1,"]))
        return "cfg:not-json"
    if kind == "list":
        path.write_text("[]")
        return "cfg:not-object"
    if kind == "empty":
        path.write_text("{}")
        return "cfg:empty"
    if kind == "drop-zoo":
        config.pop("zoo", None)
        config.pop("architecture", None)
    elif kind == "sha256":
        zoo_cfg["sha256"] = rng.choice(["0" * 64, "abc", "", None, 5])
    elif kind == "file-size":
        zoo_cfg["file_size"] = rng.choice([0, 1, -5, "big", None])
    elif kind == "architecture":
        zoo_cfg["architecture"] = rng.choice(["nope", "", None, 3, "../../x"])
        config["architecture"] = zoo_cfg["architecture"]
    elif kind == "arch-kwargs":
        zoo_cfg["arch_kwargs"] = rng.choice([{"depth": -1}, {"nope": 1}, "x", [1], {"width": "wide"}, {"norm": "zz"}])
    elif kind == "num-classes":
        zoo_cfg["num_classes"] = rng.choice([-1, "two", 1.5, None, 10**12])
        config["num_classes"] = zoo_cfg["num_classes"]
    elif kind == "input-size":
        zoo_cfg["input_size"] = rng.choice([[3], [3, -1, 64], "big", [0, 0, 0], None, [3, 64, 64, 64, 64]])
    elif kind == "mean":
        zoo_cfg["mean"] = rng.choice([[0.5], "x", [float("nan")] * 3, None, []])
    else:
        field = rng.choice(sorted(zoo_cfg) or ["name"])
        zoo_cfg[field] = rng.choice([None, 1, [], {}, "", True])
        kind = f"types:{field}"
    path.write_text(json.dumps(config))
    return f"cfg:{kind.split(':')[0]}"


# --- convert helpers ------------------------------------------------------------------------------------
CONVERT_WEIGHTS = {"pcrlv2-2d": 26, "swcl-resnet18": 18, "pcrl-2d": 14, "genesis": 8, "pcrl-3d": 10, "pcrlv2-3d": 6,
                   "moco-v2": 7, "openselfsup": 6, "swcl-resnetv2-50x1": 5}
CONVERT_LAYOUTS = list(CONVERT_WEIGHTS)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _containers(obj: Any, lay: Any) -> list[dict[str, Any]]:
    if any(entry is None for entry, _ in lay.containers):
        return [obj]
    return [obj[entry] for entry, _ in lay.containers if entry in obj]


def mutate_convert(rng: random.Random, obj: Any, lay: Any) -> str | None:
    """Mutate the official object ``obj`` in place; return the mutation's name."""
    import torch

    containers = _containers(obj, lay)
    container = rng.choice(containers)
    kept = [k for k in container if lay.map_key(str(k))[1] is None and not str(k).endswith("num_batches_tracked")]
    floats = [k for k in kept if isinstance(container[k], torch.Tensor) and container[k].is_floating_point()
              and container[k].numel() > 1]
    kind = rng.choice(["drop-entry", "container-type", "non-tensor", "tensor-kind", "int-dtype", "shape", "nonfinite",
                       "delete-key", "add-key", "rename-key", "bare", "wrap", "nested", "key-type", "empty", "opt"])
    top_level = [e for e, _ in lay.containers if e is not None]
    if kind == "drop-entry" and top_level:
        del obj[rng.choice(top_level)]
    elif kind == "container-type" and top_level:
        obj[rng.choice(top_level)] = rng.choice([[1, 2], 5, "weights", None, torch.zeros(3), (1,), 1.5])
    elif kind == "non-tensor":
        container[rng.choice(kept)] = rng.choice([3, "w", None, [1.0, 2.0], {"a": 1}, 1.5, b"x", True])
    elif kind == "tensor-kind":
        k = rng.choice(floats)
        w = container[k]
        container[k] = rng.choice([lambda: w.to_sparse(), lambda: torch.empty_like(w, device="meta"),
                                   lambda: w.to(torch.complex64),
                                   lambda: torch.quantize_per_tensor(w.float(), 0.1, 0, torch.qint8)])()
    elif kind == "int-dtype":
        k = rng.choice(floats)
        container[k] = container[k].to(rng.choice([torch.int64, torch.int32, torch.uint8, torch.bool]))
    elif kind == "shape":
        k = rng.choice(floats)
        w = container[k]
        new = w
        while new.shape == w.shape:  # a reshape that changes nothing (flatten of a vector) is no mutation
            new = rng.choice([lambda: w.flatten(), lambda: w[:-1] if w.shape[0] > 1 else torch.cat([w, w]),
                              lambda: torch.cat([w, w]), lambda: w.reshape(1, *w.shape),
                              lambda: torch.zeros(0), lambda: torch.tensor(1.0)])()
        container[k] = new
    elif kind == "nonfinite":
        k = rng.choice(floats)
        w = container[k].clone()
        w.view(-1)[rng.randrange(w.numel())] = rng.choice([float("nan"), float("inf"), float("-inf")])
        container[k] = w
    elif kind == "delete-key":
        del container[rng.choice(kept)]
    elif kind == "add-key":
        container[rng.choice(["fuzz_extra.weight", "zz.bias", "layerX.0.conv1.weight"])] = torch.ones(3)
    elif kind == "rename-key":
        k = rng.choice(kept)
        container["fuzz." + str(k)] = container.pop(k)
    elif kind == "bare" and top_level:
        first = obj[top_level[0]]
        obj.clear()
        obj.update(first)
    elif kind == "wrap":
        return _replace(obj, [dict(obj)], "conv:wrap-in-list")
    elif kind == "nested":
        container[rng.choice(kept)] = {"weight": torch.ones(2)}
    elif kind == "key-type":
        k = rng.choice(kept)
        container[rng.choice([7, (1, 2), 2.5])] = container.pop(k)
    elif kind == "empty":
        container.clear()
    elif kind == "opt" and "opt" in obj and lay.opt_arch_kwargs:  # only pcrl-3d reads its opt (norm)
        obj["opt"].norm = rng.choice(["batchnorm", 3, "", "GN", ["bn"], 1.5])
    else:
        return None
    return f"conv:{kind}"


def _replace(obj: dict[str, Any], new: Any, name: str) -> str:
    obj.clear()
    obj["__fuzz_replace__"] = new
    return name


# --- CLI tables ------------------------------------------------------------------------------------------
CKPT = "resnet18.pcrl_kermany64"
CLI_PREFIX = {
    "eval": ["eval", CKPT, "--task", "kermany_pneumonia", "--max-train", "8", "--max-test", "8", "--seeds", "1"],
    "gradcam": ["gradcam", CKPT, "--task", "kermany_pneumonia", "-o", "{t}/g.png"],
    "pretrain": ["pretrain", "--method", "simclr", "--arch", "resnet18", "--data", "{t}/imgs", "--out", "{t}/run"],
    "export": ["export", CKPT, "-o", "{t}/x.onnx", "--no-verify", "--input-size", "32"],
    "convert": ["convert", "--from", "pcrlv2-2d", "{t}/garbage.pt"],
    "mirror": ["mirror", CKPT],
    "verify": ["verify", CKPT],
    "report": ["report", "{t}/file"],
}
CLI_OPTIONS = [
    *[("eval", o, k) for o, k in [("--seeds", "pos_int"), ("--epochs", "pos_int"), ("--img-size", "pos_int"),
                                   ("--batch-size", "pos_int"), ("--lr", "pos_float"), ("--weight-decay", "nonneg_float"),
                                   ("--max-train", "pos_int"), ("--max-test", "pos_int"), ("--threads", "pos_int"),
                                   ("--label-fraction", "fraction"), ("--checkpoint-path", "in_file"),
                                   ("--out", "out_file"), ("--task", "choice"), ("--protocol", "choice")]],
    *[("gradcam", o, k) for o, k in [("--n-images", "pos_int"), ("--img-size", "pos_int"), ("--max-train", "pos_int"),
                                      ("--seed", "nonneg_int"), ("--checkpoint-path", "in_file"), ("-o", "out_file")]],
    *[("pretrain", o, k) for o, k in [("--img-size", "pos_int"), ("--cube-size", "pos_int"), ("--spacing", "spacing"),
                                       ("--samples-per-volume", "pos_int"), ("--epochs", "pos_int"),
                                       ("--batch-size", "pos_int"), ("--lr", "pos_float"),
                                       ("--weight-decay", "nonneg_float"), ("--momentum", "unit"),
                                       ("--warmup-steps", "nonneg_int"), ("--seed", "nonneg_int"),
                                       ("--max-steps", "pos_int"), ("--workers", "nonneg_int"),
                                       ("--ckpt-every", "pos_int"), ("--data", "in_path"), ("--out", "out_dir"),
                                       ("--optimizer", "choice"), ("--data-kind", "choice")]],
    *[("export", o, k) for o, k in [("--opset", "opset"), ("--batch-size", "pos_int"), ("--input-size", "pos_int"),
                                     ("--calibration", "in_path"), ("--sample", "in_file"), ("-o", "out_file"),
                                     ("--exporter", "choice")]],
    *[("convert", o, k) for o, k in [("--from", "choice"), ("-o", "out_file")]],
    ("mirror", "--to", "out_dir"),
    ("verify", "--mirror", "in_dir"),
]
BAD_VALUES: dict[str, list[Any]] = {
    "pos_int": ["0", "-1", "-999", "abc", "1.5", "", "nan", "0x10", " ", "1e3"],
    "nonneg_int": ["-1", "abc", "1.5", "", "nan", "-0.5"],
    "pos_float": ["0", "-1", "abc", "nan", "inf", "-inf", "", "1e999"],
    "nonneg_float": ["-0.1", "abc", "nan", "inf", ""],
    "fraction": ["0", "-0.5", "1.5", "abc", "nan", "inf", "2"],
    "unit": ["1", "-0.1", "1.5", "abc", "nan"],
    "spacing": ["abc", "0", "-1", "nan", "inf", "", ["1", "1"], ["1", "1", "1", "1"], ["native", "1", "1"]],
    "in_file": ["{t}/absent", "{t}/dir", "", "{t}/file/x"],
    "in_dir": ["{t}/absent", "{t}/file", ""],
    "in_path": ["{t}/absent", "", "{t}/file/x"],
    "out_file": ["{t}/dir", "{t}/file/x.out", ""],
    "out_dir": ["{t}/file", "{t}/file/sub", ""],
    "choice": ["zzz", "", "KERMANY", "-"],
    "opset": ["0", "1", "6", "24", "999", "-1", "abc"],
}
NAME_COMMANDS = {
    "info": ["info", "NAME"],
    "export": ["export", "NAME", "-o", "{t}/x.onnx", "--no-verify"],
    "eval": ["eval", "NAME", "--task", "kermany_pneumonia"],
    "download": ["download", "NAME"],
    "mirror": ["mirror", "NAME", "--to", "{t}/m"],
    "convert --name": ["convert", "--from", "pcrlv2-2d", "{t}/garbage.pt", "--name", "NAME"],
}
BAD_NAMES = ["zzz", "", "resnet18.", ".tag", "resnet18.nosuchtag", "hf-hub:", "hf-hub:a/b@", "local-dir:{t}/absent",
             "local-dir:", "local-dir:{t}/dir", "local-dir:{t}/file", "../../etc/passwd", "resnet18..x", "a" * 300,
             "resnet18.pcrl_kermany64.extra", "*?[", "hf-hub:org/name@" + "f" * 40, "resnet18.pcrlv2_chest"]
BAD_RESULTS = ["[]", "{", "null", "{}", '{"format": "zoo-eval/1"}', '{"format": "zoo-eval/1", "runs": []}',
               '{"format": "zoo-eval/1", "runs": {"pretrained": {}}}', '{"format": "zoo-eval/2", "runs": {}}',
               '{"format": "zoo-eval/1", "runs": {"pretrained": {"mean": 1}}, "model": 5}', '"text"', "\x00"]


# --- running and classifying ---------------------------------------------------------------------------
ZOO_SRC = str(REPO / "zoo") + os.sep


def _is_zoo_error(err: BaseException) -> bool:
    """A zoo error class, or a builtin ValueError / OSError that zoo's own code raised (with its message)."""
    if any(c.__module__.startswith("zoo.") or c.__module__ == "zoo" for c in type(err).__mro__
           if issubclass(c, Exception) and c is not Exception):
        return True
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(err, (ValueError, OSError)) and tb is not None and tb.tb_frame.f_code.co_filename.startswith(ZOO_SRC)


def run_api(fn: Any) -> tuple[str, str]:
    """Run ``fn`` on a malformed input: ``(outcome, detail)``."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except Exception as err:
        message = str(err).strip()
        detail = f"{type(err).__name__}: {message.splitlines()[0] if message else ''}"
        if _is_zoo_error(err):
            return ("clean" if message else "unclear"), detail
        if isinstance(err, (ValueError, OSError)):
            return "unclear", detail
        return "crash", detail + " | " + traceback.format_exc().strip().splitlines()[-3].strip()
    return "silent", "accepted"


def run_cli(argv: list[str], needles: list[str], allowed: set[int]) -> tuple[str, str]:
    """Run ``zoo argv`` in this process: ``(outcome, detail)``."""
    import warnings

    from zoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rc = main(argv)
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except Exception as exc:
        return "crash", f"{type(exc).__name__}: {str(exc)[:200]} | argv {argv}"
    text = err.getvalue()
    errors = [line for line in text.splitlines() if "error:" in line]
    detail = f"rc {rc}: {(errors or text.splitlines() or [''])[-1][:300]} | argv {argv}"
    if "Traceback" in text:
        return "crash", detail
    if rc == 0:
        return "silent", detail
    if rc not in allowed:
        return "unclear", detail
    if rc == 2 and len(errors) != 1:
        return "unclear", detail
    if rc == 1 and "FAILED" not in out.getvalue() and not errors:
        return "unclear", detail
    if needles and rc == 2 and not any(n in errors[0] for n in needles if n.strip()):
        return "unclear", "error does not name the bad argument: " + detail
    return "clean", detail


@contextlib.contextmanager
def env(**values: str) -> Any:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_main(workdir: Path) -> None:
    """Read cases (JSON lines) from stdin, answer ``START id`` / ``END {result}`` on the protocol fd."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # C-level output of the libraries must not mix with the protocol
    import logging

    logging.basicConfig(level=logging.CRITICAL)
    worker = Worker(workdir)
    proto.write("READY\n")
    for line in sys.stdin:
        case = json.loads(line)
        proto.write(f"START {case['id']}\n")
        result = worker.run(case)
        proto.write("END " + json.dumps(result) + "\n")
    proto.write("DONE\n")


# ==================================================================================================
# parent: batches of cases in worker subprocesses, each case watched with a timeout
# ==================================================================================================
def _worker_env(workdir: Path) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HF_HUB_OFFLINE": "1", "ZOO_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(workdir / "hf"), "ZOO_CACHE_DIR": str(workdir / "zoo-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
    })
    for var in ("ZOO_WEIGHTS_DIR", "HF_HUB_CACHE", "HF_TOKEN"):
        environ.pop(var, None)
    return environ


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_batch(cases: list[dict[str, Any]], workdir: Path, timeout: float, log: Any) -> list[dict[str, Any]]:
    """Run ``cases`` in workers; a hang or a dead worker costs that case only."""
    results: list[dict[str, Any]] = []
    pending = list(cases)
    while pending:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(workdir)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                env=_worker_env(workdir), start_new_session=True)
        lines: queue.Queue[str | None] = queue.Queue()

        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        assert proc.stdin is not None
        for case in pending:
            proc.stdin.write(json.dumps(case) + "\n")
        proc.stdin.close()
        current: dict[str, Any] | None = None
        done_ids: set[int] = set()
        by_id = {c["id"]: c for c in pending}
        startup = 300.0  # the first import of torch on a loaded machine
        while True:
            try:
                line = lines.get(timeout=startup if current is None and not done_ids else timeout)
            except queue.Empty:
                if current is not None:
                    results.append({**current, "mutation": "?", "outcome": "hang",
                                    "detail": f"no answer within {timeout:.0f} s", "seconds": timeout})
                    done_ids.add(current["id"])
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            if line is None:  # the worker exited
                rc = proc.wait()
                if current is not None:
                    how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                    results.append({**current, "mutation": "?", "outcome": "crash",
                                    "detail": f"the worker died ({how})", "seconds": 0.0})
                    done_ids.add(current["id"])
                break
            if line.startswith("START "):
                current = by_id[int(line.split()[1])]
            elif line.startswith("END "):
                result = json.loads(line[4:])
                results.append(result)
                done_ids.add(result["id"])
                current = None
        pending = [c for c in pending if c["id"] not in done_ids]
    return results


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        if r["outcome"] == "skip":
            continue
        row = LOADER_ROW if r["mutation"] in LOADER_CHECKS or r["mutation"].startswith("cfg:") else r["family"]
        table[row][r["outcome"]] += 1
        table["all"][r["outcome"]] += 1
    return {row: {"tried": sum(c.values()), **{o: c.get(o, 0) for o in (*OUTCOMES, "harness-error")}}
            for row, c in table.items()}


def format_table(summary: dict[str, Any]) -> str:
    cols = ("tried", "clean", "crash", "hang", "silent", "unclear")
    head = f"{'family':<34}" + "".join(f"{c:>9}" for c in cols)
    rows = [head, "-" * len(head)]
    order = [*FAMILIES, LOADER_ROW, "all"]
    for row in [r for r in order if r in summary]:
        rows.append(f"{row:<34}" + "".join(f"{summary[row][c]:>9}" for c in cols))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 cases")
    parser.add_argument("--n", type=int, default=1000, help="number of cases (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=150, help="cases per worker process (default 150)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--out", default=str(REPO / "results" / "fuzz_loaders.json"))
    parser.add_argument("--only", help="run only this family")
    parser.add_argument("--worker", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(Path(args.worker))
        return 0
    n = 100 if args.quick else args.n
    cases = make_cases(n, args.seed)
    if args.only:
        cases = [c for c in cases if c["family"] == args.only]
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="zoo-fuzz-"))
    log_path = workdir / "workers.log"
    results: list[dict[str, Any]] = []
    try:
        with open(log_path, "w") as log:
            for start in range(0, len(cases), args.batch):
                batch = cases[start:start + args.batch]
                results += run_batch(batch, workdir, args.timeout, log)
                counts = Counter(r["outcome"] for r in results)
                print(f"[{len(results)}/{len(cases)}] {dict(counts)} {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results.sort(key=lambda r: r["id"])
    summary = summarise(results)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    report = {
        "command": " ".join(["python", "benchmarks/fuzz_loaders.py", *sys.argv[1:]]),
        "seed": args.seed, "cases": len(cases), "batch": args.batch, "timeout_s": args.timeout,
        "wall_time_s": round(time.perf_counter() - t0, 1), "cpu": cpu, "cores": os.cpu_count(),
        "python": platform.python_version(), "summary": summary,
        "seconds_by_family": {f: round(sum(r["seconds"] for r in results if r["family"] == f), 1) for f in FAMILIES},
        "not_clean": [r for r in results if r["outcome"] not in ("clean", "skip")],
        "by_mutation": {m: dict(c) for m, c in sorted(_by_mutation(results).items())},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(format_table(summary))
    print(f"{len(cases)} cases, seed {args.seed}, {report['wall_time_s']} s on {cpu} ({os.cpu_count()} cores); "
          f"details in {args.out}")
    return 0


def _by_mutation(results: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        out[r["mutation"]][r["outcome"]] += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
