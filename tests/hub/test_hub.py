"""The weights hub against a real huggingface_hub client and a loopback Hub (tests/hub_server.py).

Nothing here reaches the internet: the fake Hub listens on 127.0.0.1, HF_ENDPOINT points at it only
inside the ``online`` fixture, and every test has its own HF_HOME and zoo cache (conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, hf_hub_download
from safetensors.torch import load_file

import zoo
from tests.hub_server import FakeHub
from zoo import _io, cli
from zoo import hub as _hub
from zoo.hub import IntegrityError, WeightsNotFoundError, resolve_weights
from zoo.hub import integrity as _integrity
from zoo.meta import registry as _registry
from zoo.meta.registry import list_models, register_pretrained

ROOT = Path(__file__).resolve().parents[2]
ARCH = "unet3d"
TINY = {"width": 4}  # a 3D U-Net encoder of ~30k parameters: a real zoo model, tiny files


def _unregister_pretrained(name: str) -> None:
    arch, tag = name.split(".")
    _registry._archs[arch].tags.pop(tag, None)


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def online(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """Point the real client at the loopback Hub and allow network use (for this test only)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read at import by the client
    return hub


def _tiny_model(seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.create_model(ARCH, **{**TINY, **kwargs}).eval()


def _safetensors_bytes(model: torch.nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture
def weights() -> tuple[bytes, str]:
    data = _safetensors_bytes(_tiny_model(seed=1))
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def register() -> Iterator[Callable[..., str]]:
    """Register temporary ``unet3d.hubtest_N`` entries (valid ones); removed afterwards."""
    list_models()  # load the catalog
    names: list[str] = []

    def _register(data: bytes, **fields: Any) -> str:
        name = f"{ARCH}.hubtest{len(names)}"
        spec = _entry_fields(data, **fields)
        register_pretrained(name, **spec)
        names.append(name)
        return name

    yield _register
    for name in names:
        _unregister_pretrained(name)


def _entry_fields(data: bytes, **fields: Any) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data), "arch_kwargs": dict(TINY),
        "method": "genesis", "pretrain_data": "synthetic test cubes", "modality": "ct",
        "license_weights": "CC-BY-4.0", "license_data": "CC0-1.0", "command": "tests/test_hub.py",
        "metrics": {"note": "random weights"}, **fields,
    }


def _same_weights(model: torch.nn.Module, data: bytes) -> bool:
    from safetensors.torch import load

    ref = load(data)
    state = model.state_dict()
    return state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)


def _flip_byte_keep_size_and_mtime(path: Path) -> None:
    path = path.resolve()
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def _cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


# --- download, cache hit, pinning ----------------------------------------------------------------------
def test_download_then_warm_load_makes_no_request_and_does_not_rehash(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = weights
    commit = online.commit("zoo-test/tiny", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/tiny", hf_hub_revision=commit)

    model = zoo.create_model(name, pretrained=True)
    assert _same_weights(model, data)
    assert online.requests("GET", "model.safetensors") == [("GET", f"/zoo-test/tiny/resolve/{commit}/model.safetensors")]

    online.clear_log()
    hashed: list[Path] = []
    real = _integrity.sha256_file
    monkeypatch.setattr(_integrity, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    model = zoo.create_model(name, pretrained=True)
    assert _same_weights(model, data)
    assert online.requests() == []  # zero requests
    assert hashed == []  # the stamp proves the earlier full hash of this unchanged file


def test_revision_pinning(online: FakeHub, register: Callable[..., str], tmp_path: Path) -> None:
    old, new = _tiny_model(seed=1), _tiny_model(seed=2)
    old_bytes, new_bytes = _safetensors_bytes(old), _safetensors_bytes(new)
    c1 = online.commit("zoo-test/pinned", {"model.safetensors": old_bytes})
    c2 = online.commit("zoo-test/pinned", {"model.safetensors": new_bytes})  # main moves on

    pinned = register(old_bytes, hf_hub_id="zoo-test/pinned", hf_hub_revision=c1)
    assert _same_weights(zoo.create_model(pinned, pretrained=True), old_bytes)
    assert all(f"/resolve/{c1}/" in p for _, p in online.requests(contains="model.safetensors"))

    # a registered hash that is not the pinned commit's file is refused, and nothing loads
    wrong = register(new_bytes, hf_hub_id="zoo-test/pinned", hf_hub_revision=c1)
    with pytest.raises(IntegrityError, match="expected"):
        zoo.create_model(wrong, pretrained=True)

    # hf-hub: names: @commit pins, no revision follows main
    published = []
    for model in (old, new):
        folder = zoo.save_for_hf(model, tmp_path / str(len(published)))
        published.append(online.commit("zoo-test/published", {f: (folder / f).read_bytes() for f in
                                                               ("config.json", "model.safetensors", "README.md")}))
    assert _same_weights(zoo.create_model(f"hf-hub:zoo-test/published@{published[0]}", pretrained=True), old_bytes)
    assert _same_weights(zoo.create_model("hf-hub:zoo-test/published", pretrained=True), new_bytes)
    assert c2 != c1


# --- offline -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "ZOO_OFFLINE"])
def test_offline_with_the_file_cached(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
    switch: str,
) -> None:
    data, _ = weights
    commit = online.commit("zoo-test/off", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/off", hf_hub_revision=commit)
    assert cli.main(["download", name]) == 0
    online.clear_log()
    monkeypatch.setenv(switch, "1")
    assert _same_weights(zoo.create_model(name, pretrained=True), data)
    assert online.requests() == []


def test_offline_without_the_file_names_it_every_source_and_the_fix(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    data, _ = weights
    commit = online.commit("zoo-test/off", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/off", hf_hub_revision=commit, url=f"{online.endpoint}/files/x.safetensors")
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        zoo.create_model(name, pretrained=True)
    msg = str(err.value)
    for part in ("model.safetensors", "mirror $ZOO_WEIGHTS_DIR", str(tmp_path / "mirror" / "zoo-test/off"),
                 "repository weights/", "Hugging Face cache", f"Hugging Face Hub: {online.endpoint}/zoo-test/off/resolve/{commit}",
                 "URL:", "skipped: offline, ZOO_OFFLINE=1", f"`zoo download {name}`"):
        assert part in msg, (part, msg)
    assert online.requests() == []

    # hf-hub: names too
    with pytest.raises(WeightsNotFoundError, match=r"zoo download hf-hub:zoo-test/nothing"):
        zoo.create_model("hf-hub:zoo-test/nothing", pretrained=True)
    assert online.requests() == []


# --- integrity ---------------------------------------------------------------------------------------
def test_byte_flip_in_a_cached_blob_is_caught(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str]
) -> None:
    data, sha = weights
    commit = online.commit("zoo-test/flip", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/flip", hf_hub_revision=commit)
    path = resolve_weights(zoo.get_pretrained_cfg(name))
    _flip_byte_keep_size_and_mtime(path)

    # the Hub client itself accepts the damaged blob (it only compares sizes) ...
    assert Path(hf_hub_download("zoo-test/flip", "model.safetensors", revision=commit,
                                cache_dir=_hub.hf_cache_dir(), endpoint=online.endpoint)).read_bytes() != data
    # ... zoo does not, even though size and mtime are unchanged and the file was stamped before
    with pytest.raises(IntegrityError) as err:
        zoo.create_model(name, pretrained=True)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"expected {sha}" in str(err.value) and f"actual   {actual}" in str(err.value)
    assert f"zoo download --force {name}" in str(err.value)

    assert cli.main(["download", "--force", name]) == 0
    assert _same_weights(zoo.create_model(name, pretrained=True), data)


def test_verify_cache_reports_a_corrupt_copy(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = weights
    commit = online.commit("zoo-test/v", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/v", hf_hub_revision=commit)
    assert cli.main(["verify", name]) == 0  # not downloaded yet is not a failure
    assert "REMOTE" in capsys.readouterr().out
    assert cli.main(["download", name]) == 0
    assert cli.main(["verify", "--cache", name]) == 0
    _flip_byte_keep_size_and_mtime(resolve_weights(zoo.get_pretrained_cfg(name)))
    assert cli.main(["verify", "--cache", name]) == 1
    assert "CORRUPT" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["hub", "url"])
def test_cut_connection_leaves_nothing_loadable_and_a_retry_succeeds(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    data, _ = weights
    if kind == "hub":
        commit = online.commit("zoo-test/cut", {"model.safetensors": data})
        name = register(data, hf_hub_id="zoo-test/cut", hf_hub_revision=commit)
        online.cut_next("zoo-test/cut/model.safetensors", after=len(data) // 2, then_down=True)
    else:
        online.static["cut.safetensors"] = data
        name = register(data, url=f"{online.endpoint}/files/cut.safetensors")
        online.cut_next("cut.safetensors", after=len(data) // 2)
    with pytest.raises(WeightsNotFoundError, match="failed"):
        zoo.create_model(name, pretrained=True)

    # nothing a later load could accept: no blob, no snapshot entry, no final file, no .partial
    leftovers = [p for p in _cache_files(_hub.hf_cache_dir()) if {"blobs", "snapshots"} & set(p.parts)]
    leftovers += [p for p in _cache_files(_hub.cache_dir() / "downloads") if not p.name.endswith(".lock")]
    assert leftovers == []
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError):
        zoo.create_model(name, pretrained=True)

    monkeypatch.delenv("ZOO_OFFLINE")
    online.down = False
    assert _same_weights(zoo.create_model(name, pretrained=True), data)


def test_url_source_refuses_wrong_bytes_and_keeps_nothing(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str]
) -> None:
    data, _ = weights
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 1
    online.static["w.safetensors"] = bytes(bad)
    name = register(data, url=f"{online.endpoint}/files/w.safetensors")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        zoo.create_model(name, pretrained=True)
    assert _cache_files(_hub.cache_dir() / "downloads") == [] or all(
        p.name.endswith(".lock") for p in _cache_files(_hub.cache_dir() / "downloads"))

    online.static["w.safetensors"] = data
    path = resolve_weights(zoo.get_pretrained_cfg(name))
    assert path.read_bytes() == data and not path.with_name(path.name + ".partial").exists()


# --- processes ---------------------------------------------------------------------------------------
_WORKER = """
import json, os, sys, time
from pathlib import Path
from zoo.meta.registry import list_models, register_pretrained
from zoo.hub import download
spec = json.loads(sys.argv[1])
name = spec.pop("_name")
list_models()
register_pretrained(name, **spec)
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.01)
print(download(name))
"""


def _worker_cmd(name: str, spec: dict[str, Any], ready: Path, go: Path) -> list[str]:
    return [sys.executable, "-c", _WORKER, json.dumps({"_name": name, **spec}), str(ready), str(go)]


def _worker_env(hub: FakeHub) -> dict[str, str]:
    return {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(ROOT)}


def _spec_for(kind: str, hub: FakeHub, data: bytes) -> tuple[dict[str, Any], str]:
    """Registry fields of a Hub- or URL-hosted entry, and the path fragment its GETs contain."""
    if kind == "hub":
        commit = hub.commit("zoo-test/many", {"model.safetensors": data})
        return _entry_fields(data, hf_hub_id="zoo-test/many", hf_hub_revision=commit), "zoo-test/many/resolve"
    hub.static["many.safetensors"] = data
    return _entry_fields(data, url=f"{hub.endpoint}/files/many.safetensors"), "/files/many.safetensors"


@pytest.mark.parametrize("kind", ["hub", "url"])
def test_four_processes_download_one_file_at_once(
    online: FakeHub, weights: tuple[bytes, str], tmp_path: Path, kind: str
) -> None:
    data, sha = weights
    spec, fragment = _spec_for(kind, online, data)
    name = f"{ARCH}.hubmany"
    online.chunk_delay = 0.15  # ~1 s per download, so the four overlap
    go = tmp_path / "go"
    procs = [subprocess.Popen(_worker_cmd(name, spec, tmp_path / f"ready{i}", go), env=_worker_env(online),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    deadline = time.time() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # all four start downloading now
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    paths = {Path(out.strip().splitlines()[-1]).resolve() for out, _ in outs}
    assert len(paths) == 1
    final = paths.pop()
    assert hashlib.sha256(final.read_bytes()).hexdigest() == sha
    assert len(online.requests("GET", fragment)) == 1  # the lock made the others wait, then reuse
    files = _cache_files(_hub.hf_cache_dir()) + _cache_files(_hub.cache_dir() / "downloads")
    assert not [p for p in files if p.name.endswith((".incomplete", ".partial", ".tmp"))]
    if kind == "hub":
        assert len(_cache_files(_hub.hf_cache_dir() / "models--zoo-test--many" / "blobs")) == 1


@pytest.mark.parametrize("kind", ["hub", "url"])
def test_killed_download_leaves_nothing_loadable(
    online: FakeHub, weights: tuple[bytes, str], tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = weights
    spec, fragment = _spec_for(kind, online, data)
    name = f"{ARCH}.hubkill"
    online.chunk_delay = 0.5
    go = tmp_path / "go"
    go.touch()
    proc = subprocess.Popen(_worker_cmd(name, spec, tmp_path / "ready", go), env=_worker_env(online), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not online.requests("GET", fragment) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # part of the body is on its way
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL  # killed mid-download, not finished
    online.chunk_delay = 0.0
    partial = [p for p in _cache_files(_hub.hf_cache_dir()) + _cache_files(_hub.cache_dir() / "downloads")
               if p.name.endswith((".incomplete", ".partial"))]
    assert len(partial) == 1 and partial[0].stat().st_size < len(data)  # what the killed process left

    list_models()
    register_pretrained(name, **{k: v for k, v in spec.items()})
    try:
        monkeypatch.setenv("ZOO_OFFLINE", "1")
        with pytest.raises(WeightsNotFoundError):  # whatever the killed process left, no load accepts it
            zoo.create_model(name, pretrained=True)
        monkeypatch.delenv("ZOO_OFFLINE")
        assert _same_weights(zoo.create_model(name, pretrained=True), data)
    finally:
        _unregister_pretrained(name)


# --- publishing --------------------------------------------------------------------------------------
_TIMM_LOAD = """
import sys, torch, timm
from safetensors.torch import save_file
model = timm.create_model(sys.argv[1], pretrained=True).eval()
torch.manual_seed(0)
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    save_file({"y": model(x), "x": x}, sys.argv[2])
print(type(model).__module__, type(model).__name__)
"""


def test_push_then_load_back_with_zoo_and_with_timm(online: FakeHub, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = zoo.create_model("resnet18").eval()
    info = zoo.push_to_hub(model, "zoo-test/pcrl18", metrics={"probe_auc": 0.5})
    assert len(info.oid) == 40
    files = online.repos["zoo-test/pcrl18"].commits[info.oid]
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)

    loaded = zoo.create_model(f"hf-hub:zoo-test/pcrl18@{info.oid}", pretrained=True).eval()
    assert _same_weights(loaded, files["model.safetensors"]) and _same_weights(model, files["model.safetensors"])
    assert loaded.pretrained_cfg.hf_hub_revision == info.oid

    env = {**_worker_env(online), "HF_HOME": str(tmp_path / "timm_hf_home")}
    out = tmp_path / "timm_out.safetensors"
    res = subprocess.run([sys.executable, "-c", _TIMM_LOAD, "hf-hub:zoo-test/pcrl18", str(out)], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "timm.models.resnet ResNet" in res.stdout  # timm's own class, not zoo's
    ref = load_file(str(out))
    with torch.no_grad():
        assert torch.equal(model(ref["x"]), ref["y"])

    card = ModelCard(files["README.md"].decode())
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.library_name == "timm" and "zoo" in card.data.tags
    for section in ("## Model details", "## Intended use and limits", "## Preprocessing", "## Usage",
                    "## Measured results", "## Citation", "probe_auc", "timm.create_model", "torch.hub.load"):
        assert section in card.text, section
    config = json.loads(files["config.json"])
    assert config["architecture"] == "resnet18" and config["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    assert config["zoo"]["pretrained_cfg"]["sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()


def test_cli_push_of_a_registered_3d_checkpoint(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, sha = weights
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "tiny3d.safetensors").write_bytes(data)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "mirror"))
    name = register(data, file="tiny3d.safetensors")
    assert cli.main(["push", name, "--repo-id", "zoo-test/tiny3d"]) == 0
    repo = online.repos["zoo-test/tiny3d"]
    files = repo.commits[repo.refs["main"]]
    assert files["model.safetensors"] == data  # the registered bytes, so the registered sha256 still holds
    config = json.loads(files["config.json"])
    assert config["architecture"] == ARCH and config["arch_kwargs"]["width"] == TINY["width"] and config["zoo"]["name"] == name
    card = ModelCard(files["README.md"].decode())
    assert card.data.license == "cc-by-4.0" and card.data.library_name == "zoo" and "3d" in card.data.tags
    assert "no timm equivalent" in card.text and sha in card.text

    monkeypatch.delenv("ZOO_WEIGHTS_DIR")
    assert _same_weights(zoo.create_model("hf-hub:zoo-test/tiny3d", pretrained=True), data)
    # a pull request on a branch
    info = zoo.push_to_hub(_tiny_model(seed=9), "zoo-test/tiny3d", create_pr=True)
    assert info.pr_url and repo.refs["main"] != info.oid


def test_local_dir_round_trip_and_timm(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(4)
    model = zoo.create_model("resnet18", num_classes=3).eval()
    folder = zoo.save_for_hf(model, tmp_path / "repo")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = zoo.create_model(f"local-dir:{folder}", pretrained=True).eval()(x)
        theirs = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()(x)
        assert torch.equal(ours, model(x)) and torch.equal(theirs, model(x))
        hub_model = torch.hub.load(str(ROOT), "create_model", f"local-dir:{folder}", source="local", pretrained=True)
        assert torch.equal(hub_model.eval()(x), model(x))
    _flip_byte_keep_size_and_mtime(folder / "model.safetensors")
    with pytest.raises(IntegrityError):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)


def test_timm_equivalence_is_checked_not_assumed() -> None:
    from zoo.export.huggingface import _timm_architecture

    with torch.device("meta"):
        bit = zoo.create_model("resnetv2_50x1_bit")
        r50 = zoo.create_model("resnet50")
    shapes = {k: tuple(v.shape) for k, v in bit.state_dict().items()}
    assert _timm_architecture(bit.pretrained_cfg, shapes)[:2] == ("resnetv2_50x1_bit", 2048)
    shapes50 = {k: tuple(v.shape) for k, v in r50.state_dict().items()}
    assert _timm_architecture(r50.pretrained_cfg, shapes50)[:2] == ("resnet50", 2048)
    shapes50["extra.weight"] = (1,)  # e.g. a decoder left in the file: timm could not load it strictly
    assert _timm_architecture(r50.pretrained_cfg, shapes50) is None


def test_hub_name_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="org/name"):
        zoo.create_model("hf-hub:just-a-name")
    with pytest.raises(WeightsNotFoundError, match="save_for_hf"):
        zoo.create_model(f"local-dir:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "pretrained_cfg": {}}))
    with pytest.raises(ValueError, match="timm.create_model"):
        zoo.create_model(f"local-dir:{tmp_path}")


# --- air-gapped mirror -------------------------------------------------------------------------------
def test_mirror_then_load_with_the_network_off(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    data, sha = weights
    commit = online.commit("zoo-test/air", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/air", hf_hub_revision=commit)
    other = _tiny_model(seed=5)
    folder = zoo.save_for_hf(other, tmp_path / "pub")
    online.commit("zoo-test/air-pub", {f: (folder / f).read_bytes() for f in ("config.json", "model.safetensors",
                                                                           "README.md")})
    mirror = tmp_path / "mirror"
    assert cli.main(["mirror", name, "hf-hub:zoo-test/air-pub", "--to", str(mirror)]) == 0

    manifest = json.loads((mirror / "manifest.json").read_text())
    assert manifest["files"]["zoo-test/air/model.safetensors"]["sha256"] == sha
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256((mirror / rel).read_bytes()).hexdigest() == meta["sha256"]
        assert f"{meta['sha256']}  {rel}" in (mirror / "SHA256SUMS").read_text()
    assert {"zoo-test/air-pub/config.json", "zoo-test/air-pub/model.safetensors",
            "zoo-test/air-pub/README.md"} <= set(manifest["files"])

    # the air-gapped side: no server, offline, empty caches, only the mirror
    online.stop()
    online.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "fresh_hf"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "fresh_zoo"))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(mirror))
    assert _same_weights(zoo.create_model(name, pretrained=True), data)
    assert _same_weights(zoo.create_model("hf-hub:zoo-test/air-pub", pretrained=True), _safetensors_bytes(other))
    assert online.requests() == []
    assert cli.main(["verify", "--mirror", str(mirror)]) == 0

    _flip_byte_keep_size_and_mtime(mirror / "zoo-test/air/model.safetensors")
    assert cli.main(["verify", "--mirror", str(mirror)]) == 1
    assert "CORRUPT" in capsys.readouterr().out
    with pytest.raises(IntegrityError, match="zoo mirror"):
        zoo.create_model(name, pretrained=True)


def test_stamp_is_invalidated_by_any_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 1000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    _hub.verify_file(path, sha)
    _flip_byte_keep_size_and_mtime(path)
    with pytest.raises(IntegrityError):
        _hub.verify_file(path, sha)


def _hash_with_a_writer(path: Path, write: Callable[[Path], None]) -> Callable[[Any], str]:
    """A sha256 reader that lets ``write`` rewrite the file after the first 64 KiB chunk is hashed, then
    finishes: the race of a concurrent writer, made deterministic."""
    hashed_some, written = threading.Event(), threading.Event()

    def writer() -> None:
        assert hashed_some.wait(10)
        write(path)
        written.set()

    def slow_sha256(p: Any) -> str:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 16):
                digest.update(chunk)
                if not hashed_some.is_set():
                    hashed_some.set()
                    assert written.wait(10)  # the other thread writes while this hash runs
        return digest.hexdigest()

    threading.Thread(target=writer, daemon=True).start()
    return slow_sha256


def _flip_first_byte_keep_size_and_mtime(path: Path) -> None:
    st = path.stat()
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))  # in the part already hashed: the hash still matches
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_stamp_race_a_write_during_the_hash_is_never_stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    real = _integrity.sha256_file
    monkeypatch.setattr(_integrity, "sha256_file", _hash_with_a_writer(path, _flip_first_byte_keep_size_and_mtime))
    with pytest.raises(_hub.FileChangedError, match="changed while it was being hashed"):
        _hub.verify_file(path, sha)  # the bytes hashed were the registered ones; the file is not any more
    monkeypatch.setattr(_integrity, "sha256_file", real)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):  # no stamp vouches for the new bytes
        _hub.verify_file(path, sha)


def test_zoo_always_rehash_hashes_every_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 4096)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    calls: list[Any] = []
    real = _integrity.sha256_file
    monkeypatch.setattr(_integrity, "sha256_file", lambda p: calls.append(p) or real(p))
    _hub.verify_file(path, sha)
    _hub.verify_file(path, sha)
    assert len(calls) == 1  # stamped
    monkeypatch.setenv("ZOO_ALWAYS_REHASH", "1")
    _hub.verify_file(path, sha)
    _hub.verify_file(path, sha)
    assert len(calls) == 3  # e.g. for files that may be written through a shared mmap (no mtime/ctime change)


_TIMM_LOAD_MANY = """
import sys, torch, timm
from safetensors.torch import save_file
torch.set_num_threads(1)  # as the test process (conftest): the same kernels, so equality is bitwise
out = {}
for i, name in enumerate(sys.argv[2:]):
    model = timm.create_model(name, pretrained=True).eval()
    assert type(model).__module__.startswith("timm.models."), type(model)
    torch.manual_seed(i)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out[f"x{i}"], out[f"y{i}"] = x, model(x)
save_file(out, sys.argv[1])
"""


def _timm_outputs(hub: FakeHub, tmp_path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    env = {**_worker_env(hub), "HF_HOME": str(tmp_path / "timm_hf_home")}
    out = tmp_path / "timm_out.safetensors"
    res = subprocess.run([sys.executable, "-c", _TIMM_LOAD_MANY, str(out), *names], env=env,
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return load_file(str(out))


@pytest.mark.slow
def test_timm_loads_every_shipped_2d_checkpoint_from_the_hub_with_identical_outputs(
    online: FakeHub, tmp_path: Path
) -> None:
    # every shipped 2D checkpoint: backbone files (copied byte for byte) and the PCRL file that holds the
    # whole U-Net (its encoder published); the upstream ones are not in the repository (and never pushed)
    shipped = [n for n in list_models(pretrained=True) if zoo.get_pretrained_cfg(n).spatial_dims == 2
               and zoo.get_pretrained_cfg(n).file and (_hub.repo_weights_dir() / zoo.get_pretrained_cfg(n).file).is_file()
               and not zoo.get_pretrained_cfg(n).is_official and not n.startswith("unet_")]
    names = ["resnet18.mocov2_kermany64", "resnet18.pcrl_kermany64"]
    names += [n for n in shipped if n not in names]
    assert len(names) >= 7, names
    repos = [f"zoo-test/{n.replace('.', '-')}" for n in names]
    registered = {n: zoo.get_pretrained_cfg(n) for n in names}
    for name, repo in zip(names, repos, strict=True):
        zoo.push_to_hub(name, repo)
    ref = _timm_outputs(online, tmp_path, [f"hf-hub:{r}" for r in repos])
    for i, (name, repo) in enumerate(zip(names, repos, strict=True)):
        files = online.repos[repo].commits[online.repos[repo].refs["main"]]
        config = json.loads(files["config.json"])
        assert config["architecture"] == "resnet18", name
        assert ("extracted_from" in config["zoo"]) == (name == "resnet18.pcrl_kermany64"), name
        published = hashlib.sha256(files["model.safetensors"]).hexdigest()
        assert config["zoo"]["pretrained_cfg"]["sha256"] == published
        ours = zoo.create_model(name, pretrained=True).eval()
        from_hub = zoo.create_model(f"hf-hub:{repo}", pretrained=True).eval()
        assert from_hub.pretrained_source.sha256 == published and from_hub.pretrained_source.verified
        with torch.no_grad():
            assert torch.equal(ours(ref[f"x{i}"]), ref[f"y{i}"]), name  # timm == zoo, bit for bit
            assert torch.equal(from_hub(ref[f"x{i}"]), ref[f"y{i}"]), name
        # the registered file itself never changes
        assert ours.pretrained_source.sha256 == registered[name].sha256 == _io.sha256_file(ours.pretrained_source.path)
        card = files["README.md"].decode()
        assert "no timm equivalent" not in card and "timm.create_model" in card
    # the encoder file is not the registered file: its own sha256, and the registered one it came from
    pcrl = json.loads(online.repos[repos[1]].commits[online.repos[repos[1]].refs["main"]]["config.json"])
    assert pcrl["zoo"]["extracted_from"]["sha256"] == registered[names[1]].sha256
    assert pcrl["zoo"]["pretrained_cfg"]["sha256"] != registered[names[1]].sha256
    assert registered[names[1]].sha256 in online.repos[repos[1]].commits[online.repos[repos[1]].refs["main"]]["README.md"].decode()
    mocov2 = online.repos[repos[0]].commits[online.repos[repos[0]].refs["main"]]
    assert hashlib.sha256(mocov2["model.safetensors"]).hexdigest() == registered[names[0]].sha256  # byte for byte


def test_pcrl_encoder_name_publishes_the_encoder_that_timm_loads(tmp_path: Path) -> None:
    import timm

    name = "resnet18.pcrl_kermany64"  # its registered file is the whole PCRL U-Net
    cfg = zoo.get_pretrained_cfg(name)
    folder = zoo.save_for_hf(name, tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["zoo"]["extracted_from"]["sha256"] == cfg.sha256 != config["zoo"]["pretrained_cfg"]["sha256"]
    assert config["zoo"]["pretrained_cfg"]["sha256"] == _io.sha256_file(folder / "model.safetensors")
    ours = zoo.create_model(name, pretrained=True).eval()
    assert _io.sha256_file(ours.pretrained_source.path) == cfg.sha256  # the registered bytes never change
    theirs = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    card = (folder / "README.md").read_text()
    assert "no timm equivalent" not in card and cfg.sha256 in card


@pytest.mark.slow
def test_timm_loads_a_bit_resnetv2_from_the_hub_with_identical_outputs(online: FakeHub, tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = zoo.create_model("resnetv2_50x1_bit").eval()  # the BiT family (its shipped weights are upstream's)
    zoo.push_to_hub(model, "zoo-test/bit")
    ref = _timm_outputs(online, tmp_path, ["hf-hub:zoo-test/bit"])
    config = json.loads(online.repos["zoo-test/bit"].commits[online.repos["zoo-test/bit"].refs["main"]]["config.json"])
    assert config["architecture"] == "resnetv2_50x1_bit"
    from_hub = zoo.create_model("hf-hub:zoo-test/bit", pretrained=True).eval()
    with torch.no_grad():
        # timm (eps 1e-8) and zoo (eps 1e-10) re-standardise the stored, already standardised convs: the same
        # up to float32 rounding (bitwise on some runs, not on all: the eps and the kernels differ)
        torch.testing.assert_close(from_hub(ref["x0"]), ref["y0"], rtol=1e-5, atol=1e-5)
        # the stored standardised convs change the model's own outputs by float32 rounding only
        torch.testing.assert_close(model(ref["x0"]), ref["y0"], rtol=1e-4, atol=1e-4)


def test_save_for_hf_refuses_what_it_cannot_describe(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="zoo.create_model"):
        zoo.save_for_hf(torch.nn.Linear(2, 2), tmp_path)
    bare = next(a for a in zoo.list_models() if not zoo.list_pretrained(a))
    with pytest.raises(ValueError, match="no registered weights"):
        zoo.save_for_hf(bare, tmp_path)
    with pytest.raises(ValueError, match="features_only"):
        zoo.save_for_hf(zoo.create_model(ARCH, features_only=True, **TINY), tmp_path)


def test_push_refuses_upstream_weights(online: FakeHub) -> None:
    official = next(n for n in zoo.list_pretrained() if zoo.get_pretrained_cfg(n).is_official)
    with pytest.raises(ValueError, match="does not redistribute"):
        zoo.push_to_hub(official, "zoo-test/not-allowed")
    assert online.requests() == []


def test_hf_hub_cache_overrides_hf_home(
    online: FakeHub, weights: tuple[bytes, str], register: Callable[..., str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, _ = weights
    commit = online.commit("zoo-test/where", {"model.safetensors": data})
    name = register(data, hf_hub_id="zoo-test/where", hf_hub_revision=commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "custom_cache"))
    path = _hub.download(name)
    assert path.is_relative_to(tmp_path / "custom_cache") and path.read_bytes() == data
    assert not (Path(os.environ["HF_HOME"]) / "hub" / "models--zoo-test--where").exists()
