"""Every bad `zoo` invocation ends in one `error:` line naming the fix and exit code 2, never a traceback.

One case per invocation that used to end in a traceback (or a silent wrong result); ``-v`` shows the
traceback. The command runs in-process (``zoo.cli.main``); argparse's own refusals raise SystemExit(2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._cli import run_cli
from zoo.cli import main
from zoo.meta.registry import get_pretrained_cfg

REPO = Path(__file__).resolve().parents[2]
CKPT = "resnet18.pcrl_kermany64"  # a small registered checkpoint shipped in weights/


_run = run_cli


def _corrupt_mirror(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror copy of CKPT with one byte changed: the registered sha256 no longer matches."""
    cfg = get_pretrained_cfg(CKPT)
    data = bytearray((REPO / "weights" / cfg.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    mirror = tmp / "mirror"
    mirror.mkdir()
    (mirror / cfg.file).write_bytes(bytes(data))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(mirror))


def _files(tmp: Path) -> None:
    (tmp / "file").write_text("not a directory\n")
    (tmp / "dir").mkdir()
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "broken.json").write_text("{bad")
    (tmp / "partial.json").write_text(json.dumps({"format": "zoo-eval/1", "runs": {"pretrained": 1}}))
    (tmp / "bad.safetensors").write_bytes(b"garbage, not a safetensors header")
    (tmp / "m_empty").mkdir()
    (tmp / "m_bad").mkdir()
    (tmp / "m_bad" / "manifest.json").write_text("{bad")
    (tmp / "m_list").mkdir()
    (tmp / "m_list" / "manifest.json").write_text("[]")


EVAL = ["eval", CKPT, "--task", "kermany_pneumonia"]
GRADCAM = ["gradcam", CKPT, "--task", "kermany_pneumonia"]
PRETRAIN = ["pretrain", "--method", "simclr", "--arch", "resnet18"]
NO_SETUP: Callable[[Path, pytest.MonkeyPatch], None] = lambda tmp, mp: None  # noqa: E731

# id -> (argv with {t} = a temporary directory, extra set-up, a phrase of the message that names the fix)
CASES: dict[str, tuple[list[str], Callable[[Path, pytest.MonkeyPatch], None], str]] = {
    "verify --mirror absent": (["verify", "--mirror", "{t}/absent"], NO_SETUP, "does not exist"),
    "verify --mirror no manifest": (["verify", "--mirror", "{t}/m_empty"], NO_SETUP, "recreate it with `zoo mirror"),
    "verify --mirror bad manifest": (["verify", "--mirror", "{t}/m_bad"], NO_SETUP, "not valid JSON"),
    "verify --mirror list manifest": (["verify", "--mirror", "{t}/m_list"], NO_SETUP, "not a zoo mirror manifest"),
    "verify --mirror a file": (["verify", "--mirror", "{t}/file"], NO_SETUP, "give a directory"),
    "mirror --to a file": (["mirror", CKPT, "--to", "{t}/file"], NO_SETUP, "is a file, not a directory"),
    "mirror --to under a file": (["mirror", CKPT, "--to", "{t}/file/sub"], NO_SETUP, "is a file, not a directory"),
    "mirror explicit official": (["mirror", "resnet18.pcrlv2_chest", "--to", "{t}/m"], NO_SETUP, "zoo convert --from"),
    "download explicit official": (["download", "resnet18.pcrlv2_chest"], NO_SETUP, "zoo convert --from pcrlv2-2d"),
    "report a JSON list": (["report", "{t}/list.json"], NO_SETUP, "give the JSON files `zoo eval` writes"),
    "report a directory": (["report", "{t}/dir"], NO_SETUP, "is a directory; give a file"),
    "report not JSON": (["report", "{t}/broken.json"], NO_SETUP, "not valid JSON"),
    "report incomplete results": (["report", "{t}/partial.json"], NO_SETUP, "write it again with `zoo eval`"),
    "report absent": (["report", "{t}/absent.json"], NO_SETUP, "does not exist"),
    "pretrain --spacing abc": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/run", "--spacing", "abc"], NO_SETUP,
                               "or 'native' expected"),
    "pretrain --spacing two values": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/run", "--spacing", "1", "1"],
                                      NO_SETUP, "needs 3 positive values"),
    "pretrain --spacing negative": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/run", "--spacing", "1", "-1", "1"],
                                    NO_SETUP, "positive number of mm"),
    "pretrain --out a file": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/file"], NO_SETUP, "is a file"),
    "pretrain --data absent": ([*PRETRAIN, "--data", "{t}/absent", "--out", "{t}/run"], NO_SETUP, "does not exist"),
    "pretrain --epochs 0": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/run", "--epochs", "0"], NO_SETUP,
                            "positive integer"),
    "pretrain --lr nan": ([*PRETRAIN, "--data", "{t}/dir", "--out", "{t}/run", "--lr", "nan"], NO_SETUP,
                          "finite number"),
    "eval --threads -1": ([*EVAL, "--threads", "-1"], NO_SETUP, "positive integer"),
    "eval --label-fraction 0": ([*EVAL, "--label-fraction", "0"], NO_SETUP, "must be in (0, 1]"),
    "eval --seeds x": ([*EVAL, "--seeds", "x"], NO_SETUP, "an integer expected"),
    "eval malformed --checkpoint-path": ([*EVAL, "--checkpoint-path", "{t}/bad.safetensors"], NO_SETUP,
                                         "download or convert it again"),
    "eval absent --checkpoint-path": ([*EVAL, "--checkpoint-path", "{t}/absent.safetensors"], NO_SETUP,
                                      "does not exist"),
    "eval corrupt registered weights": (EVAL, _corrupt_mirror, "copy it again"),
    "eval --out a directory": ([*EVAL, "--out", "{t}/dir"], NO_SETUP, "is a directory"),
    "gradcam --n-images 0": ([*GRADCAM, "-o", "{t}/x.png", "--n-images", "0"], NO_SETUP, "positive integer"),
    "gradcam malformed --checkpoint-path": ([*GRADCAM, "-o", "{t}/x.png", "--checkpoint-path", "{t}/bad.safetensors"],
                                            NO_SETUP, "download or convert it again"),
    "gradcam corrupt registered weights": ([*GRADCAM, "-o", "{t}/x.png"], _corrupt_mirror, "copy it again"),
    "gradcam -o a directory": ([*GRADCAM, "-o", "{t}/dir"], NO_SETUP, "is a directory"),
    "convert -o a directory": (["convert", "--from", "genesis", "{t}/bad.safetensors", "-o", "{t}/dir"], NO_SETUP,
                               "is a directory"),
    "convert absent file": (["convert", "--from", "genesis", "{t}/absent.pt"], NO_SETUP, "does not exist"),
    "export --opset 1": (["export", CKPT, "-o", "{t}/x.onnx", "--opset", "1"], NO_SETUP, "pick one in that range"),
    "export --opset 999": (["export", CKPT, "-o", "{t}/x.onnx", "--opset", "999"], NO_SETUP, "pick one in that range"),
    "export --opset -3": (["export", CKPT, "-o", "{t}/x.onnx", "--opset", "-3"], NO_SETUP, "positive integer"),
    "export -o a directory": (["export", CKPT, "-o", "{t}/dir"], NO_SETUP, "is a directory"),
    "export --sample absent": (["export", CKPT, "-o", "{t}/x.onnx", "--sample", "{t}/absent.png"], NO_SETUP,
                               "does not exist"),
    "verify --mirror empty path": (["verify", CKPT, "--mirror", ""], NO_SETUP, "got an empty string"),
    "export --calibration empty path": (["export", CKPT, "-o", "{t}/x.onnx", "--calibration", ""], NO_SETUP,
                                        "got an empty string"),
    "export --calibration without --int8": (["export", CKPT, "-o", "{t}/x.onnx", "--calibration", "{t}/dir"],
                                            NO_SETUP, "add --int8"),
    "export --input-size 0": (["export", CKPT, "-o", "{t}/x.onnx", "--input-size", "0"], NO_SETUP, "positive integer"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_invocation_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    argv, setup, fix = CASES[case]
    _files(tmp_path)
    setup(tmp_path, monkeypatch)
    rc, _, err = _run([a.replace("{t}", str(tmp_path)) for a in argv], capsys)
    assert rc == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("zoo"), err
    assert fix in errors[0], err


def test_verbose_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _files(tmp_path)
    rc, _, err = _run(["-v", "verify", "--mirror", str(tmp_path / "m_bad")], capsys)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("zoo: error:")


def test_unexpected_exceptions_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is not a user error: it is not turned into a one-line message."""
    from zoo.cli import models

    def boom(_args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(models, "_cmd_list", boom)
    with pytest.raises(ZeroDivisionError):
        main(["list"])


def test_mirror_pattern_skips_entries_to_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`zoo mirror "*pcrl*"` (the README's example) skips the official entries with a note and mirrors the rest."""
    to = tmp_path / "mirror"
    rc, out, err = _run(["mirror", "*pcrl*", "--to", str(to)], capsys)
    assert rc == 0, err
    assert "SKIPPED  resnet18.pcrlv2_chest" in out and "zoo convert --from pcrlv2-2d" in out
    manifest = json.loads((to / "manifest.json").read_text())
    mirrored = set(manifest["files"])  # one file may serve several names
    assert {get_pretrained_cfg(n).file for n in (CKPT, "resnet18.pcrlv2_kermany64")} <= mirrored
    assert get_pretrained_cfg("resnet18.pcrlv2_chest").file not in mirrored
    assert (to / "SHA256SUMS").read_text().count("\n") == len(manifest["files"])
    rc, out, err = _run(["verify", "--mirror", str(to)], capsys)
    assert rc == 0 and "corrupt" not in out, out + err


def test_download_pattern_skips_entries_to_convert(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["download", "*pcrlv2*"], capsys)
    assert rc == 0, out + err
    assert "SKIPPED  unet3d.pcrlv2_luna" in out and "zoo convert --from pcrlv2-3d" in out
    assert "OK       resnet18.pcrlv2_kermany64" in out


@pytest.mark.slow
def test_export_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No data under $ZOO_DATA_DIR: verification names --sample / --no-verify; --no-verify exports."""
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "no-data"))
    out = tmp_path / "x.onnx"
    rc, _, err = _run(["export", CKPT, "-o", str(out), "--input-size", "32"], capsys)
    assert rc == 2 and "--sample FILE" in err and "--no-verify" in err and not out.exists(), err
    rc, text, err = _run(["export", CKPT, "-o", str(out), "--input-size", "32", "--no-verify"], capsys)
    assert rc == 0, err
    assert out.is_file() and "not verified" in text


def test_example_inputs_are_synthetic_without_verification() -> None:
    import numpy as np

    from zoo.export.onnx import _example_inputs

    cfg = get_pretrained_cfg(CKPT)
    a, desc = _example_inputs(cfg, (3, 16, 16), 2, verify=False, sample=None)
    b, _ = _example_inputs(cfg, (3, 16, 16), 2, verify=False, sample=None)
    assert a.shape == (2, 3, 16, 16) and a.dtype == np.float32 and "synthetic" in desc
    np.testing.assert_array_equal(a, b)  # seeded
