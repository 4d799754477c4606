"""SWCL on real fundus photos: SupCon, patch geometry, label scheme, FOV scoring, cached stages, CLI."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import needs_data
from zoo.cli import main as cli_main
from zoo.data.augment import SWCL_AUG, random_solarize
from zoo.data.datasets import DatasetError, fov_mask_files
from zoo.data.paths import data_path, data_root
from zoo.methods._common import AUG_PRESETS, nt_xent
from zoo.methods._swcl_data import (
    POSITIONS,
    FundusRecord,
    SWCLDataConfig,
    _square,
    build_patch_dataset,
    discover_fundus,
    holdout_split,
    patch_boxes,
    patch_labels,
    patch_scores,
    patient_pairs,
)
from zoo.methods.swcl import SWCL, supcon_loss
from zoo.train.pretrain import PretrainConfig, build_optimizer

DATA = data_root()
pytestmark = needs_data("fundus", "eyepacs")
TINY = {"image_size": 64, "labeller_size": 32, "labeller_depth": 18, "labeller_epochs": 1, "labeller_batch": 4}


# --- a small fundus folder of real photos (symlinks, read in place) ---------------------------------
@pytest.fixture(scope="module")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = data_path("fundus")
    root = tmp_path_factory.mktemp("fundus")
    rows = [r.split(",") for r in (src / "eyepacs/labels.csv").read_text().split()[1:]]
    grade = dict(rows)
    both = sorted({n.split("_")[0] for n in grade if f"{n.split('_')[0]}_left" in grade
                   and f"{n.split('_')[0]}_right" in grade}, key=int)
    normal = [p for p in both if grade[f"{p}_left"] == grade[f"{p}_right"] == "0"][:3]
    abnormal = [p for p in both if grade[f"{p}_left"] != "0" and grade[f"{p}_right"] != "0"][:3]
    (root / "eyepacs/images").mkdir(parents=True)
    lines = ["image,level"]
    for p in normal + abnormal:
        for eye in ("left", "right"):
            name = f"{p}_{eye}"
            (root / f"eyepacs/images/{name}.jpeg").symlink_to(src / f"eyepacs/images/{name}.jpeg")
            lines.append(f"{name},{grade[name]}")
    (root / "eyepacs/labels.csv").write_text("\n".join(lines) + "\n")
    for sub in ("images", "mask"):
        (root / "hrf" / sub).mkdir(parents=True)
    hrf = ["01_dr", "01_g", "01_h", "02_dr", "02_g", "02_h"]
    for n in hrf:
        (root / f"hrf/images/{n}.jpg").symlink_to(src / f"hrf/images/{n}.jpg")
        (root / f"hrf/mask/{n}.png").symlink_to(src / f"hrf/mask/{n}.png")
    labels = {"dr": "diabetic_retinopathy", "g": "glaucoma", "h": "healthy"}
    (root / "hrf/labels.csv").write_text("image,label\n" + "".join(f"{n},{labels[n.split('_')[1]]}\n" for n in hrf))
    for split, names in (("training", ["21_training", "22_training"]), ("test", ["01_test"])):
        for sub in ("images", "mask"):
            (root / "drive" / split / sub).mkdir(parents=True)
        for n in names:
            (root / f"drive/{split}/images/{n}.png").symlink_to(src / f"drive/{split}/images/{n}.png")
            (root / f"drive/{split}/mask/{n}_mask.gif").symlink_to(src / f"drive/{split}/mask/{n}_mask.gif")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swcl-cache")


@pytest.fixture
def patch_set(fundus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    return build_patch_dataset(fundus, SWCLDataConfig(**TINY))


def _batch(ds, n: int = 4) -> dict[str, torch.Tensor]:
    """``n`` samples of different patients and positions (sample ``6 k`` = pair ``k``, position ``k % 5``)."""
    items = [ds[6 * k] for k in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# --- SupCon ----------------------------------------------------------------------------------------
def test_supcon_matches_a_hand_computed_example() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    # rows 0 and 2 share label 5; row 3 shares label 7 with row 1 and label 5 (second column) with row 0
    labels = torch.tensor([[5, -1], [7, -1], [5, -1], [7, 5]])
    t = 0.5
    sim = z @ z.t()

    def log_p(i: int, j: int) -> float:
        return sim[i, j].item() / t - math.log(sum(math.exp(sim[i, a].item() / t) for a in range(4) if a != i))

    # "any": positives of 0 = {2, 3}, of 1 = {3}, of 2 = {0, 3}, of 3 = {0, 1, 2}
    expected = -np.mean([(log_p(0, 2) + log_p(0, 3)) / 2, log_p(1, 3), (log_p(2, 0) + log_p(2, 3)) / 2,
                         (log_p(3, 0) + log_p(3, 1) + log_p(3, 2)) / 3])
    assert supcon_loss(z, labels, t).item() == pytest.approx(expected, rel=1e-5)
    # "overlap": Jaccard weights, e.g. |{5} & {7, 5}| / |{5} | {7, 5}| = 1/2
    w = {(0, 2): 1, (0, 3): .5, (1, 3): .5, (2, 0): 1, (2, 3): .5, (3, 0): .5, (3, 1): .5, (3, 2): .5}
    per = {i: -sum(v * log_p(a, b) for (a, b), v in w.items() if a == i) / sum(v for (a, _), v in w.items() if a == i)
           for i in range(4)}
    assert supcon_loss(z, labels, t, "overlap").item() == pytest.approx(np.mean(list(per.values())), rel=1e-5)


def test_supcon_with_instance_labels_is_nt_xent() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    ids = torch.arange(6)[:, None]
    ours = supcon_loss(torch.cat([z1, z2]), torch.cat([ids, ids]), 0.1)
    assert ours.item() == pytest.approx(nt_xent(z1, z2, 0.1).item(), rel=1e-5)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(z1, ids, 0.1)


# --- geometry, labels, scoring -------------------------------------------------------------------
def test_patch_geometry_and_right_eye_mirroring_on_a_real_photo() -> None:
    from zoo.methods._swcl_data import cut_patches

    path = data_path("fundus", "eyepacs", "images", "10_right.jpeg")
    ((rgb, mask),) = _square(path, {}, [64])
    assert rgb.shape == (64, 64, 3) and mask.shape == (64, 64) and 0.3 < mask.mean() < 1.0
    crop = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
    assert patch_boxes(64) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)] and len(POSITIONS) == 5
    left = cut_patches(crop, right_eye=False)
    for k, (r, c) in enumerate(patch_boxes(64)):
        assert torch.equal(left[k], crop[:, r:r + 32, c:c + 32])
    right = cut_patches(crop, right_eye=True)
    # each patch mirrored, tl <-> tr and bl <-> br swapped, the centre mirrored in place
    swapped = {"tl": "tr", "tr": "tl", "bl": "br", "br": "bl", "c": "c"}
    for k, name in enumerate(POSITIONS):
        assert torch.equal(right[k], left[POSITIONS.index(swapped[name])].flip(-1)), name


def test_label_scheme_on_a_constructed_score_table() -> None:
    scores = torch.tensor([
        [0.5, 0.1, 0.45, 0.0, 0.9],  # patient A, left
        [0.6, 0.5, 0.39, 0.0, 0.4],  # patient A, right
        [0.0, 0.0, 0.0, 0.0, 0.41],  # patient B, one photo
    ])
    samples, labels = patch_labels(scores, [(0, 1), (2, 2)], threshold=0.4, scheme="all")
    assert samples.shape == (10, 3) and labels.shape == (10, 2, 3)
    assert samples[:5].tolist() == [[0, 1, p] for p in range(5)]
    inst, pair, posab = labels[..., 0], labels[..., 1], labels[..., 2]
    assert inst[:5, 0].tolist() == [0, 1, 2, 3, 4] and inst[:5, 1].tolist() == [5, 6, 7, 8, 9]
    assert inst[5:, 0].tolist() == inst[5:, 1].tolist() == [10, 11, 12, 13, 14]  # a single photo pairs with itself
    # A: tl both >= .4 -> pair; tr .1 vs .5 -> no pair; bl .45 vs .39 -> no pair; br both < .4 -> pair;
    # c .9 vs .4 (>= threshold counts as abnormal) -> pair
    assert [(pair[p, 0] >= 0).item() for p in range(5)] == [True, False, False, True, True]
    assert all(pair[p, 0] == pair[p, 1] for p in range(5))
    assert len(set(pair[[0, 3, 4], 0].tolist())) == 3  # one id per (patient, position)
    # position-abnormality: A-left br (0.0) and B br (0.0) share; A-left c (.9) and B c (.41) share; tl differs
    assert posab[3, 0] == posab[8, 0] and posab[4, 0] == posab[9, 0] and posab[1, 0] != posab[1, 1]
    assert posab[0, 0] != posab[3, 0]  # other position
    kinds = [set(labels[..., k].flatten().tolist()) - {-1} for k in range(3)]
    assert not (kinds[0] & kinds[1]) and not (kinds[1] & kinds[2]) and not (kinds[0] & kinds[2])
    _, pair_only = patch_labels(scores, [(0, 1), (2, 2)], scheme="pair")
    assert (pair_only[..., 2] == -1).all() and torch.equal(pair_only[..., :2], labels[..., :2])
    _, inst_only = patch_labels(scores, [(0, 1), (2, 2)], scheme="instance")
    assert (inst_only[..., 1:] == -1).all()


def test_fov_mask_scoring_on_a_real_mask() -> None:
    path = data_path("fundus", "hrf", "images", "01_dr.jpg")
    ((_, mask),) = _square(path, fov_mask_files(path.parent.parent), [64])
    mask_t = torch.from_numpy(mask)
    cam = torch.linspace(0, 1, 64).expand(64, 64).clone()  # abnormality grows to the right
    s = patch_scores(cam, mask_t, image_normal=False)
    for k, (r, c) in enumerate(patch_boxes(64)):
        m = mask[r:r + 32, c:c + 32]
        assert s[k].item() == pytest.approx(cam[r:r + 32, c:c + 32].numpy()[m].mean(), rel=1e-5)
    assert s[1] > s[0] and s[3] > s[2]
    assert torch.equal(patch_scores(cam, mask_t, image_normal=True), torch.zeros(5))
    empty = mask_t.clone()
    empty[:32, :32] = False
    assert patch_scores(cam, empty, image_normal=False)[0] == 0.0


def test_discovery_and_patient_disjoint_holdout(fundus: Path, tmp_path: Path) -> None:
    records = discover_fundus(fundus)
    names = [r.name for r in records]
    assert len(records) == 20 and not any("test" in n for n in names)  # DRIVE test never read
    by = {r.name: r for r in records}
    assert by["hrf/01_h"].label == 0 and by["hrf/01_g"].label == 1 and by["drive/21_training"].label == -1
    assert by["hrf/01_h"].patient != by["hrf/01_dr"].patient
    held = holdout_split(records, 0.2, seed=0)
    assert np.array_equal(held, holdout_split(records, 0.2, seed=0))
    eyepacs_held = {r.patient for r, h in zip(records, held, strict=True) if h and r.source == "eyepacs"}
    for r, h in zip(records, held, strict=True):
        if r.source == "eyepacs":
            assert h == (r.patient in eyepacs_held)  # both eyes on one side
    assert {r.label for r, h in zip(records, held, strict=True) if h} == {0, 1} and not held[[r.label < 0 for r in records]].any()
    pairs = patient_pairs(records)
    assert sum(a != b for a, b in pairs) == 6 and all(records[a].eye == "left" for a, b in pairs if a != b)
    (tmp_path / "x/images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="labelled normal and abnormal"):
        discover_fundus(tmp_path)
    rec = FundusRecord(path=Path("10_right.jpeg"), source="s", label=0, patient="s/10", eye="right")
    assert rec.name == "s/10_right"


# --- the cached pipeline ---------------------------------------------------------------------------
def test_pipeline_reports_heldout_accuracy_and_caches_each_stage(
    fundus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    caplog.set_level(logging.INFO, logger="zoo.methods._swcl_data")
    ds = build_patch_dataset(fundus, SWCLDataConfig(**TINY))
    meta = json.loads((ds.stage_dirs["labeller"] / "meta.json").read_text())
    acc, auc = meta["heldout"]["acc"], meta["heldout"]["auc"]
    assert 0.0 <= acc <= 1.0 and 0.0 <= auc <= 1.0 and meta["heldout"]["n_images"] >= 2
    assert f"held-out acc {acc:.3f}" in ds.describe()
    assert "held-out accuracy" in caplog.text
    assert len(ds) == len(patient_pairs(discover_fundus(fundus))) * 5
    item = ds[0]
    assert item["patches"].shape == (2, 3, 32, 32) and item["labels"].shape == (2, 3)
    tensors = load_file(str(ds.stage_dirs["patches"] / "patches.safetensors"))
    pmeta = json.loads((ds.stage_dirs["patches"] / "meta.json").read_text())
    normal = torch.tensor([lab == 0 for lab in pmeta["image_labels"]])
    assert (tensors["scores"][normal] == 0).all() and ((tensors["scores"] >= 0) & (tensors["scores"] <= 1)).all()
    # rerun: both stages come from the cache, nothing is rewritten
    mtimes = {k: (d / "meta.json").stat().st_mtime_ns for k, d in ds.stage_dirs.items()}
    caplog.clear()
    again = build_patch_dataset(fundus, SWCLDataConfig(**TINY))
    assert again.cache_hits == {"labeller": True, "patches": True} and "cache hit" in caplog.text
    assert {k: (d / "meta.json").stat().st_mtime_ns for k, d in again.stage_dirs.items()} == mtimes
    assert torch.equal(again.labels, ds.labels)
    # a changed input (one label) recomputes both stages; a changed patch size only the second
    csv = fundus / "hrf/labels.csv"
    original = csv.read_text()
    csv.write_text(original.replace("02_h,healthy", "02_h,glaucoma"))
    try:
        changed = build_patch_dataset(fundus, SWCLDataConfig(**TINY))
    finally:
        csv.write_text(original)
    assert changed.cache_hits == {"labeller": False, "patches": False}
    assert changed.stage_dirs["labeller"] != ds.stage_dirs["labeller"]
    bigger = build_patch_dataset(fundus, SWCLDataConfig(**{**TINY, "image_size": 48}))
    assert bigger.cache_hits == {"labeller": True, "patches": False} and bigger[0]["patches"].shape[-1] == 24


# --- the method ------------------------------------------------------------------------------------
def test_resnetv2_forward_backward_and_head(patch_set) -> None:
    torch.manual_seed(0)
    method = SWCL("resnetv2_50x1_bit")
    assert [type(m).__name__ for m in method.projector] == ["Linear", "ReLU", "Linear"]
    assert method.projector[0].in_features == method.projector[0].out_features == 2048
    out = method(_batch(patch_set, 2), torch.Generator().manual_seed(0))
    out["loss"].backward()
    grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="labelled patch set"):
        method(torch.zeros(2, 3, 32, 32))


def test_recipe_augmentations_and_errors() -> None:
    assert AUG_PRESETS["swcl"] is SWCL_AUG and SWCL_AUG.scale == (0.8, 1.0) and SWCL_AUG.solarize_p == 0.1
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    assert torch.allclose(random_solarize(x, p=1.0), torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(random_solarize(x, p=0.0), x)
    method = SWCL("resnet18")  # the fundus statistics of SWCL's weights, not the network's default tag's
    intensity = zoo.get_pretrained_cfg("resnet18.swcl_fundus64").intensity
    assert method.views.mean_std == (intensity.mean, intensity.std) == ((0.1633, 0.2259, 0.3219),
                                                                        (0.1756, 0.2195, 0.3038))
    cfg = PretrainConfig(method="swcl", arch="resnet18", data="", out="")
    opt, info = build_optimizer(cfg, method)
    assert info["optimizer"] == "adamw" and info["lr"] == 1e-3 and info["weight_decay"] == 1e-4
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    with pytest.raises(ValueError, match=r"unknown swcl hyper-parameter\(s\) \['labeler_epochs'\]; known: proj_dim"):
        SWCL.parse_hparams({"labeler_epochs": 3})
    with pytest.raises(ValueError, match="label_scheme"):
        SWCLDataConfig.from_hparams({"label_scheme": "nope"}, 112)


def test_cli_pretrain_end_to_end(fundus: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    out = tmp_path / "run"
    argv = ["pretrain", "--method", "swcl", "--arch", "resnet18", "--data", str(fundus), "--img-size", "32",
            "--batch-size", "4", "--max-steps", "2", "--out", str(out), "--no-progress"]
    argv += [a for k, v in TINY.items() if k != "image_size" for a in ("--data-option", f"{k}={v}")]
    assert cli_main(argv) == 0
    assert "2/" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["summary"]["steps"] == 2 and "held-out acc" in info["dataset"]
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    model = zoo.create_model("resnet18", checkpoint_path=out / "resnet18.safetensors")
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    entry = json.loads((out / "pretrained_cfg.json").read_text())
    assert entry["method"] == "swcl" and "--data-option labeller_epochs=1" in entry["command"]
    assert cli_main(argv[:-2] + ["--hparam", "nope=1", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown swcl hyper-parameter" in capsys.readouterr().err


_DDP_SCRIPT = """
import torch, torch.distributed as dist
from zoo.methods.swcl import supcon_loss
g = torch.Generator().manual_seed(0)
z = torch.randn(8, 4, generator=g, dtype=torch.float64)
labels = torch.tensor([[0, 10], [1, 10], [0, -1], [1, 11], [2, 11], [3, -1], [2, 10], [3, 11]])
full = z.clone().requires_grad_(True)
ref = supcon_loss(full, labels, 0.1, "overlap")  # one process: the whole batch
ref.backward()
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
mine = z[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
loss = supcon_loss(mine, labels[rank * 4:(rank + 1) * 4], 0.1, "overlap")
loss.backward()
mean = loss.detach().clone()
dist.all_reduce(mean)
assert torch.allclose(mean / world, ref), (mean / world, ref)
# DDP averages gradients over ranks: the local gradient / world is the full loss's gradient
assert torch.allclose(mine.grad / world, full.grad[rank * 4:(rank + 1) * 4]), rank
print(f"ok {rank}", flush=True)
dist.barrier()
dist.destroy_process_group()  # an undestroyed gloo group can abort the process at interpreter exit
"""


def test_supcon_gathers_every_rank_under_torchrun(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    script = tmp_path / "ddp_supcon.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 0" in proc.stdout and "ok 1" in proc.stdout
