"""zoo compare / zoo eval --data (zoo.eval.compare): ranking and ties as pure functions, then tiny comparisons
on files written here with two registered tiny checkpoints: pairing, outputs, resume, skipped entries, 3D,
multi-label, segmentation and the errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests._user_data import class_folders, image_mask_folders, nifti_csv
from zoo._io import sha256_file
from zoo.eval.compare import (
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    RUN_NAME,
    CompareConfig,
    CompareError,
    data_name,
    paired_difference,
    parse_fractions,
    rank_arms,
    run_compare,
    select_arms,
)

TINY = (3, 32, 32)


# --- pure: paired differences, ties, ranks ----------------------------------------------------------------
def test_a_clear_winner_ranks_alone_and_its_gain_is_better() -> None:
    per_seed = {"a": [0.90, 0.91, 0.92], "b": [0.70, 0.72, 0.69], "c": [0.50, 0.52, 0.49]}
    ranks = rank_arms(per_seed)
    assert [ranks[k]["label"] for k in "abc"] == ["1", "2", "3"]
    diff = paired_difference(per_seed["a"], per_seed["b"])
    assert diff["distinct"] and diff["mean"] == pytest.approx(0.2067, abs=1e-4) and diff["n"] == 3


def test_a_difference_within_the_seed_spread_is_a_tie() -> None:
    a, b = [0.80, 0.85, 0.78], [0.82, 0.80, 0.80]  # d = (-0.02, 0.05, -0.02): mean 0.0033, sd 0.0404
    diff = paired_difference(a, b)
    assert not diff["distinct"]
    assert diff["half_width"] == pytest.approx(4.302653 * np.std([-0.02, 0.05, -0.02], ddof=1) / np.sqrt(3))
    ranks = rank_arms({"a": a, "b": b, "low": [0.5, 0.51, 0.52]})
    assert ranks["a"]["label"] == ranks["b"]["label"] == "=1" and ranks["low"]["label"] == "3"


def test_a_constant_offset_is_distinct_even_when_small() -> None:
    # the same +0.01 on every seed: sd of the paired differences is 0, so it is a real (paired) difference
    diff = paired_difference([0.81, 0.71, 0.91], [0.80, 0.70, 0.90])
    assert diff["distinct"] and diff["mean"] > 0


def test_gain_sign_and_one_seed_ties_everything() -> None:
    worse = paired_difference([0.60, 0.61, 0.59], [0.80, 0.82, 0.81])
    assert worse["distinct"] and worse["mean"] < 0
    ranks = rank_arms({"a": [0.9], "b": [0.5]})
    assert ranks["a"]["label"] == ranks["b"]["label"] == "=1"
    assert not paired_difference([0.9], [0.5])["distinct"]


def test_ties_are_ranked_again_below_the_first_group() -> None:
    per_seed = {"a": [0.95, 0.96, 0.94], "b": [0.80, 0.82, 0.79], "c": [0.81, 0.80, 0.80], "d": [0.3, 0.31, 0.32]}
    ranks = rank_arms(per_seed)
    assert ranks["a"]["label"] == "1" and ranks["b"]["label"] == ranks["c"]["label"] == "=2"
    assert ranks["d"]["label"] == "4"


def test_fraction_lists() -> None:
    assert parse_fractions("1,0.01,0.1,0.1") == (0.01, 0.1, 1.0)
    for bad, msg in (("0.01,abc", "'abc' is not a number"), ("0", "outside"), ("1.5", "outside"),
                     ("0.1,,1", "comma-separated"), ("nan", "outside")):
        with pytest.raises(CompareError, match=msg):
            parse_fractions(bad)


def test_data_name() -> None:
    assert data_name("../shared/data/fundus/hrf/labels.csv") == "hrf-labels"
    assert data_name("/x/my data/") == "my_data"


# --- tiny data and candidates ----------------------------------------------------------------------------
def _class_folders(root: Path, n: int = 6) -> Path:
    return class_folders(root, n=n, bases=(70, 180), noise=40.0, shape=(24, 28))


@pytest.fixture
def two_tiny(register_weights: Callable[..., Path]) -> dict[str, Path]:
    """resnet18.tiny_a and resnet18.tiny_b: random weights at 32 px (two checkpoints of one architecture)."""
    paths = {}
    for i, tag in enumerate(("tiny_a", "tiny_b")):
        torch.manual_seed(10 + i)
        paths[f"resnet18.{tag}"] = register_weights(f"resnet18.{tag}", zoo.create_model("resnet18").state_dict(),
                                                    input_size=TINY)
    return paths


def _config(data: Path, out: Path, **kw: Any) -> CompareConfig:
    base: dict[str, Any] = dict(pattern="resnet18.tiny_*", data=str(data), out=str(out), seeds=2, test_fraction=0.34)
    return CompareConfig(**{**base, **kw})


def _values(results: dict[str, Any]) -> dict[Any, Any]:
    """Everything but the timings: per-seed metrics, ranks, gains, per fraction and arm."""
    return {(t["label_fraction"], r["arm"]): (r["per_seed"], r["rank_label"], r["gain"] and r["gain"]["per_seed"])
            for t in results["results"] for r in t["rows"]}


def test_compare_pairs_every_arm_and_writes_json_markdown_and_plot(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data")
    res = run_compare(_config(data, tmp_path / "out", label_fractions=(0.2, 1.0)))
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {RUN_NAME, JSON_NAME, MD_NAME, PNG_NAME, "cells"}
    saved = json.loads((out / JSON_NAME).read_text())
    assert saved["format"] == "zoo-compare/1" and saved["command"].startswith("zoo compare 'resnet18.tiny_*' --data")
    arms = {a["key"]: a for a in saved["arms"]}
    assert [a["label"] for a in saved["arms"]] == ["resnet18.tiny_a", "resnet18.tiny_b", "resnet18 (random init)"]
    for name, path in two_tiny.items():
        assert arms[name]["sha256"] == sha256_file(path) and arms[name]["baseline"].startswith("random:resnet18:")
    assert saved["data"]["counts"] == {"bright": 6, "dark": 6} and saved["machine"]["cpu"]
    assert saved["splits"][0]["n_test"] == 4 and saved["splits"][0]["test_counts"] == {"bright": 2, "dark": 2}
    for table in saved["results"]:
        rows = table["rows"]
        assert {r["rank_label"] for r in rows} <= {"1", "2", "3", "=1", "=2"}
        # paired: every arm of a seed saw the same labelled subset and test set
        assert len({tuple(r["pairing"]) for r in rows}) == 1 and len(set(rows[0]["pairing"])) == 2
        for r in rows:
            assert len(r["per_seed"]["auc"]) == 2 and r["cost"]["params"] == 11176512
            assert r["cost"]["input_size"] == list(TINY) and r["cost"]["wall_s_per_seed"] > 0
    low = saved["results"][0]
    assert low["label_fraction"] == 0.2 and low["rows"][0]["n_labelled"] == [2, 2]  # 0.2 x 4 per class -> 1 each
    assert low["note"] is None
    md = (out / MD_NAME).read_text()
    assert "| rank | start | AUC | gain over random init | ACC | s / seed | params | input |" in md
    assert "`resnet18 (random init)`" in md and "**0.2 of the training labels**" in md
    with Image.open(out / PNG_NAME) as im:
        assert im.size[0] > 300 and im.info["Source"] == saved["command"]
    assert res["results"] == saved["results"]


def test_fraction_raised_to_one_per_class_is_said(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data")
    # through the package face, as a user would (a string of fractions is accepted too)
    res = zoo.compare("resnet18.tiny_a", data, out=str(tmp_path / "out"), label_fractions="0.01", seeds=1,
                      test_fraction=0.34)
    assert "--label-fractions 0.01 --seeds 1" in res["command"]
    table = res["results"][0]
    assert table["rows"][0]["n_labelled"] == [2] and "raised to 2" in table["note"]
    assert "fraction raised" in (tmp_path / "out" / MD_NAME).read_text()


def test_resume_after_a_kill_continues_with_the_same_results(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data")
    full = run_compare(_config(data, tmp_path / "full"))

    def kill(record: dict[str, Any]) -> None:
        raise KeyboardInterrupt  # what Ctrl-C (or a kill between two cells) leaves behind

    with pytest.raises(KeyboardInterrupt):
        run_compare(_config(data, tmp_path / "cut"), on_cell=kill)
    assert len(list((tmp_path / "cut" / "cells").rglob("*.json"))) == 1
    assert not (tmp_path / "cut" / JSON_NAME).exists()
    computed: list[dict[str, Any]] = []
    resumed = run_compare(_config(data, tmp_path / "cut"), on_cell=computed.append)
    assert len(computed) == 3 * 2 - 1  # 3 arms x 2 seeds, one already done
    assert _values(resumed) == _values(full)


def test_more_seeds_or_fractions_extend_a_comparison_reusing_its_cells(tmp_path: Path,
                                                                       two_tiny: dict[str, Path]) -> None:
    """The same comparison with more --seeds and another --label-fractions: the cells already there are kept,
    only the new ones are computed, and the results equal a comparison run from scratch with those settings."""
    data = _class_folders(tmp_path / "data")
    first = run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_a", seeds=1))
    cell = next((tmp_path / "out" / "cells").rglob("*.json"))
    before = cell.read_text()
    computed: list[dict[str, Any]] = []
    more = _config(data, tmp_path / "out", pattern="resnet18.tiny_a", seeds=2, label_fractions=(0.5, 1.0))
    extended = run_compare(more, on_cell=computed.append)
    assert len(computed) == 2 * (2 * 2 - 1)  # 2 arms x (2 fractions x 2 seeds, 1 of them already there)
    assert cell.read_text() == before  # kept, not recomputed
    assert ("--seeds 2" in extended["command"] and
            json.loads((tmp_path / "out" / RUN_NAME).read_text())["command"] == extended["command"])
    fresh = run_compare(_config(data, tmp_path / "fresh", pattern="resnet18.tiny_a", seeds=2,
                                label_fractions=(0.5, 1.0)))
    assert _values(extended) == _values(fresh)
    seed0 = {r["arm"]: r["per_seed"]["auc"][0] for r in extended["results"][1]["rows"]}  # fraction 1, seed 0
    assert seed0 == {r["arm"]: r["per_seed"]["auc"][0] for r in first["results"][0]["rows"]}


def test_another_comparison_in_the_same_out_is_refused_unless_overwrite(tmp_path: Path,
                                                                         two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data", n=3)
    run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_a", seeds=1))
    with pytest.raises(CompareError, match=r"holds another comparison \(`zoo compare resnet18.tiny_a .*--label-fr"
                                           r"actions 1 --seeds 1"):
        run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_b", seeds=1))
    with pytest.raises(CompareError, match="holds another comparison"):  # another split is another comparison
        run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_a", seeds=1, test_fraction=0.5))
    res = run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_b", seeds=1, overwrite=True))
    assert "resnet18.tiny_b" in [r["arm"] for r in res["results"][0]["rows"]]
    assert len(list((tmp_path / "out" / "cells").rglob("*.json"))) == 2  # the first run's cells are gone
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CompareError, match="not a zoo comparison"):
        run_compare(_config(data, tmp_path / "other", pattern="resnet18.tiny_a", seeds=1, overwrite=True))


def test_candidates_skip_what_cannot_run_and_name_why() -> None:
    arms, skipped = select_arms("*", 2, "classification", 3)
    reasons = {s["name"]: s["reason"] for s in skipped}
    assert "zoo convert --from pcrlv2-2d" in reasons["resnet18.pcrlv2_chest"]  # upstream, not converted here
    assert "segmentation network" in reasons["unet_resnet18.pcrl_kermany64"]
    assert "3D checkpoint" in reasons["unet3d_small.pcrl_ct32"]
    labels = [a.label for a in arms]
    assert "resnet18.swcl_fundus64" in labels and labels.count("resnet18 (random init)") == 1
    assert all(a.baseline == arms[-1].key for a in arms[:-1]) and arms[-1].kind == "random_init"
    seg, _ = select_arms("*", 2, "segmentation", 1, protocol="finetune")
    assert "unet_resnet18.pcrl_kermany64" in [a.key for a in seg]
    assert [a.label for a in seg if a.kind == "random_init"] == ["unet_resnet18 (random init)"]  # shared by both


def test_bad_patterns_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match=r"no checkpoint matches 'nothing\*'.*zoo list --pretrained"):
        select_arms("nothing*", 2, "classification", 2)
    with pytest.raises(CompareError, match="matches only 3D checkpoints .* but the data are 2D"):
        select_arms("unet3d_small.*", 2, "classification", 2)


def test_bad_data_is_one_clear_error(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    few = tmp_path / "few"
    for c, n in (("a", 3), ("b", 1)):
        (few / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(few / c / f"{i}.png")
    with pytest.raises(CompareError, match=r"class\(es\) with fewer than 2 samples \(b: 1\).*--test PATH"):
        run_compare(_config(few, tmp_path / "o1"))
    seg = _segmentation_data(tmp_path / "seg", n=3)
    with pytest.raises(CompareError, match="segmentation data: .*pass --protocol finetune"):
        run_compare(_config(seg, tmp_path / "o2"))
    data = _class_folders(tmp_path / "data", n=3)
    with pytest.raises(CompareError, match="drop --img-size"):
        run_compare(_config(data, tmp_path / "o3", img_size=64))


def _segmentation_data(root: Path, n: int = 4) -> Path:
    return image_mask_folders(root, sizes=[(44, 40 + 4 * i) for i in range(n)])


def test_segmentation_finetune_scores_dice_on_the_test_images(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    seg = _segmentation_data(tmp_path / "seg")
    res = run_compare(_config(seg, tmp_path / "out", pattern="resnet18.tiny_a", protocol="finetune", epochs=1,
                              batch_size=8, img_size=32, seeds=1, test_fraction=0.5))
    assert res["primary_metric"] == "dice" and res["metrics"] == ["dice"]
    rows = res["results"][0]["rows"]
    assert [r["label"] for r in rows if r["kind"] == "random_init"] == ["unet_resnet18 (random init)"]
    for r in rows:
        assert all(0.0 <= d <= 1.0 for d in r["per_seed"]["dice"]) and r["cost"]["input_size"] == [3, 32, 32]


def test_finetune_classification_protocol(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data", n=4)
    res = run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_a", protocol="finetune", epochs=1,
                              batch_size=4, test_fraction=0.25, seeds=1))
    cells = sorted((tmp_path / "out" / "cells").rglob("*.json"))
    assert len(cells) == 2 and all(json.loads(c.read_text())["epochs"] == 1 for c in cells)
    assert res["command"].endswith("--epochs 1 --batch-size 4 --out " + str(tmp_path / "out"))
    assert all(0.0 <= r["mean"]["auc"] <= 1.0 for r in res["results"][0]["rows"])


def test_an_interrupted_finetune_cell_continues_from_its_last_epoch(tmp_path: Path, two_tiny: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after epoch 1 of the first fine-tuning cell, the same command continues that cell from its saved
    state (epoch 2 only) and ends with the uninterrupted comparison's results; no state file is left."""
    import zoo.eval.finetune as ft

    data = _class_folders(tmp_path / "data", n=4)
    kw: dict[str, Any] = dict(pattern="resnet18.tiny_a", protocol="finetune", epochs=2, batch_size=4,
                              test_fraction=0.25, seeds=1)
    full = run_compare(_config(data, tmp_path / "full", **kw))
    save = ft._save_state

    def save_then_kill(path: Path, state: dict[str, Any]) -> None:
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_save_state", save_then_kill)
    with pytest.raises(KeyboardInterrupt):
        run_compare(_config(data, tmp_path / "cut", **kw))
    states = list((tmp_path / "cut" / "cells").rglob("*.state.pt"))
    assert len(states) == 1 and not list((tmp_path / "cut" / "cells").rglob("*.json"))
    epochs: list[int] = []
    monkeypatch.setattr(ft, "_save_state", lambda path, state: (epochs.append(state["epoch"]), save(path, state)))
    resumed = run_compare(_config(data, tmp_path / "cut", **kw))
    assert epochs == [2, 1, 2]  # the interrupted cell: epoch 2 only; then the other arm's cell from the start
    assert _values(resumed) == _values(full)
    assert not list((tmp_path / "cut" / "cells").rglob("*.state.pt"))


def test_3d_nifti_classification(tmp_path: Path, register_weights: Callable[..., Path]) -> None:
    torch.manual_seed(0)
    register_weights("unet3d.tiny", zoo.create_model("unet3d", width=4).state_dict(), arch_kwargs={"width": 4},
                     input_size=(1, 16, 16, 16), voxel_spacing=(2.0, 2.0, 2.0))
    nifti_csv(tmp_path)
    res = run_compare(_config(tmp_path / "l.csv", tmp_path / "out", pattern="unet3d.*", test_fraction=0.25, seeds=1))
    assert res["data"]["format"] == "nifti-csv" and res["data"]["spatial_dims"] == 3
    assert [a["label"] for a in res["arms"]] == ["unet3d.tiny", "unet3d (random init)"]
    skipped = {s["name"] for s in res["skipped"]}
    assert "unet3d.pcrlv2_luna" in skipped and "unet3d_small.pcrl_ct32" not in skipped
    assert res["results"][0]["rows"][0]["cost"]["input_size"] == [1, 16, 16, 16]


def test_multilabel_csv_linear(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{['a', 'b', 'a|b'][i % 3]}")
    (tmp_path / "l.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    res = run_compare(_config(tmp_path / "l.csv", tmp_path / "out", pattern="resnet18.tiny_a", test_fraction=0.34,
                              seeds=1))
    assert res["data"]["kind"] == "multilabel"
    cell = json.loads(next((tmp_path / "out" / "cells").rglob("*.json")).read_text())
    assert len(cell["auc_per_label"]) == 2 and 0.0 <= cell["acc"] <= 1.0


def test_given_test_set_is_the_same_for_every_seed(tmp_path: Path, two_tiny: dict[str, Path]) -> None:
    data = _class_folders(tmp_path / "data", n=4)
    test = _class_folders(tmp_path / "test", n=2)
    res = run_compare(_config(data, tmp_path / "out", pattern="resnet18.tiny_a", test=str(test)))
    assert [s["n_test"] for s in res["splits"]] == [4, 4] and [s["n_train"] for s in res["splits"]] == [8, 8]
    assert res["data"]["split"] == "given --test"
    with pytest.raises(CompareError, match="shares 8 file"):
        run_compare(_config(data, tmp_path / "o2", pattern="resnet18.tiny_a", test=str(data)))
