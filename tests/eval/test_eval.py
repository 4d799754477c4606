"""The evaluation harness: real data readers, subsets, metrics, probe, protocols end to end, robustness,
Grad-CAM and results -> registry metrics / model card."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo._io import sha256_file
from zoo.cli import main
from zoo.data.paths import data_root
from zoo.data.sampling import stratified_subset
from zoo.data.segmentation import load_drive
from zoo.eval import TASK_NAMES
from zoo.eval.gradcam import grad_cam, gradcam_figure
from zoo.eval.harness import (
    EvalConfig,
    build_segmentation_model,
    default_output_path,
    resolve_source,
    run_eval,
    save_results,
)
from zoo.eval.metrics import (
    accuracy,
    classification_metrics,
    f1_in_mask,
    macro_auc_ovr,
    roc_auc,
    segmentation_metrics,
)
from zoo.eval.probe import LogisticRegression
from zoo.eval.robustness import CORRUPTIONS, corrupt
from zoo.eval.tasks import TASKS, get_task
from zoo.meta.cfg import PretrainedCfg, validate_cfg
from zoo.report import (
    card_block,
    card_markers,
    gradcam_info,
    gradcam_markdown,
    load_pretrain_log,
    load_results,
    model_card_results,
    plot_label_fractions,
    plot_pretrain_log,
    published_anchors_markdown,
    results_table_markdown,
    results_to_metrics,
    robustness_table_markdown,
)
from zoo.report.anchors import ANCHORS, SOURCES, anchors_for


# --- readers on the real files ---------------------------------------------------------------------
def test_kermany_folders() -> None:
    task = get_task("kermany_pneumonia")
    test = task.load("test")
    assert len(test) == 624 and np.bincount(test.labels).tolist() == [234, 390]
    assert test.images.shape == (624, 1, 224, 224) and test.images.dtype == torch.uint8  # grey stored once
    split = task.load("test", limit=20)
    assert np.bincount(split.labels).tolist() == [8, 12]  # 234:390 kept in proportion
    assert torch.equal(split.images, test.images[torch.from_numpy(split.indices)])


def test_medmnist_splits() -> None:
    retina = get_task("retinamnist")
    assert [len(retina.load(s)) for s in ("train", "val", "test")] == [1080, 120, 400]
    test = retina.load("test")
    assert test.images.shape == (400, 3, 28, 28) and test.labels.dtype == np.int64 and set(test.labels) == set(range(5))
    task = get_task("adrenalmnist3d")
    assert [len(task.load(s)) for s in ("train", "val", "test")] == [1188, 98, 298]
    with np.load(data_root() / "ct" / "adrenalmnist3d_64.npz") as data:
        assert data["test_labels"].shape == (298, 1) and data["val_labels"].shape == (98, 1)
    assert task.load("test", limit=4).images.shape == (4, 1, 28, 28, 28)
    with pytest.raises(ValueError, match="--img-size 28 or 64"):
        task.load("test", img_size=32)
    with pytest.raises(ValueError, match="train and test splits only"):
        get_task("kermany_pneumonia").load("val")


def test_drive_splits_with_fov() -> None:
    root = data_root() / "fundus" / "drive"
    train, test = load_drive(root, "train"), load_drive(root, "test")
    assert len(train) == len(test) == 20
    assert train.ids[0] == "21" and test.ids[0] == "01"
    for split in (train, test):
        assert split.images.shape == (20, 584, 565, 3) and split.masks.shape == split.fov.shape == (20, 584, 565)
        assert split.masks.dtype == bool and 0.05 < split.masks.mean() < 0.2  # vessels are ~12% of pixels
        assert 0.6 < split.fov.mean() < 0.8 and not (split.masks & ~split.fov).sum() > 0.001 * split.masks.sum()


def test_task_names_match() -> None:
    assert tuple(TASKS) == TASK_NAMES
    with pytest.raises(ValueError, match="choose one of"):
        get_task("pneumonia")


# --- subsets ---------------------------------------------------------------------------------------
def test_stratified_subset_is_stratified_and_seeded() -> None:
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    a = stratified_subset(labels, fraction=0.1, seed=0)
    assert np.bincount(labels[a]).tolist() == [90, 9, 1]
    assert np.array_equal(a, stratified_subset(labels, fraction=0.1, seed=0))
    assert not np.array_equal(a, stratified_subset(labels, fraction=0.1, seed=1))
    tiny = stratified_subset(labels, fraction=0.01, seed=3)
    assert np.bincount(labels[tiny]).tolist() == [9, 1, 1]  # every class keeps one sample
    sized = stratified_subset(labels, size=50, seed=0)
    assert len(sized) == 50 and np.bincount(labels[sized]).tolist() == [45, 4, 1]
    assert len(stratified_subset(labels, fraction=1.0)) == 1000
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        stratified_subset(labels, fraction=0.0)


# --- metrics against hand-made references ----------------------------------------------------------
def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_acc_f1_by_hand() -> None:
    # 2 positives, 3 negatives: pairs (p, n) won: 0.9 beats all 3, 0.4 beats 0.1 and ties 0.4 -> 4.5 / 6
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.4, 0.4, 0.1, 0.8])
    assert roc_auc(y, s) == pytest.approx(4.5 / 6)
    rng = np.random.default_rng(0)
    y2, s2 = rng.integers(0, 2, 60), rng.integers(0, 7, 60).astype(float)  # many ties
    assert roc_auc(y2, s2) == pytest.approx(_pairwise_auc(y2, s2))
    with pytest.raises(ValueError, match="only one class"):
        roc_auc(np.ones(3), np.arange(3))
    # 3 classes, one-vs-rest by hand: class 0 wins 3/3 pairs; class 1 (0.3) beats 0.1, 0.1, loses to 0.5: 2/3;
    # class 2 (0.3, 0.8) vs (0.1, 0.6): 3/4 -> macro (1 + 2/3 + 3/4) / 3; arg-max hits rows 0 and 3
    y3 = np.array([0, 1, 2, 2])
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    per_class = [_pairwise_auc((y3 == c).astype(int), p3[:, c]) for c in range(3)]
    assert per_class == pytest.approx([1.0, 2 / 3, 0.75])
    assert macro_auc_ovr(y3, p3) == pytest.approx((1 + 2 / 3 + 0.75) / 3)
    assert accuracy(y3, p3) == 0.5
    # binary: MedMNIST scores the last column
    p2 = np.stack([1 - s, s], 1)
    assert classification_metrics(y, p2) == {"auc": pytest.approx(4.5 / 6), "acc": 0.6}
    # F1 inside a mask: the out-of-mask false positive does not count
    target = np.array([[1, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 0, 1], [0, 0, 1]], bool)
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    assert f1_in_mask(target, pred, mask) == pytest.approx(2 * 1 / (2 + 2))
    assert f1_in_mask(target, pred) == pytest.approx(2 * 1 / (2 + 3))
    seg = segmentation_metrics(target, np.where(pred, 0.9, 0.1), mask)
    assert seg["f1"] == pytest.approx(0.5) and seg["auc"] == pytest.approx(_pairwise_auc(target[mask], pred[mask]))


def test_logistic_regression_probe() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    y = np.repeat(np.arange(3), 30)
    x = centers[y] + rng.normal(size=(90, 8))
    probe = LogisticRegression(3).fit(x, y)
    assert probe.l2 is not None and accuracy(y, probe.predict_proba(x)) == 1.0
    w, b = probe.folded_linear()  # on raw features: the same probabilities
    raw = torch.softmax(torch.as_tensor(x, dtype=torch.float32) @ w.T + b, 1).numpy()
    np.testing.assert_allclose(raw, probe.predict_proba(x), atol=1e-4)
    with pytest.raises(ValueError, match="labels must lie"):
        LogisticRegression(2).fit(x, y)


@pytest.mark.parametrize("k", [2, 3])
def test_probe_minimises_zoos_objective(k: int) -> None:
    """scikit-learn's C is mapped from zoo's l2 so that the fit minimises ``mean CE + l2/2 |W|^2`` over the
    K-column softmax (bias unpenalised): the gradient of that objective vanishes at the returned weights."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(k), 40)
    x = rng.normal(size=(len(y), 6)) + y[:, None] * 0.7
    l2 = 0.05
    probe = LogisticRegression(k, l2_grid=(l2,), tol=1e-10).fit(x, y)
    xs = torch.as_tensor((x - probe.mean) / probe.std)
    w = torch.tensor(probe.weight, requires_grad=True)
    b = torch.tensor(probe.bias, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xs @ w + b, torch.as_tensor(y)) + 0.5 * l2 * (w * w).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-5 and b.grad.abs().max() < 1e-5
    # a wrong mapping (C off by 2x) leaves a clear gradient: the check can fail
    w2 = (w.detach() * 2).requires_grad_()
    loss2 = torch.nn.functional.cross_entropy(xs @ w2 + b.detach(), torch.as_tensor(y)) + 0.5 * l2 * (w2 * w2).sum()
    loss2.backward()
    assert w2.grad.abs().max() > 1e-3


def test_probe_edge_cases() -> None:
    rng = np.random.default_rng(2)
    y = np.array([0] * 10 + [1] * 10 + [2])  # class 2 has one sample: some folds never see it
    x = rng.normal(size=(len(y), 4)) + y[:, None]
    probe = LogisticRegression(3).fit(x, y)
    p = probe.predict_proba(x)
    assert p.shape == (len(y), 3) and np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        LogisticRegression(3).fit(x, y)


# --- end to end ------------------------------------------------------------------------------------
def _checkpoint(tmp_path: Path, name: str = "resnet18", seed: int = 123, **kwargs: Any) -> Path:
    torch.manual_seed(seed)
    model = zoo.create_model(name, num_classes=0, **kwargs)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_linear_random_init_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    args = ["eval", "resnet50", "--task", "retinamnist", "--protocol", "linear", "--seeds", "2",
            "--max-train", "64", "--max-test", "64", "--label-fraction", "0.5", "--out", str(out)]
    assert main(args) == 0
    assert "random_init  AUC" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["arms"] == ["random_init"] and res["checkpoint"] is None  # no weights registered
    assert res["seeds"] == [0, 1] and res["n_train_pool"] == 64 and res["n_test"] == 64
    assert res["input_size"] == [3, 28, 28] and res["zoo_version"] == zoo.__version__
    runs = res["runs"]["random_init"]["per_seed"]
    assert [r["n_train"] for r in runs] == [32, 32]
    assert runs[0]["auc"] != runs[1]["auc"]  # different seeds: different random backbones and subsets
    assert res["command"].startswith("zoo eval resnet50 --task retinamnist --protocol linear")
    # the feature cache is filled, and a second run reads it and gives the same numbers
    cached = sorted((Path(str(zoo.hub.cache_dir())) / "eval_features").glob("*.npy"))
    assert len(cached) == 4  # 2 seeds x (train, test)
    again = run_eval(EvalConfig("resnet50", "retinamnist", seeds=2, max_train=64, max_test=64,
                                label_fraction=0.5))
    assert again["runs"]["random_init"]["mean"] == res["runs"]["random_init"]["mean"]
    # without --out: one file per model / task / protocol / fraction, and input size when one is asked for
    assert default_output_path(EvalConfig("m", "retinamnist", label_fraction=0.01)) == Path(
        "zoo-results/m__retinamnist__linear__1pct.json")  # not the repository's results/
    assert default_output_path(EvalConfig("m", "retinamnist", img_size=64)).name == "m__retinamnist__linear__100pct__64px.json"


@pytest.fixture(scope="module")
def paired_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Linear (with robustness) and finetune runs of a checkpoint file, each paired with random init."""
    tmp = tmp_path_factory.mktemp("ckpt")
    ckpt = _checkpoint(tmp)
    common = dict(model="resnet18", task="retinamnist", seeds=2, max_train=64, max_test=64,
                  checkpoint_path=str(ckpt), cache=False)
    return {
        "ckpt": ckpt,
        "linear": run_eval(EvalConfig(protocol="linear", robustness=True, **common)),
        "finetune": run_eval(EvalConfig(protocol="finetune", epochs=1, batch_size=32, label_fraction=0.5, **common)),
    }


def test_checkpoint_runs_are_pairs(paired_results: dict[str, Any]) -> None:
    for protocol in ("linear", "finetune"):
        res = paired_results[protocol]
        assert res["arms"] == ["pretrained", "random_init"]
        assert res["checkpoint"]["sha256"] == sha256_file(paired_results["ckpt"])
        pre, rnd = res["runs"]["pretrained"], res["runs"]["random_init"]
        assert [r["seed"] for r in pre["per_seed"]] == [r["seed"] for r in rnd["per_seed"]] == [0, 1]
        assert [r["n_train"] for r in pre["per_seed"]] == [r["n_train"] for r in rnd["per_seed"]]
        assert pre["per_seed"][0]["auc"] != rnd["per_seed"][0]["auc"]  # other weights, other result
        for run in (pre, rnd):
            assert 0.0 <= run["mean"]["auc"] <= 1.0 and 0.0 <= run["mean"]["acc"] <= 1.0
            assert run["std"]["auc"] == pytest.approx(np.std([r["auc"] for r in run["per_seed"]], ddof=1))
    ft = paired_results["finetune"]
    assert ft["epochs"] == 1 and ft["runs"]["pretrained"]["per_seed"][0]["n_train"] == 32
    assert len(ft["runs"]["pretrained"]["per_seed"][0]["train_loss"]) == 1
    # a linear probe of the checkpoint is the same for both seeds at 100% labels (frozen, convex)
    lin = paired_results["linear"]["runs"]["pretrained"]["per_seed"]
    assert lin[0]["auc"] == lin[1]["auc"]


def test_robustness(paired_results: dict[str, Any]) -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS:
        assert torch.equal(corrupt(x, name, 0), x)
        diffs = [float((corrupt(x, name, s) - x).abs().mean()) for s in (1, 2, 3)]
        assert 0 < diffs[0] < diffs[1] < diffs[2], (name, diffs)
        assert corrupt(x, name, 3).shape == x.shape and 0 <= corrupt(x, name, 3).min() <= corrupt(x, name, 3).max() <= 1
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert torch.allclose(corrupt(flat, "gaussian_blur", 3), flat)
    assert torch.equal(corrupt(x, "gaussian_noise", 2, seed=1), corrupt(x, "gaussian_noise", 2, seed=1))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        corrupt(torch.rand(2, 8, 8), "gaussian_blur", 1)
    # volumes: the same corruptions in 3D, JPEG slice by slice
    vol = torch.rand(2, 1, 24, 24, 24, generator=torch.Generator().manual_seed(1))
    for name in CORRUPTIONS:
        diffs = [float((corrupt(vol, name, s) - vol).abs().mean()) for s in (1, 2, 3)]
        assert 0 < diffs[0] < diffs[1] < diffs[2], (name, diffs)
        assert corrupt(vol, name, 3).shape == vol.shape
    assert torch.allclose(corrupt(torch.full((1, 1, 8, 8, 8), 0.5), "gaussian_blur", 3), torch.full((1, 1, 8, 8, 8), 0.5))
    sliced = torch.stack([corrupt(vol[:, :, k], "jpeg", 2) for k in range(24)], dim=2)
    assert torch.equal(corrupt(vol, "jpeg", 2), sliced)
    shifted = corrupt(vol, "contrast", 1)  # around each volume's own mean grey level
    assert torch.allclose(shifted.mean((1, 2, 3, 4)), vol.mean((1, 2, 3, 4)), atol=1e-5)
    rob = paired_results["linear"]["robustness"]
    assert set(rob) == {"pretrained", "random_init"}
    assert set(rob["random_init"]) == {"clean", *CORRUPTIONS}
    clean = paired_results["linear"]["runs"]["random_init"]["mean"]["auc"]
    assert rob["random_init"]["clean"]["auc"]["mean"] == pytest.approx(clean)
    assert rob["random_init"]["gaussian_noise"]["3"]["auc"]["mean"] != pytest.approx(clean)


def test_results_to_metrics_markdown_plot(paired_results: dict[str, Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    files = [save_results(paired_results[p], tmp_path / f"{p}.json") for p in ("linear", "finetune")]
    metrics = results_to_metrics(files)
    assert set(metrics) == {"retinamnist/linear/100%/28x28", "retinamnist/finetune/50%/28x28"}
    entry = metrics["retinamnist/linear/100%/28x28"]
    run = paired_results["linear"]["runs"]
    assert entry["auc"] == round(run["pretrained"]["mean"]["auc"], 4)
    assert entry["random_init"]["acc"] == round(run["random_init"]["mean"]["acc"], 4)
    assert entry["seeds"] == 2 and entry["img_size"] == 28
    # the metrics go into a registry entry that passes the schema, and survive a JSON round trip
    cfg = PretrainedCfg(architecture="resnet18", tag="test", file="x.safetensors", sha256="0" * 64,
                        file_size=1, method="pcrl", pretrain_data="d", modality="cxr", license_weights="CC-BY-4.0",
                        license_data="CC-BY-4.0", paper="p", command="zoo pretrain", metrics=metrics)
    assert validate_cfg(cfg) == []
    assert PretrainedCfg.from_dict(json.loads(json.dumps(cfg.to_dict()))).metrics == metrics
    table = results_table_markdown(files)
    auc = run["pretrained"]["mean"]["auc"]
    assert f"| retinamnist | linear | 100% | 28x28 | 2 | AUC | {auc:.3f} ± " in table
    card = model_card_results(files, plot_path="fig.png")
    anchors = published_anchors_markdown(files)  # once per task in the card, not in each checkpoint's block
    assert "| ResNet-18 (28) | supervised from scratch | 28 px | 0.717 | 0.524 |" in anchors
    assert "ResNet-18 (28)" not in card and "#published-anchors-on-the-retinamnist-test-split" in card
    assert "![metric vs label fraction](fig.png)" in card and "gaussian noise | 3 |" in card
    assert "gaussian blur | 1 |" in robustness_table_markdown(files)
    png = plot_label_fractions(files, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same protocol at another input size is another entry, row and panel, not an overwrite
    larger = {**paired_results["linear"], "input_size": [3, 64, 64], "img_size": 64}
    assert set(results_to_metrics([*files, larger])) == {*metrics, "retinamnist/linear/100%/64x64"}
    rows = [r for r in results_table_markdown([larger, *files]).splitlines() if "| linear | 100% |" in r]
    assert [r.split(" | ")[3] for r in rows] == ["28x28", "28x28", "64x64", "64x64"]
    assert plot_label_fractions([*files, larger], tmp_path / "plot2.png").read_bytes() != png.read_bytes()
    # random-init-only results are not a checkpoint's metrics
    random_only = {**paired_results["linear"], "runs": {"random_init": run["random_init"]}, "checkpoint": None}
    with pytest.raises(ValueError, match="random-init-only"):
        results_to_metrics(random_only)
    with pytest.raises(ValueError, match="not a zoo eval results file"):
        load_results({"runs": {}})
    assert main(["report", str(files[0]), "--metrics"]) == 0
    # the block goes into a model card between its markers, atomically; without markers the card is untouched
    begin, end = card_markers("resnet18")
    model_card = tmp_path / "CARD.md"
    model_card.write_text(f"# card\n\n## resnet18\n\nhand-written\n\n{begin}\nold numbers\n{end}\n\nmore\n")
    assert main(["report", *map(str, files), "--plot", str(tmp_path / "p.png"), "--card", str(model_card)]) == 0
    block = model_card_results(files, plot_path=str(tmp_path / "p.png"))
    assert card_block(model_card, "resnet18") == block.strip("\n")
    assert "old numbers" not in model_card.read_text() and model_card.read_text().endswith(f"{end}\n\nmore\n")
    bare = tmp_path / "BARE.md"
    bare.write_text("# card\n")
    assert main(["report", *map(str, files), "--card", str(bare)]) == 2
    assert "<!-- zoo report resnet18: begin -->" in capsys.readouterr().err
    assert bare.read_text() == "# card\n"


def test_pretrain_log_and_loss_curves(tmp_path: Path) -> None:
    steps = [{"step": i, "lr": 0.1 / i, "loss": 5.0 / i, "loss_recon": 1.0 / i, "images_per_s": 10.0}
             for i in range(1, 31)]
    text = "".join(json.dumps(s) + "\n" for s in steps)
    (tmp_path / "log.jsonl").write_text(text)
    (tmp_path / "log.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    assert load_pretrain_log(tmp_path / "log.jsonl") == load_pretrain_log(tmp_path / "log.jsonl.gz") == steps
    with_terms = plot_pretrain_log(tmp_path / "log.jsonl.gz", tmp_path / "a.png", title="run")
    plain = plot_pretrain_log([{k: s[k] for k in ("step", "lr", "loss")} for s in steps], tmp_path / "b.png")
    assert with_terms.read_bytes()[:8] == plain.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert with_terms.read_bytes() != plain.read_bytes()  # a panel of the loss terms
    # a log with a gap (steps written after the last checkpoint of an interrupted run) or not a log at all
    (tmp_path / "gap.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps if s["step"] != 7))
    with pytest.raises(ValueError, match="--resume"):
        load_pretrain_log(tmp_path / "gap.jsonl")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="not a zoo pretrain step log"):
        load_pretrain_log(tmp_path / "bad.jsonl")


def test_anchors_are_data_with_sources() -> None:
    assert all(a.source in SOURCES for a in ANCHORS)
    assert all(0 < v <= 1 for a in ANCHORS for v in a.values.values())
    assert {a.task for a in ANCHORS} == set(TASKS)
    kermany = {a.method: a.values for a in anchors_for("kermany_pneumonia", "acc") if a.source == "kermany2018"}
    assert kermany == {"Inception V3 (ImageNet)": {"auc": 0.968, "acc": 0.928}}
    assert {a.values["f1"] for a in anchors_for("drive_vessels", "f1")} == {0.8142, 0.8171, 0.8205, 0.8263}


def test_3d_linear_with_registered_tiny_checkpoint(register_weights: Any, tmp_path: Path) -> None:
    torch.manual_seed(7)
    small = zoo.create_model("unet3d", width=4)
    register_weights("unet3d.pcrl_tiny", small.state_dict(), arch_kwargs={"norm": "bn", "width": 4})
    res = run_eval(EvalConfig("unet3d.pcrl_tiny", "adrenalmnist3d", seeds=1, max_train=24, max_test=16,
                              robustness=True))
    assert res["arms"] == ["pretrained", "random_init"] and res["checkpoint"]["registered"]
    assert res["input_size"] == [1, 28, 28, 28] and res["intensity"]["kind"] == "unit"
    assert {"auc", "acc"} <= set(res["runs"]["pretrained"]["per_seed"][0])
    assert set(res["robustness"]["pretrained"]) == {"clean", *CORRUPTIONS}  # volumes are corrupted too
    # Grad-CAM of volumes: maximum-intensity projections of the volume and the map, with the checkpoint's sha256
    out = gradcam_figure("unet3d.pcrl_tiny", "adrenalmnist3d", tmp_path / "cam3d.png", n_images=2, img_size=28,
                         max_train=24)
    assert gradcam_info(out) == (f"zoo gradcam unet3d.pcrl_tiny --task adrenalmnist3d -o {out} --n-images 2 "
                                 "--img-size 28 --max-train 24", res["checkpoint"]["sha256"])


def test_drive_segmentation_from_backbone_checkpoint(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    source = resolve_source("resnet18", ckpt)
    seg = build_segmentation_model(source, "pretrained", seed=0)
    backbone = zoo.create_model("resnet18", checkpoint_path=ckpt, num_classes=0)
    for k, v in backbone.state_dict().items():
        assert torch.equal(seg.encoder.state_dict()[k], v), k
    assert seg.segmentation_head[0].out_channels == 1
    res = run_eval(EvalConfig("resnet18", "drive_vessels", protocol="linear", seeds=1, epochs=1, img_size=64,
                              batch_size=2, max_train=1, max_test=1, checkpoint_path=str(ckpt)))
    assert res["metrics"] == ["f1", "auc"] and res["n_test"] == 1 and res["input_size"] == [3, 64, 64]
    for arm in ("pretrained", "random_init"):
        r = res["runs"][arm]["per_seed"][0]
        assert 0.0 <= r["f1"] <= 1.0 and 0.0 <= r["auc"] <= 1.0 and r["n_train"] == 1


def test_bad_inputs_name_the_fix() -> None:
    with pytest.raises(ValueError, match="is 3D but resnet18 is 2D"):
        run_eval(EvalConfig("resnet18", "adrenalmnist3d", max_train=8, max_test=8))
    with pytest.raises(ValueError, match="robustness is for classification"):
        run_eval(EvalConfig("resnet18", "drive_vessels", robustness=True))
    with pytest.raises(ValueError, match="multiple of 32"):
        run_eval(EvalConfig("resnet18", "drive_vessels", img_size=100))
    with pytest.raises(ValueError, match="protocol must be one of"):
        run_eval(EvalConfig("resnet18", "retinamnist", protocol="probe"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_eval(EvalConfig("resnet18", "retinamnist", checkpoint_path="/nonexistent.safetensors"))
    with pytest.raises(ValueError, match="not pooled"):
        run_eval(EvalConfig("unet_resnet18", "retinamnist", img_size=32, max_train=8, max_test=8, seeds=1))
    with pytest.raises(SystemExit):
        main(["eval", "resnet18", "--task", "retinamnist", "--label-fraction", "5"])


def test_grad_cam(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create_model("resnet18", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    cams, logits = grad_cam(model, x)
    assert cams.shape == (2, 64, 64) and logits.shape == (2, 3)
    assert float(cams.min()) == 0.0 and float(cams.max()) == pytest.approx(1.0)
    other, _ = grad_cam(model, x, target=(logits.argmax(1) + 1) % 3)
    assert not torch.allclose(cams, other)  # another class, another map
    out = gradcam_figure("resnet18", "retinamnist", tmp_path / "cam.png", n_images=2, img_size=64, max_train=40)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert gradcam_info(out)[1] == resolve_source("resnet18").sha256
    section = gradcam_markdown(out)  # the model card quotes the command that drew the figure
    assert f"zoo gradcam resnet18 --task retinamnist -o {out} --n-images 2 --img-size 64 --max-train 40" in section
    assert f"![Grad-CAM]({out})" in section
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(ValueError, match="not drawn by `zoo gradcam`"):
        gradcam_markdown(plain)


def test_training_flips_keep_image_and_mask_aligned() -> None:
    from zoo.eval.harness import _random_flips

    x = torch.rand(16, 3, 8, 8)
    y = x[:, :1] > 0.5
    fx, fy = _random_flips([x, y.float()], (0, 1), torch.Generator().manual_seed(0))
    assert torch.equal(fy.bool(), fx[:, :1] > 0.5)  # the same samples flipped the same way
    assert not torch.equal(fx, x) and torch.allclose(fx.sum((2, 3)), x.sum((2, 3)))
