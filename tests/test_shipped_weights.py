"""zoo's own checkpoints in weights/: registered, hashed, measured, documented, within the size limits.

The registry ``metrics`` of a shipped checkpoint, and its MODEL_CARD.md results block, must be exactly what
``zoo report`` makes of its results files in ``results/`` (written by ``zoo eval`` on that very file) and of its
Grad-CAM figure (drawn from that very file), so no number is typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from safetensors import safe_open

import zoo
from zoo._hub import repo_weights_dir, sha256_file
from zoo.train.report import card_block, gradcam_info, model_card_results, results_to_metrics

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(n for n in zoo.list_pretrained() if zoo.get_pretrained_cfg(n).file
                 and (repo_weights_dir() / zoo.get_pretrained_cfg(n).file).is_file())


def test_every_file_in_weights_is_registered_and_small() -> None:
    files = sorted(p.name for p in repo_weights_dir().iterdir() if not p.name.startswith("."))
    assert all(f.endswith(".safetensors") for f in files), files
    assert sorted(zoo.get_pretrained_cfg(n).file for n in SHIPPED) == files
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


def _load(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
