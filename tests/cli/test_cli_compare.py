"""`zoo compare` and `zoo eval NAME --data`: the table on stdout, the files, and one error line (exit 2) for
every bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests._cli import run_cli

_run = run_cli


def _folders(root: Path, n: int = 3, classes: tuple[str, ...] = ("dark", "bright")) -> Path:
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(60 + 120 * k + rng.normal(0, 30, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def _one_error_line(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def tiny(register_weights: Callable[..., Path]) -> str:
    torch.manual_seed(1)
    register_weights("resnet18.tiny_a", zoo.create_model("resnet18").state_dict(), input_size=(3, 32, 32))
    return "resnet18.tiny_a"


def test_eval_data_prints_the_table_and_writes_the_results(tmp_path: Path, tiny: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = _folders(tmp_path / "my data")
    rc, out, err = _run(["eval", tiny, "--data", str(data), "--seeds", "1", "--test-fraction", "0.34",
                         "--out-dir", str(tmp_path / "res")], capsys)
    assert rc == 0, err
    run = tmp_path / "res" / "resnet18.tiny_a__my_data__linear__100pct"
    saved = json.loads((run / "compare.json").read_text())
    assert saved["command"].startswith("zoo eval resnet18.tiny_a --data") and len(saved["arms"]) == 2
    assert "| rank | start | AUC |" in out and "`resnet18 (random init)`" in out and str(run / "compare.json") in out
    assert "resnet18.tiny_a, 1 of the labels, seed 0: AUC" in err  # progress, one line per cell
    assert (run / "compare.png").is_file() and (run / "compare.md").read_text().count("| =1 |") == 2  # 1 seed: ties


BAD = {
    "unknown pattern": (["compare", "nothing*"], "no checkpoint matches 'nothing*'", "zoo list --pretrained"),
    "no candidate of the data's dimension": (["compare", "unet3d_small.*"], "matches only 3D checkpoints",
                                             "pick 2D ones"),
    "a fraction that is not a number": (["compare", "resnet18.*", "--label-fractions", "0.01,abc"],
                                        "'abc' is not a number", "0.01,0.1,1"),
    "a zero fraction": (["compare", "resnet18.*", "--label-fractions", "0"], "outside (0, 1]"),
    "a fraction above 1": (["compare", "resnet18.*", "--label-fractions", "0.1,2"], "outside (0, 1]"),
    "test fraction 1": (["compare", "resnet18.*", "--test-fraction", "1"], "must be in (0, 1)"),
    "eval: --task option with --data": (["eval", "resnet18.tiny_a", "--robustness"], "--robustness", "--task"),
    "eval: unknown model": (["eval", "resnet18.nope", "--seeds", "1"], "Unknown tag 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_one_error_line(case: str, tmp_path: Path, tiny: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv, *needles = BAD[case]
    data = _folders(tmp_path / "data")
    rc, _, err = _run([*argv, "--data", str(data), "--out" if argv[0] == "compare" else "--out-dir",
                       str(tmp_path / "out")], capsys)
    _one_error_line(rc, err, *needles)


def test_data_errors_are_one_error_line(tmp_path: Path, tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    few = _folders(tmp_path / "few", n=1)
    rc, _, err = _run(["compare", tiny, "--data", str(few), "--out", str(tmp_path / "o1")], capsys)
    _one_error_line(rc, err, "at least 3", "--test PATH")
    seg = tmp_path / "seg"
    for d in ("images", "masks"):
        (seg / d).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(seg / d / f"{i}.png")
    rc, _, err = _run(["compare", tiny, "--data", str(seg), "--out", str(tmp_path / "o2")], capsys)
    _one_error_line(rc, err, "segmentation data", "--protocol finetune")
    data = _folders(tmp_path / "data")
    (tmp_path / "o3").mkdir()
    (tmp_path / "o3" / "compare-run.json").write_text(json.dumps({"command": "zoo compare '*' --data x",
                                                                  "identity": {"other": 1}}))
    rc, _, err = _run(["compare", tiny, "--data", str(data), "--out", str(tmp_path / "o3")], capsys)
    _one_error_line(rc, err, "holds another comparison (`zoo compare '*' --data x`)", "--overwrite")
    rc, _, err = _run(["eval", tiny, "--task", "retinamnist", "--test", str(data)], capsys)
    _one_error_line(rc, err, "--test", "--data")
    rc, _, err = _run(["eval", tiny], capsys)
    _one_error_line(rc, err, "one of the arguments --task --data is required")
