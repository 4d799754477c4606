"""zoo finetune (zoo.eval.finetune): tiny runs on files written here. Exact resume, the model directory
round trip (local-dir:, ONNX, the loopback Hub), the record, thresholds, and the command's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests._user_data import class_folders, image_mask_folders
from tests._user_data import nifti_csv as ct_csv
from zoo import cli
from zoo.eval.finetune import RECORD_NAME, FinetuneConfig, FinetuneError, choose_threshold
from zoo.eval.finetune import run_finetune as _run_finetune

SIZE = 32
REPO = Path(__file__).resolve().parents[2]


def run_finetune(config: FinetuneConfig) -> Any:
    return _run_finetune(config, save=zoo.save_for_hf)


def _config(data: Path, out: Path, **kw: Any) -> FinetuneConfig:
    base = dict(model="resnet18", data=str(data), out=str(out), pretrained=False, img_size=SIZE, epochs=2,
                batch_size=4, progress=False, val_fraction=0.25)
    return FinetuneConfig(**{**base, **kw})


def test_classification_run_writes_a_model_that_loads_with_its_head(tmp_path: Path) -> None:
    data = class_folders(tmp_path / "data")
    result = run_finetune(_config(data, tmp_path / "run"))
    rec = json.loads((tmp_path / "run" / RECORD_NAME).read_text())
    assert result.completed and rec["start"] == {"name": "resnet18", "arm": "random_init", "sha256": None,
                                                 "path": None}
    assert rec["data"]["n_train"] == 12 and rec["data"]["n_val"] == 4 and len(rec["history"]) == 2
    assert rec["command"].startswith("zoo finetune resnet18 --data") and "--random-init" in rec["command"]
    assert set(rec["val_metrics"]) >= {"auc", "acc", "threshold", "sensitivity", "specificity"}
    model = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert cfg.label_names == ("bright", "dark") and cfg.num_classes == 2 and cfg.input_size == (3, SIZE, SIZE)
    assert cfg.decision["threshold"] == rec["val_metrics"]["threshold"]
    # the loaded model is the best epoch's: same validation outputs as recorded
    from zoo.data.userdata import load_images, open_user_data
    from zoo.eval.finetune import _class_metrics
    from zoo.eval.harness import Preprocess

    spec = open_user_data(data)
    val = [spec.files.index(Path(f)) for f in rec["data"]["val_files"]]
    prep = Preprocess(zoo.resolve_data_config(model))
    with torch.no_grad():
        logits = model(prep(load_images([spec.files[i] for i in val], SIZE))).numpy()
    assert _class_metrics("classification", spec.labels[val], logits)[0]["auc"] == rec["val_metrics"]["auc"]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    data = class_folders(tmp_path / "data")
    full = run_finetune(_config(data, tmp_path / "full", patience=10)).record
    first = run_finetune(_config(data, tmp_path / "cut", patience=10, stop_after=1))
    assert not first.completed and len(first.record["history"]) == 1
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = run_finetune(_config(data, tmp_path / "cut", patience=10, resume=True)).record
    assert resumed["history"] == full["history"]  # every loss and metric of every epoch, exactly
    a = zoo.create_model(f"local-dir:{tmp_path / 'full'}", pretrained=True).state_dict()
    b = zoo.create_model(f"local-dir:{tmp_path / 'cut'}", pretrained=True).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_settings_or_reusing_out_is_refused(tmp_path: Path) -> None:
    data = class_folders(tmp_path / "data", n=4)
    run_finetune(_config(data, tmp_path / "run", epochs=2, stop_after=1, val_fraction=0.5))
    with pytest.raises(FinetuneError, match=r"started with other settings \(lr"):
        run_finetune(_config(data, tmp_path / "run", epochs=2, val_fraction=0.5, resume=True, lr=0.1))
    with pytest.raises(FinetuneError, match="already holds files; pass --resume"):
        run_finetune(_config(data, tmp_path / "run", epochs=2, val_fraction=0.5))


def test_freeze_encoder_trains_the_head_only(tmp_path: Path) -> None:
    data = class_folders(tmp_path / "data", n=4)
    run_finetune(_config(data, tmp_path / "run", epochs=1, freeze_encoder=True, val_fraction=0.5))
    torch.manual_seed(0)
    start = zoo.create_model("resnet18", num_classes=2).state_dict()
    tuned = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True).state_dict()
    changed = sorted(k for k in start if not torch.equal(start[k], tuned[k]))
    assert changed == ["fc.bias", "fc.weight"]


def test_layer_decay_scales_earlier_blocks() -> None:
    from zoo.eval.finetune import _param_groups

    model = zoo.create_model("resnet18", num_classes=2)
    groups = {g["name"]: g["lr"] for g in _param_groups(model, 1.0, 0.5, False)}
    assert groups["fc"] == 1.0 and groups["layer4"] == 0.5 and groups["layer3"] == 0.25
    assert groups["conv1"] < groups["bn1"] < groups["layer1"]


def test_multilabel_csv_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        arr = rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{['a', 'b', 'a|b'][i % 3]}")
    (tmp_path / "l.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    rec = run_finetune(_config(tmp_path / "l.csv", tmp_path / "run", epochs=1)).record
    assert rec["data"]["kind"] == "multilabel" and len(rec["decision"]["thresholds"]) == 2
    model = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert model.pretrained_cfg.decision["activation"] == "sigmoid" and model.pretrained_cfg.label_names == ("a", "b")
    # zoo predict applies the same rule: a sigmoid per label, each label's own threshold
    from zoo.eval.predict import predict_images

    rows = predict_images(model, [tmp_path / f"{i}.png" for i in range(12)], tmp_path / "p.csv")
    cuts = rec["decision"]["thresholds"]
    with torch.no_grad():
        x = torch.stack([zoo.create_transform(model)(Image.open(tmp_path / f"{i}.png")) for i in range(12)])
        prob = torch.sigmoid(model.eval()(x))
    for row, p in zip(rows, prob.tolist(), strict=True):
        assert abs(row["a"] - p[0]) < 1e-5 and abs(row["b"] - p[1]) < 1e-5
        assert row["prediction"] == ";".join(n for n, v, t in zip("ab", p, cuts, strict=True) if v >= t)


def test_segmentation_on_images_of_different_sizes(tmp_path: Path) -> None:
    image_mask_folders(tmp_path)
    rec = run_finetune(_config(tmp_path, tmp_path / "run", epochs=1, val_fraction=0.25, batch_size=2)).record
    assert rec["data"]["kind"] == "segmentation" and 0.0 <= rec["val_metrics"]["dice"] <= 1.0
    model = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_3d_classification_from_registered_weights_records_their_sha256(
        tmp_path: Path, register_weights: Callable[..., Path]) -> None:
    torch.manual_seed(0)
    backbone = zoo.create_model("unet3d", width=4)
    weights = register_weights("unet3d.tiny", backbone.state_dict(), arch_kwargs={"width": 4},
                               input_size=(1, 16, 16, 16), voxel_spacing=(2.0, 2.0, 2.0))
    ct_csv(tmp_path)
    cfg = FinetuneConfig(model="unet3d.tiny", data=str(tmp_path / "l.csv"), out=str(tmp_path / "run"),
                         epochs=2, batch_size=4, progress=False, val_fraction=0.25)
    rec = run_finetune(cfg).record
    from zoo._io import sha256_file

    assert rec["start"]["sha256"] == sha256_file(weights) and rec["start"]["arm"] == "pretrained"
    assert rec["input_size"] == [1, 16, 16, 16] and rec["data"]["format"] == "nifti-csv"
    model = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert model.pretrained_cfg.label_names == ("no", "yes") and model.pretrained_cfg.spatial_dims == 3


def test_choose_threshold_separates_and_generalises() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    t = choose_threshold(y, s)
    assert 0.35 < t <= 0.4 and ((s >= t) == y.astype(bool)).all()
    assert choose_threshold(np.ones(3), np.array([0.2, 0.5, 0.9])) == 0.5


def test_cli_bad_data_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "data" / "a" / "x.png")
    code = cli.main(["finetune", "resnet18", "--random-init", "--data", str(tmp_path / "data"),
                     "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "hold no image" in err and "Traceback" not in err
    code = cli.main(["finetune", "unet3d_small", "--random-init", "--data", str(tmp_path / "data"),
                     "--out", str(tmp_path / "run2"), "--no-progress"])
    assert code == 2



def test_cli_without_progress_bar_logs_a_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """--no-progress (logs, batch jobs): no bar; one INFO line per epoch (stderr, through the CLI's logging set-up),
    the summary on stdout."""
    data = class_folders(tmp_path / "data", n=4)
    code = cli.main(["finetune", "resnet18", "--random-init", "--data", str(data), "--out", str(tmp_path / "run"),
                     "--img-size", str(SIZE), "--epochs", "2", "--batch-size", "4", "--val-fraction", "0.25",
                     "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and "best epoch" in out and "epoch/s" not in err
    lines = [r.getMessage() for r in caplog.records if r.name == "zoo.eval.finetune" and r.levelname == "INFO"]
    assert [m.split(":")[0].split()[-1] for m in lines if " epoch " in m] == ["1/2", "2/2"], lines
    assert all("val_loss" in m for m in lines if " epoch " in m)


@pytest.mark.slow
def test_finetuned_model_round_trips_through_onnx_and_the_loopback_hub(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from tests.hub_server import FakeHub
    from zoo.export import export_onnx

    data = class_folders(tmp_path / "data", n=4)
    run_finetune(_config(data, tmp_path / "run", epochs=1, val_fraction=0.5))
    name = f"local-dir:{tmp_path / 'run'}"
    result = export_onnx(name, tmp_path / "m.onnx")
    assert "-> ok" in result.summary()
    model = zoo.create_model(name, pretrained=True).eval()
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("ZOO_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        info = zoo.push_to_hub(name, "team/finetuned")  # what `zoo push local-dir:RUN` does
        back = zoo.create_model(f"hf-hub:team/finetuned@{info.oid}", pretrained=True).eval()
    assert back.pretrained_cfg.label_names == model.pretrained_cfg.label_names == ("bright", "dark")
    assert back.pretrained_cfg.sha256 == model.pretrained_cfg.sha256  # the same bytes
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def _nifti_pairs(root: Path, shapes: Any = ((20, 18, 12), (24, 16, 10), (18, 18, 14))) -> Path:
    """``root/images`` + ``root/labels``: CT volumes with two labelled boxes (labels 1 and 2) brighter by 400 HU."""
    rng = np.random.default_rng(4)
    for d in ("images", "labels"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, shape in enumerate(shapes):
        lab = np.zeros(shape, np.int16)
        lab[2:8, 3:9, 2:6] = 1
        lab[10:16, 8:14, 5:9] = 2
        vol = (rng.normal(-500, 100, shape) + 400 * lab).astype(np.int16)
        aff = np.diag([1.5, 1.5, 3.0, 1.0])
        nib.save(nib.Nifti1Image(vol, aff), str(root / "images" / f"ct{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(root / "labels" / f"ct{i}.nii.gz"))
    return root


def test_3d_segmentation_on_nifti_pairs_from_an_encoder_checkpoint(
        tmp_path: Path, register_weights: Callable[..., Path]) -> None:
    torch.manual_seed(0)
    backbone = zoo.create_model("unet3d", width=4)
    register_weights("unet3d.tiny", backbone.state_dict(), arch_kwargs={"width": 4},
                     input_size=(1, 16, 16, 16), voxel_spacing=(2.0, 2.0, 2.0))
    _nifti_pairs(tmp_path)
    cfg = FinetuneConfig(model="unet3d.tiny", data=str(tmp_path), out=str(tmp_path / "run"), epochs=2,
                         batch_size=2, progress=False, val_fraction=0.34, label_names=("liver", "spleen"))
    rec = run_finetune(cfg).record
    assert rec["data"]["format"] == "nifti-pairs" and rec["start"]["arm"] == "pretrained"
    assert len(rec["val_metrics"]["dice_per_class"]) == 2 and 0.0 <= rec["val_metrics"]["dice"] <= 1.0
    assert list(rec["val_metrics"]["dice_per_label"]) == ["liver", "spleen"]
    assert "--label-names liver,spleen" in rec["command"]
    model = zoo.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True).eval()
    assert model.pretrained_cfg.label_names == ("background", "liver", "spleen")
    # the network it started from: the registered encoder in a new segmentation U-Net
    from zoo.eval.finetune import _segmentation_model_3d
    from zoo.eval.harness import resolve_source

    start = _segmentation_model_3d(resolve_source("unet3d.tiny"), "pretrained", 3, seed=0).state_dict()
    enc = {k: v for k, v in backbone.state_dict().items() if k.startswith("down_tr")}
    assert enc and all(torch.equal(start[k], v) for k, v in enc.items())
    assert start["out_tr.final_conv.weight"].shape[0] == 3


def test_segmentation_label_names_and_their_errors(tmp_path: Path, register_weights: Callable[..., Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.eval.finetune import segmentation_label_names

    assert segmentation_label_names(None, 3, 3) == ("background", "label_1", "label_2")
    assert segmentation_label_names(("liver", "spleen"), 3, 3) == ("background", "liver", "spleen")
    assert segmentation_label_names(None, 2, 1) == ("foreground",)
    assert segmentation_label_names(("vessels",), 2, 1) == ("vessels",)
    for bad in (("a", "a"), ("a", ""), ()):
        with pytest.raises(FinetuneError, match="--label-names must be distinct, non-empty names"):
            FinetuneConfig(model="unet3d", data="x", out="y", label_names=bad).validate()
    # a wrong count stops before the first epoch (not after the whole run)
    torch.manual_seed(0)
    register_weights("unet3d.tiny", zoo.create_model("unet3d", width=4).state_dict(), arch_kwargs={"width": 4},
                     input_size=(1, 16, 16, 16), voxel_spacing=(2.0, 2.0, 2.0))
    _nifti_pairs(tmp_path / "ct")
    with pytest.raises(FinetuneError, match=r"gives 3 name\(s\) but the label maps hold labels 1..2: give 2"):
        run_finetune(FinetuneConfig(model="unet3d.tiny", data=str(tmp_path / "ct"), out=str(tmp_path / "run"),
                                    progress=False, val_fraction=0.34, label_names=("a", "b", "c")))
    assert not (tmp_path / "run" / "state.pt").exists()
    data = class_folders(tmp_path / "cls", n=2)
    code = cli.main(["finetune", "resnet18", "--random-init", "--data", str(data), "--out", str(tmp_path / "r2"),
                     "--label-names", "a,b"])
    err = capsys.readouterr().err
    assert code == 2 and "classes of" in err and "come from its folders (bright, dark): drop --label-names" in err
    seg = image_mask_folders(tmp_path / "seg")
    code = cli.main(["finetune", "unet_resnet18", "--random-init", "--data", str(seg), "--out", str(tmp_path / "r3"),
                     "--label-names", "vessels,optic disc"])
    assert code == 2 and "give one name, e.g. --label-names vessels, got 2" in capsys.readouterr().err


def test_label_fraction_keeps_every_class_and_the_validation_set() -> None:
    from zoo.eval.finetune import ClassificationData

    y = np.array([0] * 20 + [1] * 10)
    data = ClassificationData("classification", ("a", "b"), torch.zeros(30, 3, 4, 4, dtype=torch.uint8), y,
                              torch.zeros(5, 3, 4, 4, dtype=torch.uint8), np.array([0, 1, 0, 1, 0]))
    sub = data.label_fraction(0.1, seed=1)
    assert sorted(sub.train_y.tolist()) == [0, 0, 1] and len(sub.val_x) == 5


# --- precision ---------------------------------------------------------------------------------------------
def nifti_csv(root: Path, n: int = 8) -> Path:
    """``n`` small CT volumes (LPS, anisotropic voxels) in two classes that differ by 400 HU, and their labels CSV."""
    rng = np.random.default_rng(3)
    aff = np.diag([-1.5, -1.5, 3.0, 1.0])
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        vol = (rng.normal(-300, 300, (20, 18, 12)) + (400 if i % 2 else 0)).astype(np.int16)
        nib.save(nib.Nifti1Image(vol, aff), str(root / f"ct{i}.nii.gz"))
        rows.append(f"ct{i}.nii.gz,{'no' if i % 2 == 0 else 'yes'}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def tiny_3d(register_weights: Callable[..., Path]) -> str:
    """A registered width-4 3D U-Net encoder (16^3 input, 2 mm voxels): fast enough for quick tests."""
    torch.manual_seed(0)
    register_weights("unet3d.tiny", zoo.create_model("unet3d", width=4).state_dict(), arch_kwargs={"width": 4},
                     input_size=(1, 16, 16, 16), voxel_spacing=(2.0, 2.0, 2.0))
    return "unet3d.tiny"


def test_bf16_run_trains_records_bf16_and_resumes_in_bf16(tmp_path: Path,
                                                          register_weights: Callable[..., Path]) -> None:
    name, data = tiny_3d(register_weights), nifti_csv(tmp_path / "ct")

    def config(**kw: Any) -> FinetuneConfig:
        return FinetuneConfig(**{**dict(model=name, data=str(data), out=str(tmp_path / "run"), epochs=4,
                                        batch_size=3, lr=0.01, patience=10, progress=False, val_fraction=0.25),
                                 **kw})

    first = run_finetune(config(stop_after=1, precision="bf16"))
    assert not first.completed and first.record["precision"]["precision"] == "bf16"
    with pytest.raises(FinetuneError, match=r"other settings \(precision: \['bf16'\]"):
        run_finetune(config(resume=True))  # fp32 would change the run
    rec = run_finetune(config(resume=True, precision="bf16")).record
    assert rec["precision"] == {"precision": "bf16", "autocast_dtype": "torch.bfloat16", "grad_scaler": False,
                                "device": "cpu", "validation": "fp32"}
    assert rec["config"]["precision"] == "bf16" and "--precision bf16" in rec["command"]
    assert rec["history"][0] == first.record["history"][0] and len(rec["history"]) == 4
    losses = [h["train_loss"] for h in rec["history"]]
    assert losses[-1] < losses[0], losses  # it trains
    fp32 = run_finetune(config(out=str(tmp_path / "fp32"), stop_after=1)).record
    assert fp32["history"][0]["train_loss"] != losses[0]  # autocast was on: bf16 rounds the forward


def test_fp16_on_cpu_and_a_world_the_data_cannot_feed_name_the_fix(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.eval.finetune import ClassificationData, train_classifier, train_segmentation
    from zoo.eval.harness import resolve_source
    from zoo.train.distributed import Dist

    with pytest.raises(FinetuneError, match="fp16 needs a CUDA device.*use --precision bf16"):
        _config(tmp_path, tmp_path / "run", precision="fp16").validate()
    assert cli.main(["finetune", "resnet18", "--random-init", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                     "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--precision bf16" in err
    # what torchrun's processes each check before any collective (so every process stops with the same line)
    source = resolve_source("resnet18")
    data = ClassificationData("classification", ("a", "b"), torch.zeros(6, 3, 8, 8, dtype=torch.uint8),
                              np.array([0, 1] * 3), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), np.array([0, 1]))
    cfg = _config(tmp_path, tmp_path / "run", batch_size=8)
    with pytest.raises(FinetuneError, match="torchrun started 4 processes but there are 6 training samples.*"
                                            "--nproc-per-node 3 or fewer"):
        train_classifier(source, "random_init", data, None, cfg, parallel=Dist(rank=0, world=4))
    with pytest.raises(FinetuneError, match="--batch-size 2 is the global batch, split across the 2 processes.*"
                                            "use --batch-size 4 or more"):
        train_classifier(source, "random_init", data, None, _config(tmp_path, tmp_path / "r", batch_size=2),
                         parallel=Dist(rank=1, world=2))
    pairs = type("Pairs", (), {"spatial_dims": 2, "__len__": lambda self: 2})()
    with pytest.raises(FinetuneError, match="torchrun started 3 processes but there are 2 training samples"):
        train_segmentation(source, "random_init", pairs, pairs, cfg, parallel=Dist(rank=0, world=3))


# --- torchrun (slow: real processes) -----------------------------------------------------------------------
def _torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node=2 -m zoo.cli finetune ARGS`` (gloo, one thread per process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "zoo.cli",
           "finetune", *args, "--no-progress"]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _history(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / RECORD_NAME).read_text())["history"]


@pytest.mark.slow
def test_torchrun_classification_is_close_to_one_process_and_resumes_exactly(tmp_path: Path) -> None:
    """2 processes: the same global batches as 1 process (validation close, not bitwise: BatchNorm sees each
    process's share; with BatchNorm frozen, equal to float rounding); stop + resume under torchrun equals the
    uninterrupted torchrun run."""
    data = class_folders(tmp_path / "data", n=12)
    args = ["resnet18", "--random-init", "--data", str(data), "--img-size", str(SIZE), "--epochs", "3",
            "--batch-size", "8", "--val-fraction", "0.25", "--patience", "10"]
    one = run_finetune(_config(data, tmp_path / "one", epochs=3, batch_size=8, patience=10)).record
    proc = _torchrun(tmp_path, *args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best epoch 3 of 3") == 1  # rank 0 speaks for both processes
    assert sorted(f.name for f in (tmp_path / "two").iterdir()) == [
        "README.md", "config.json", "finetune.json", "model.safetensors", "state.pt"]
    two = json.loads((tmp_path / "two" / RECORD_NAME).read_text())
    assert two["command"].startswith("torchrun --nproc_per_node=2 -m zoo.cli finetune resnet18")
    assert two["processes"] == {"world_size": 2, "backend": "gloo", "global_batch": 8, "per_process_batch": [4, 4],
                                "world_sizes": [2], "batch": two["processes"]["batch"]}
    diffs = [abs(a["val_loss"] - b["val_loss"]) for a, b in zip(one["history"], two["history"], strict=True)]
    assert max(diffs) < 0.1, diffs
    assert two["val_metrics"]["auc"] >= 0.9 and one["val_metrics"]["auc"] >= 0.9
    zoo.create_model(f"local-dir:{tmp_path / 'two'}", pretrained=True)
    # interrupted after epoch 1 and resumed, both under torchrun: the same run
    proc = _torchrun(tmp_path, *args, "--out", str(tmp_path / "cut"), "--stop-after", "1")
    assert proc.returncode == 0 and "stopped after epoch 1 of 3" in proc.stdout, proc.stderr[-3000:]
    proc = _torchrun(tmp_path, *args, "--out", str(tmp_path / "cut"), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _history(tmp_path / "cut") == two["history"]
    assert json.loads((tmp_path / "cut" / RECORD_NAME).read_text())["processes"]["world_sizes"] == [2, 2]
    # BatchNorm frozen (--freeze-encoder keeps its statistics), classes 12:7 (unequal class weights): the shares'
    # scaled, weighted losses and DDP's averaged gradients are the global batch's step, as in one process
    for f in sorted((data / "bright").iterdir())[7:]:
        f.rename(tmp_path / f.name)
    head = dict(freeze_encoder=True, lr=0.01)
    solo = run_finetune(_config(data, tmp_path / "solo", epochs=3, batch_size=8, patience=10, **head)).record
    proc = _torchrun(tmp_path, *args, "--freeze-encoder", "--lr", "0.01", "--out", str(tmp_path / "duo"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for a, b in zip(solo["history"], _history(tmp_path / "duo"), strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and abs(a["val_loss"] - b["val_loss"]) < 1e-5, (a, b)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segmentation_2d", "classification_3d", "segmentation_3d"])
def test_torchrun_every_other_task_and_a_one_process_resume(tmp_path: Path, task: str) -> None:
    """Epoch 1 under torchrun (2 processes), epoch 2 resumed in one process: the global batch does not depend
    on the process count, so a run continues with another one (and the record says so)."""
    if task == "segmentation_2d":
        data = image_mask_folders(tmp_path / "data", [(50, 40), (40, 64), (70, 45), (30, 30), (48, 48)])
        model, size, val_fraction, metric = "resnet18", 32, 0.2, "dice"
    elif task == "classification_3d":
        data, model, size, val_fraction, metric = nifti_csv(tmp_path / "data"), "unet3d_small", 16, 0.25, "auc"
    else:
        data = _nifti_pairs(tmp_path / "data", [(20, 18, 12), (24, 16, 10), (18, 18, 14), (20, 20, 12)])
        model, size, val_fraction, metric = "unet3d_small_seg", 16, 0.25, "dice"
    out = tmp_path / "run"
    proc = _torchrun(tmp_path, model, "--random-init", "--data", str(data), "--out", str(out), "--img-size",
                     str(size), "--val-fraction", str(val_fraction), "--epochs", "2", "--batch-size", "4",
                     "--stop-after", "1")
    assert proc.returncode == 0 and "stopped after epoch 1 of 2" in proc.stdout, proc.stderr[-3000:]
    first = json.loads((out / RECORD_NAME).read_text())
    assert first["processes"]["world_size"] == 2 and first["processes"]["per_process_batch"] == [2, 2]
    assert not (out / "model.safetensors").exists() and len(first["history"]) == 1
    rec = run_finetune(FinetuneConfig(model=model, data=str(data), out=str(out), img_size=size, epochs=2,
                                      batch_size=4, val_fraction=val_fraction, pretrained=False, resume=True,
                                      progress=False)).record
    assert rec["completed"] and rec["history"][0] == first["history"][0] and len(rec["history"]) == 2
    assert rec["processes"]["world_sizes"] == [2, 1]
    assert rec["val_metrics"][metric] is not None and 0.0 <= rec["val_metrics"][metric] <= 1.0
    zoo.create_model(f"local-dir:{out}", pretrained=True)
