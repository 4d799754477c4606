"""zoo's own checkpoints in weights/: registered, hashed, measured, documented, within the size limits.

The registry ``metrics`` of a shipped checkpoint, and its MODEL_CARD.md results block, must be exactly what
``zoo report`` makes of its results files in ``results/`` (written by ``zoo eval`` on that very file) and of its
Grad-CAM figure (drawn from that very file), so no number is typed by hand. Its pretraining record
(``results/pretraining/NAME.*``, written by ``scripts/ship_weights.py``) holds the run's command, every step's
losses and the loss curves, and says whether it is the run that made the shipped file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors import safe_open

import zoo
from zoo._io import sha256_file
from zoo.hub import repo_weights_dir
from zoo.meta.registry import resolve_name
from zoo.report import (
    ANCHORS_BLOCK,
    OVERVIEW_BLOCK,
    card_block,
    checkpoint_overview_markdown,
    gradcam_info,
    load_pretrain_log,
    model_card_results,
    published_anchors_markdown,
    results_to_metrics,
)

ROOT = Path(__file__).resolve().parents[2]
# every network.tag that loads a file in weights/; a file may load under several names (a U-Net file: the encoder
# network and the encoder-decoder), measured and documented under the first (its results files' name)
LOADABLE = sorted(n for n in zoo.list_pretrained() if zoo.get_pretrained_cfg(n).file
                  and (repo_weights_dir() / zoo.get_pretrained_cfg(n).file).is_file())
SHIPPED = sorted(n for n in LOADABLE if any((ROOT / "results").glob(f"{n}__*.json")))


def test_every_file_in_weights_is_registered_and_small() -> None:
    files = sorted(p.name for p in repo_weights_dir().iterdir() if not p.name.startswith("."))
    assert all(f.endswith(".safetensors") for f in files), files
    assert sorted(zoo.get_pretrained_cfg(n).file for n in SHIPPED) == files  # one measured name per file
    assert sorted({zoo.get_pretrained_cfg(n).file for n in LOADABLE}) == files
    sizes = [p.stat().st_size for p in repo_weights_dir().glob("*.safetensors")]
    assert max(sizes, default=0) < 50e6 and sum(sizes) < 200e6


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_is_hashed_measured_and_documented(name: str) -> None:
    cfg = zoo.get_pretrained_cfg(name)
    path = repo_weights_dir() / cfg.file
    assert sha256_file(path) == cfg.sha256 and path.stat().st_size == cfg.file_size
    with safe_open(str(path), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes <= {"F16", "F32", "I64"}, dtypes
    results = sorted((ROOT / "results").glob(f"{name}__*.json"))
    assert results, f"no results/{name}__*.json: measure the checkpoint with `zoo eval {name} ... --out results/...`"
    assert cfg.metrics == results_to_metrics(results), "registry metrics differ from `zoo report --metrics`"
    assert all(r["checkpoint"]["sha256"] == cfg.sha256 for r in map(_load, results))
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert re.search(rf"^## {re.escape(name)}$", card, re.M), f"MODEL_CARD.md has no '## {name}' section"


@pytest.mark.parametrize("name", sorted(set(LOADABLE) - set(SHIPPED)))
def test_other_names_of_a_shipped_file_share_its_record(name: str) -> None:
    """``unet_resnet18.pcrl_kermany64`` loads the file of ``resnet18.pcrl_kermany64``: same bytes, same metrics."""
    cfg = zoo.get_pretrained_cfg(name)
    measured = [n for n in SHIPPED if zoo.get_pretrained_cfg(n).file == cfg.file]
    assert len(measured) == 1, f"{cfg.file}: no results under any of its names"
    first = zoo.get_pretrained_cfg(measured[0])
    assert (cfg.sha256, cfg.file_size, cfg.metrics) == (first.sha256, first.file_size, first.metrics)
    assert name in _card_section(measured[0]), f"MODEL_CARD.md's {measured[0]} section must name {name}"


def test_model_card_overview_and_anchors_are_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's first table and its published anchors (once per task) are what `zoo report` makes of them."""
    monkeypatch.chdir(ROOT)
    assert sorted(json.loads(Path("zoo/meta/catalog/reference_metrics.json").read_text())) == SHIPPED
    overview = checkpoint_overview_markdown(SHIPPED)
    assert card_block("MODEL_CARD.md", OVERVIEW_BLOCK) == overview.strip("\n"), (
        "MODEL_CARD.md's overview table is stale: run the last step of scripts/evaluate_reference.sh")
    for default in {zoo.get_pretrained_cfg(n).name for n in zoo.list_models() if zoo.get_pretrained_cfg(n).tag}:
        assert f"| {default} (this one) |" in overview or default not in overview
    files = sorted(p for n in SHIPPED for p in Path("results").glob(f"{n}__*.json"))
    assert card_block("MODEL_CARD.md", ANCHORS_BLOCK) == published_anchors_markdown(files).strip("\n")
    card = Path("MODEL_CARD.md").read_text()
    for title in re.findall(r"^### (Published anchors on the \S+ test split)$", card, re.M):
        assert card.count(f"### {title}\n") == 1, f"{title} appears more than once"


@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_numbers_are_the_results_files(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's results block is what `zoo report` makes of the results files, plot and Grad-CAM figure."""
    monkeypatch.chdir(ROOT)  # the card links repo-relative paths
    results = sorted(Path("results").glob(f"{name}__*.json"))
    plot, cam = Path(f"results/{name}__label_fraction.png"), Path(f"results/{name}__gradcam.png")
    assert plot.is_file(), f"no {plot}: run `bash scripts/evaluate_reference.sh {name}`"
    assert cam.is_file(), f"no {cam}: run `bash scripts/evaluate_reference.sh {name}`"
    assert gradcam_info(cam)[1] == zoo.get_pretrained_cfg(name).sha256, f"{cam} shows other weights"
    expected = model_card_results(results, plot_path=str(plot), gradcam_path=str(cam)).strip("\n")
    assert card_block("MODEL_CARD.md", name) == expected, (
        f"MODEL_CARD.md's block of {name} is stale: `zoo report results/{name}__*.json --plot {plot} "
        f"--gradcam {cam} --card MODEL_CARD.md`")


@pytest.mark.parametrize("name", SHIPPED)
def test_pretraining_record(name: str) -> None:
    """The run's command, its loss at every step and its loss curves, tied to the shipped file by sha256."""
    record_path = ROOT / "results" / "pretraining" / f"{name}.json"
    section = _card_section(name)
    assert record_path.is_file(), f"no {record_path}: `scripts/ship_weights.py RUN {name} [--record-only]`"
    record = _load(record_path)
    steps = load_pretrain_log(record_path.with_suffix(".log.jsonl.gz"))
    assert len(steps) == record["summary"]["steps"] == record["total_steps"]
    last = [s["loss"] for s in steps[-20:]]  # the run's final_loss: the mean of its last 20 steps
    assert sum(last) / len(last) == pytest.approx(record["summary"]["final_loss"], abs=1e-6)
    cfg = zoo.get_pretrained_cfg(name)
    with safe_open(str(repo_weights_dir() / cfg.file), "pt") as f:
        assert record["shipped_source_sha256"] == f.metadata()["source_sha256"]
    assert record["same_run_as_shipped"] == (record["source_sha256"] == record["shipped_source_sha256"])
    run = record["config"]
    assert f"pretrain_reference.sh {Path(run['out']).name} " in cfg.command
    arch = resolve_name(run["arch"], warn=False).split(".")[0]  # a run of zoo 0.1 recorded its old name
    for flag, value in (("method", run["method"]), ("arch", arch), ("seed", run["seed"]),
                        ("epochs", run["epochs"]), ("batch-size", run["batch_size"])):
        assert re.search(rf"--{flag} {value}\b", cfg.command), (flag, value, cfg.command)
    png = f"results/pretraining/{name}.loss.png"
    assert (ROOT / png).is_file() and png in section, f"MODEL_CARD.md's {name} section must show {png}"
    if not record["same_run_as_shipped"]:  # the curve of a re-run must be called one
        assert "re-run" in section.split(png)[0].rsplit("- **", 1)[1], f"{name}: say the loss curve is a re-run's"


RERUNS = sorted((ROOT / "results" / "reruns").glob("*.rerun__*.json"))


@pytest.mark.parametrize("path", RERUNS, ids=lambda p: p.name)
def test_rerun_results_are_the_recorded_reruns(path: Path) -> None:
    """A re-run's downstream results (``results/reruns/``) score the export its pretraining record describes,
    and the card quotes their AUC next to the shipped file's."""
    name = path.name.split(".rerun__")[0]
    record, result = _load(ROOT / "results" / "pretraining" / f"{name}.json"), _load(path)
    assert not record["same_run_as_shipped"], f"{name}'s re-run reproduced the shipped file: {path} is redundant"
    assert result["checkpoint"]["sha256"] == record["source_sha256"], f"{path} scores another file than the re-run's"
    assert not result["checkpoint"]["registered"] and result["protocol"] == "linear"
    auc = result["runs"]["pretrained"]["mean"]["auc"]
    section = _card_section(name)
    assert f"results/reruns/{name}.rerun__" in section and f"{auc:.3f}" in section, (
        f"MODEL_CARD.md's {name} section must quote {path.name} (AUC {auc:.3f})")


def _card_section(name: str) -> str:
    card = (ROOT / "MODEL_CARD.md").read_text()
    start = card.index(f"\n## {name}\n")
    end = card.find("\n## ", start + 1)
    return card[start:end if end > 0 else None]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())
