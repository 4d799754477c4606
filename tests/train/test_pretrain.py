"""The pretraining engine: shared contrastive pieces, SimCLR / MoCo v2, the loop, resume, export, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import zoo
from tests.conftest import require_data
from zoo import PretrainedCfg
from zoo._io import sha256_file
from zoo.cli import main as cli_main
from zoo.data.datasets import DatasetError, ImageFolderDataset
from zoo.data.paths import data_root
from zoo.methods import METHODS, get_method
from zoo.methods._common import (
    FeatureQueue,
    info_nce,
    momentum_copy,
    momentum_update_,
    nt_xent,
    shuffle_bn_forward,
)
from zoo.methods.base import SSLMethod
from zoo.report import load_pretrain_log
from zoo.train.pretrain import PretrainConfig, PretrainError, parse_hparams, pretrain

REPO = Path(__file__).resolve().parents[2]
METHODS_2D = [("simclr", "resnet18", {}), ("mocov2", "resnet18", {"queue_size": 8, "momentum": 0.99})]


@pytest.fixture(scope="module")
def xrays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real Kermany training X-rays (8 per class), as symlinks."""
    src = require_data("cxr", "kermany", "train")
    dst = tmp_path_factory.mktemp("xrays")
    for cls in ("NORMAL", "PNEUMONIA"):
        (dst / cls).mkdir()
        for f in sorted((src / cls).glob("*.jpeg"))[:8]:
            (dst / cls / f.name).symlink_to(f)
    return dst


def run(tmp_path: Path, data: Path, name: str = "run", **kw: Any) -> Any:
    args: dict[str, Any] = dict(method="simclr", arch="resnet18", data=str(data), out=str(tmp_path / name),
                                img_size=32, batch_size=4, epochs=1, progress=False, ckpt_every=0)
    args.update(kw)
    return pretrain(PretrainConfig(**args))


def log_losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


# --- shared pieces -------------------------------------------------------------------------------
def test_nt_xent_and_info_nce_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / 0.5
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(5) + 5, torch.arange(5)])
    assert torch.allclose(nt_xent(z1, z2, 0.5), F.cross_entropy(sim, target))
    q, k, neg = (F.normalize(torch.randn(n, 8, generator=g), dim=1) for n in (4, 4, 6))
    manual = -torch.log_softmax(torch.cat([(q * k).sum(1, keepdim=True), q @ neg.t()], 1) / 0.2, 1)[:, 0].mean()
    assert torch.allclose(info_nce(q, k, neg, 0.2), manual)


def test_queue_momentum_and_shuffle_bn() -> None:
    queue = FeatureQueue(dim=4, size=6)
    queue.enqueue(torch.ones(4, 4))
    queue.enqueue(2 * torch.ones(4, 4))  # wraps around
    assert queue.queue[:, 0].tolist() == [2, 2, 1, 1, 2, 2] and int(queue.ptr) == 2
    online = torch.nn.Linear(3, 3)
    target = momentum_copy(online)
    assert not any(p.requires_grad for p in target.parameters())
    before = target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    momentum_update_(online, target, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)
    bn = torch.nn.BatchNorm1d(3)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    out = shuffle_bn_forward(bn, x, torch.Generator().manual_seed(1), splits=2)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    ref = torch.empty_like(x)
    for chunk in perm.chunk(2):  # each half of the shuffled batch is normalised with its own statistics
        ref[chunk] = F.batch_norm(x[chunk], None, None, training=True)
    assert torch.allclose(out, ref, atol=1e-5) and not torch.allclose(out, F.batch_norm(x, None, None, training=True))


# --- methods -------------------------------------------------------------------------------------
def test_mocov2_key_encoder_takes_no_gradient_and_follows_the_ema(xrays: Path) -> None:
    ds = ImageFolderDataset(xrays, img_size=32)
    x = torch.stack([ds[i][0] for i in range(4)])
    torch.manual_seed(0)
    m = get_method("mocov2")("resnet18", queue_size=8, momentum=0.5)
    out = m(x, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(p.grad is None for p in m.backbone_k.parameters())
    assert m.backbone.conv1.weight.grad is not None
    k_before = m.backbone_k.conv1.weight.clone()
    with torch.no_grad():
        m.backbone.conv1.weight.add_(1.0)
    m.on_after_step(0, 1)
    assert torch.allclose(m.backbone_k.conv1.weight, 0.5 * k_before + 0.5 * m.backbone.conv1.weight)
    assert int(m.queue.ptr) == 4  # the batch's keys entered the queue


# --- the loop ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,arch,kw", METHODS_2D)
def test_pretrain_runs_resumes_exactly_and_exports(
    name: str, arch: str, kw: dict[str, Any], xrays: Path, tmp_path: Path
) -> None:
    full = run(tmp_path, xrays, "full", method=name, arch=arch, hparams=kw)
    assert full.steps == full.total_steps == 4  # 16 images / batch 4
    log = [json.loads(line) for line in (tmp_path / "full/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["images_per_s"] > 0 and r["lr"] > 0 for r in log)
    assert log[1]["lr"] < log[0]["lr"]  # cosine schedule
    machine = json.loads((tmp_path / "full/run.json").read_text())["machine"]  # floats depend on the CPU's kernels
    assert machine["cpu"] and machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    # interrupted after 2 steps, then resumed: the same losses and the same weights, bit for bit
    part = run(tmp_path, xrays, "part", method=name, arch=arch, hparams=kw, max_steps=2)
    assert part.steps == 2 and (tmp_path / "part/ckpt/latest.json").is_file()
    resumed = run(tmp_path, xrays, "part", method=name, arch=arch, hparams=kw, resume=True)
    assert resumed.steps == 4
    assert log_losses(tmp_path / "part") == log_losses(tmp_path / "full")
    assert (tmp_path / "part" / f"{arch}.safetensors").read_bytes() == full.weights.read_bytes()

    # the export strict-loads and its registry entry describes it
    model = zoo.create_model(arch, checkpoint_path=full.weights)
    sd = load_file(str(full.weights))
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    entry = PretrainedCfg.from_dict(json.loads(full.pretrained_cfg.read_text()))
    assert entry.method == name and entry.input_size == (3, 32, 32) and entry.file == f"{arch}.safetensors"
    assert entry.sha256 == sha256_file(full.weights) and entry.file_size == full.weights.stat().st_size
    assert "--seed 0" in entry.command and "seed 0" in entry.notes and "wall time" in entry.notes
    assert entry.metrics["pretrain_steps"] == 4


def test_export_describes_the_run_not_a_registered_entry(xrays: Path, tmp_path: Path) -> None:
    # resnet18 has zoo reference weights (its default tag) and official PCRLv2 entries
    default = zoo.get_pretrained_cfg("resnet18")
    assert default.verified and default.metrics and zoo.get_pretrained_cfg("resnet18.pcrlv2_chest").is_official
    out = run(tmp_path, xrays, "v2", arch="resnet18", max_steps=1)
    entry = PretrainedCfg.from_dict(json.loads(out.pretrained_cfg.read_text()))
    assert not entry.is_official and entry.origin == "" and entry.hf_hub_id is None and entry.url is None
    assert entry.method == "simclr" and entry.file == "resnet18.safetensors"
    assert entry.sha256 == sha256_file(out.weights) != default.sha256
    assert all(k.startswith("pretrain_") for k in entry.metrics)
    assert entry.command != default.command and entry.pretrain_data != default.pretrain_data


def test_ship_weights_script(xrays: Path, tmp_path: Path) -> None:
    """scripts/ship_weights.py: the same bytes for the same run, its record, and re-runs told apart."""
    a, b = run(tmp_path, xrays, "a"), run(tmp_path, xrays, "b", seed=1)
    weights, records = tmp_path / "weights", tmp_path / "records"
    weights.mkdir()

    def ship(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO / "scripts" / "ship_weights.py"), str(out), "resnet18.simclr_t",
                               "--weights-dir", str(weights), "--records-dir", str(records), *flags],
                              capture_output=True, text=True)

    assert "ship the weights first" in ship(a.out, "--record-only").stderr
    shipped = weights / "resnet18.simclr_t.safetensors"  # a new name: weights/NAME.safetensors
    first = (ship(a.out), shipped.read_bytes())
    assert first[0].returncode == 0 and json.loads(first[0].stdout)["same_run_as_shipped"]
    assert ship(a.out).returncode == 0 and shipped.read_bytes() == first[1]  # not safetensors' hash-map order
    half = load_file(str(shipped))
    assert all(torch.equal(v.half() if v.is_floating_point() else v, half[k]) for k, v in load_file(str(a.weights)).items())
    record = json.loads((records / "resnet18.simclr_t.json").read_text())
    assert record["source_sha256"] == sha256_file(a.weights) and record["config"]["seed"] == 0
    assert load_pretrain_log(records / "resnet18.simclr_t.log.jsonl.gz") == load_pretrain_log(a.out / "log.jsonl")
    # a re-run that did not reproduce the file is recorded as such, and the shipped file is left alone
    other = ship(b.out, "--record-only")
    assert other.returncode == 0 and not json.loads(other.stdout)["same_run_as_shipped"]
    assert shipped.read_bytes() == first[1]
    assert (records / "resnet18.simclr_t.loss.png").read_bytes()[:4] == b"\x89PNG"
    run_json = json.loads((b.out / "run.json").read_text())
    (b.out / "run.json").write_text(json.dumps({**run_json, "finished": False}))
    assert "not finished" in ship(b.out).stderr


def test_same_seed_same_losses_other_seed_other_losses(xrays: Path, tmp_path: Path) -> None:
    a = run(tmp_path, xrays, "a", max_steps=2)
    b = run(tmp_path, xrays, "b", max_steps=2)
    c = run(tmp_path, xrays, "c", max_steps=2, seed=1)
    assert a.losses == b.losses and a.losses != c.losses
    assert "STOPPED EARLY at step 2 of 4" in json.loads((tmp_path / "a/pretrained_cfg.json").read_text())["notes"]


def test_init_from_and_bn_only(xrays: Path, tmp_path: Path, register_weights: Any) -> None:
    base = run(tmp_path, xrays, "base", max_steps=1)
    src = load_file(str(base.weights))
    # HPT: continue from a registered checkpoint, training only the backbone's BN layers
    register_weights("resnet18.hpttest", src)
    cont = run(tmp_path, xrays, "cont", init_from="resnet18.hpttest", bn_only=True, max_steps=2, lr=0.5, fp16=True)
    out = load_file(str(cont.weights))
    assert out["conv1.weight"].dtype == torch.float16
    assert torch.equal(out["conv1.weight"], src["conv1.weight"].half())  # frozen
    assert torch.equal(out["layer4.1.conv2.weight"], src["layer4.1.conv2.weight"].half())
    assert not torch.equal(out["bn1.weight"], src["bn1.weight"].half())  # trained
    zoo.create_model("resnet18", checkpoint_path=cont.weights)  # fp16 file strict-loads
    # from a run directory (MoCo v2: the momentum encoder starts from the same weights)
    moco = run(tmp_path, xrays, "moco", method="mocov2", arch="resnet18", init_from=str(tmp_path / "base"),
               hparams={"queue_size": 8}, max_steps=1, lr=0.0, weight_decay=0.0)
    assert torch.equal(load_file(str(moco.weights))["conv1.weight"], src["conv1.weight"])
    with pytest.raises(PretrainError, match="--init-from"):
        run(tmp_path, xrays, "bad", init_from="resnet50")  # no weights registered
    with pytest.raises(PretrainError, match="needs --init-from"):
        run(tmp_path, xrays, "bad2", bn_only=True)


def test_pretrain_errors(xrays: Path, tmp_path: Path) -> None:
    run(tmp_path, xrays, "r", max_steps=1)
    with pytest.raises(PretrainError, match="already holds a run"):
        run(tmp_path, xrays, "r", max_steps=1)
    with pytest.raises(PretrainError, match="batch_size: checkpoint 4 vs now 8"):
        run(tmp_path, xrays, "r", batch_size=8, resume=True)
    with pytest.raises(PretrainError, match="no checkpoint"):
        run(tmp_path, xrays, "fresh", resume=True)
    with pytest.raises(PretrainError, match="no full batch"):
        run(tmp_path, xrays, "big", batch_size=64)
    with pytest.raises(PretrainError, match="takes 2D data but unet3d is a 3D"):
        run(tmp_path, xrays, "x", arch="unet3d")
    with pytest.raises(PretrainError, match=r"unknown simclr hyper-parameter\(s\) \['tau'\]; known: proj_dim"):
        run(tmp_path, xrays, "x", hparams={"tau": 0.1})
    with pytest.raises(PretrainError, match="temperature=.0.1.: simclr expects float"):
        run(tmp_path, xrays, "x", hparams={"temperature": "0.1"})
    with pytest.raises(PretrainError, match="takes no --data-option"):
        run(tmp_path, xrays, "x", data_options={"threshold": 0.5})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        run(tmp_path, tmp_path / "empty", "y")
    assert parse_hparams(["queue_size=16", "aug=pcrl", "t=0.5"]) == {"queue_size": 16, "aug": "pcrl", "t": 0.5}
    with pytest.raises(PretrainError, match="key=value"):
        parse_hparams(["oops"])


class Toy3D(SSLMethod):
    """A stand-in 3D objective for the loop's 3D path: predict the rot90 applied to each cube."""

    name: ClassVar[str] = "toy3d"
    spatial_dims: ClassVar[tuple[int, ...]] = (3,)

    def __init__(self, arch: str, **hparams: Any) -> None:
        super().__init__(arch, **hparams)
        self.backbone = zoo.create_model(arch, num_classes=0)
        self.head = torch.nn.Linear(self.backbone.num_features, 4)

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        from zoo.data.augment import random_rot90

        x, k = random_rot90(batch, generator, dims=(2, 3))
        ce = F.cross_entropy(self.head(self.backbone(x)), k)
        return {"loss": ce, "ce": ce.detach()}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.backbone.state_dict())


def test_pretrain_3d_on_real_ct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol = require_data("ct", "volumes", "totalseg_example_ct_crop.nii.gz")
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / vol.name).symlink_to(vol)
    monkeypatch.setitem(METHODS, "toy3d", f"{__name__}:Toy3D")
    res = pretrain(PretrainConfig(method="toy3d", arch="unet3d", data=str(tmp_path / "ct"),
                                  out=str(tmp_path / "run3d"), cube_size=(16, 16, 16), spacing=(3.0, 3.0, 3.0),
                                  samples_per_volume=4, batch_size=2, epochs=1, progress=False, lr=0.01))
    assert res.steps == 2
    log = [json.loads(line) for line in (tmp_path / "run3d/log.jsonl").read_text().splitlines()]
    assert set(log[0]) >= {"loss", "ce", "images_per_s"}
    entry = PretrainedCfg.from_dict(json.loads(res.pretrained_cfg.read_text()))
    assert entry.input_size == (1, 16, 16, 16) and entry.voxel_spacing == (3.0, 3.0, 3.0)
    assert entry.intensity.kind == "hu_window" and entry.modality == "ct" and entry.spatial_dims == 3
    zoo.create_model("unet3d", checkpoint_path=res.weights)
    # two data-loader worker processes cut the same cubes (positions depend on seed, epoch and index only)
    again = pretrain(PretrainConfig(method="toy3d", arch="unet3d", data=str(tmp_path / "ct"),
                                    out=str(tmp_path / "run3d_w2"), cube_size=(16, 16, 16), spacing=(3.0, 3.0, 3.0),
                                    samples_per_volume=4, batch_size=2, epochs=1, progress=False, lr=0.01, workers=2))
    assert again.losses == res.losses


def test_cli_pretrain(xrays: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["pretrain", "--method", "simclr", "--arch", "resnet18", "--data", str(xrays), "--img-size", "32",
            "--batch-size", "8", "--max-steps", "1", "--out", str(tmp_path / "cli"), "--no-progress",
            "--hparam", "temperature=0.2", "--modality", "cxr"]
    assert cli_main(argv) == 0
    assert "1/2 steps" in capsys.readouterr().out
    entry = json.loads((tmp_path / "cli/pretrained_cfg.json").read_text())
    assert entry["command"].startswith("zoo ") and "--hparam temperature=0.2" in entry["command"]
    assert entry["modality"] == "cxr"
    # --out RUN --resume alone continues the run with its recorded arguments; arguments given again must agree
    assert cli_main(["pretrain", "--out", str(tmp_path / "cli"), "--resume", "--batch-size", "4"]) == 2
    assert "batch_size: checkpoint 8 vs now 4" in capsys.readouterr().err
    assert cli_main(["pretrain", "--out", str(tmp_path / "cli"), "--resume", "--no-progress"]) == 0
    assert "2/2 steps" in capsys.readouterr().out
    assert len(log_losses(tmp_path / "cli")) == 2
    assert cli_main(["pretrain", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "run.json does not exist" in capsys.readouterr().err
    assert cli_main(["pretrain", "--out", str(tmp_path / "c3")]) == 2
    assert "needs --method, --arch, --data" in capsys.readouterr().err
    bad = ["pretrain", "--method", "nope", "--arch", "resnet18", "--data", str(xrays), "--out", str(tmp_path / "c2")]
    assert cli_main(bad) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_torchrun_ddp_two_processes(xrays: Path, tmp_path: Path) -> None:
    """Real torchrun, 2 CPU processes (gloo): sharded data, synchronised weights, one export."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZOO_DATA_DIR": str(data_root()), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "zoo.cli", "pretrain", "--method", "mocov2", "--arch", "resnet18", "--data", str(xrays),
           "--img-size", "32", "--batch-size", "2", "--max-steps", "2", "--out", str(tmp_path / "ddp"),
           "--no-progress", "--hparam", "queue_size=8"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp/run.json").read_text())
    assert info["world_size"] == 2 and info["steps_per_epoch"] == 4  # 16 images / (2 ranks x batch 2)
    sums = info["summary"]["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # DDP kept both ranks' weights identical
    assert info["summary"]["steps"] == 2
    zoo.create_model("resnet18", checkpoint_path=tmp_path / "ddp/resnet18.safetensors")
    assert json.loads((tmp_path / "ddp/pretrained_cfg.json").read_text())["command"].startswith("torchrun")


def test_recipes_are_data_read_everywhere() -> None:
    """Every recipe of scripts/pretrain_reference.sh is a TOML file with current network names and valid
    hyper-parameters; the catalog's recorded command is built from it."""
    from zoo.meta.recipes import RecipeError, list_recipes, load_recipe, recipe_args, recipe_command
    from zoo.meta.registry import list_aliases, list_models
    from zoo.methods import get_method

    names = list_recipes()
    assert names[:2] == ["simclr_kermany", "mocov2_kermany"] and len(names) == 12
    for name in names:
        recipe = load_recipe(name)
        run_ = recipe["run"]
        assert run_["arch"] in list_models() and run_["arch"] not in list_aliases(), name
        get_method(run_["method"]).parse_hparams(recipe["hparams"])  # typed, known keys
        assert run_["data"].startswith("$DATA/") and run_["seed"] == 0
        command = recipe_command(name)
        assert f"--method {run_['method']} --arch {run_['arch']} --data $DATA/" in command
    assert "--data /d/ct/volumes" in " ".join(recipe_args("genesis_ct", "/d"))
    assert recipe_args("micle_fundus", "/d")[-4:] == ["--hparam", "temperature=0.2", "--hparam", "aug=mocov2"]
    for cfg_name, recipe in (("resnet18.simclr_kermany64", "simclr_kermany"), ("unet3d_small.genesis_ct32", "genesis_ct")):
        command = zoo.get_pretrained_cfg(cfg_name).command
        assert recipe_command(recipe, "../shared/data") in command and f"pretrain_reference.sh {recipe} " in command
    with pytest.raises(RecipeError, match="unknown recipe 'nope'; known: genesis_ct, micle_fundus"):
        load_recipe("nope")
    with pytest.raises(RecipeError, match="base of recipes"):
        load_recipe("_kermany64")
    script = (REPO / "scripts/pretrain_reference.sh").read_text()
    assert "--recipe" in script and "--hparam" not in script and "--arch" not in script  # no second copy


def test_cli_recipe_with_overrides(xrays: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    argv = ["pretrain", "--recipe", "simclr_kermany", "--data", str(xrays), "--img-size", "32", "--batch-size", "4",
            "--epochs", "1", "--max-steps", "1", "--hparam", "temperature=0.3", "--out", str(out)]
    assert cli_main(argv) == 0
    info = json.loads((out / "run.json").read_text())["config"]
    assert info["method"] == "simclr" and info["arch"] == "resnet18" and info["img_size"] == 32
    assert info["hparams"] == {"aug": "cxr", "temperature": 0.3} and info["license_data"] == "CC-BY-4.0"
    assert json.loads((out / "pretrained_cfg.json").read_text())["command"].startswith("zoo pretrain --recipe simclr_kermany")
    assert cli_main(["pretrain", "--recipe", "nope", "--out", str(tmp_path / "n")]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
