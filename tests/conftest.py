"""Shared fixtures: every test runs offline, with temporary caches, on one thread.

The variables below are also set when this file is imported, before anything imports
huggingface_hub (which reads them once, at import): a stray request goes to the discard port.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo._io import sha256_file
from zoo.meta import registry as _registry

REPO = Path(__file__).resolve().parents[1]

_SESSION = Path(tempfile.mkdtemp(prefix="zoo-tests-"))
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": str(_SESSION / "hf"),
    "HF_ENDPOINT": "http://127.0.0.1:9",
    "ZOO_CACHE_DIR": str(_SESSION / "zoo"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
})
for _var in ("ZOO_WEIGHTS_DIR", "HF_HUB_CACHE", "HF_TOKEN"):
    os.environ.pop(_var, None)

torch.set_num_threads(1)


def require_data(*parts: str) -> Path:
    """The real data at ``data_root()/parts``, or skip the test naming the path and ``ZOO_DATA_DIR``.

    The one way tests handle missing data: call it in a test or fixture (``xrays = require_data("cxr",
    "kermany", "train")``), or use :func:`needs_data` as a module or test mark.
    """
    from zoo.data.paths import data_root

    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path}; set ZOO_DATA_DIR to the shared data directory "
                     f"(now {os.environ.get('ZOO_DATA_DIR', 'unset')})")
    return path


def needs_data(*parts: str) -> pytest.MarkDecorator:
    """A skip mark for tests reading ``data_root()/parts`` (the message names the path and ``ZOO_DATA_DIR``)."""
    from zoo.data.paths import data_root

    path = data_root().joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path}; set ZOO_DATA_DIR to the "
                              f"shared data directory (now {os.environ.get('ZOO_DATA_DIR', 'unset')})")


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state: random-weight models (e.g. int8 agreement) are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(base / "zoo-cache"))
    monkeypatch.setenv("TORCH_HOME", str(base / "torch"))
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)


@pytest.fixture
def register_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Save a model's weights to a temporary mirror and register them as ``arch.tag``.

    Returns a function ``(name, state_dict, **cfg_fields) -> path``; entries are removed afterwards.
    """
    from safetensors.torch import save_file

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(mirror))
    added: list[str] = []

    def register(name: str, state_dict: dict[str, torch.Tensor], **fields: Any) -> Path:
        arch, tag = name.split(".")
        path = mirror / f"{arch}.{tag}.safetensors"
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
        defaults: dict[str, Any] = dict(
            file=path.name, sha256=sha256_file(path), file_size=path.stat().st_size,
            method="test", pretrain_data="random", modality="none", license_weights="Apache-2.0",
            license_data="none", command="pytest", metrics={"none": 0.0}, verified=True,
        )
        _registry.register_pretrained(name, **{**defaults, **fields})
        added.append(name)
        return path

    yield register
    for name in added:
        arch, tag = name.split(".")
        _registry._archs[arch].tags.pop(tag, None)


def small_input(name: str, batch: int = 2, in_chans: int | None = None) -> torch.Tensor:
    """A random input of the smallest size every model family accepts."""
    cfg = _registry.get_pretrained_cfg(name)
    c = cfg.in_chans if in_chans is None else in_chans
    spatial = (32, 32) if cfg.spatial_dims == 2 else (16, 16, 16)
    return torch.randn(batch, c, *spatial, generator=torch.Generator().manual_seed(0))


def train_steps(
    method: Any, x: torch.Tensor | dict[str, torch.Tensor], steps: int, seed: int = 0, lr: float = 1e-3
) -> list[dict[str, float]]:
    """Adam steps of an SSL method on one fixed batch (a tensor, or a dict batch of a method's own dataset);
    the loss terms of every step."""
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        out = method(x, g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_after_step(step, steps)
        log.append({k: float(v.detach()) for k, v in out.items()})
    return log


# --- the slow tests ------------------------------------------------------------------------------------
# Every test that took >= 3.4 s on a quiet 2-core AMD EPYC (AVX2) or >= 2.1 s on a quiet 2-core Xeon (AVX-512, AMX)
# (`pytest -n 2 -m "not slow" --durations=80`),
# marked `slow` here in one place: the README's test command skips them (-m "not slow") and .ci/run runs them
# after it. Tests marked with @pytest.mark.slow in their own file are slow too.
SLOW = frozenset({
    "tests/convert/test_convert.py::test_convert_official_layout[genesis]",
    "tests/convert/test_convert.py::test_convert_official_layout[moco-v2]",
    "tests/convert/test_convert.py::test_convert_official_layout[openselfsup]",
    "tests/convert/test_convert.py::test_convert_official_layout[pcrl-2d]",
    "tests/convert/test_convert.py::test_convert_official_layout[pcrl-3d]",
    "tests/convert/test_convert.py::test_convert_official_layout[pcrlv2-2d]",
    "tests/convert/test_convert.py::test_convert_official_layout[pcrlv2-3d]",
    "tests/convert/test_convert.py::test_convert_official_layout[swcl-resnetv2-50x1]",
    "tests/convert/test_convert.py::test_genesis_converted_model_uses_batch_statistics",
    "tests/convert/test_convert.py::test_pcrl_3d_group_norm_is_read_from_opt",
    "tests/eval/test_compare.py::test_an_interrupted_finetune_cell_continues_from_its_last_epoch",
    "tests/eval/test_compare.py::test_another_comparison_in_the_same_out_is_refused_unless_overwrite",
    "tests/eval/test_compare.py::test_more_seeds_or_fractions_extend_a_comparison_reusing_its_cells",
    "tests/eval/test_compare.py::test_compare_pairs_every_arm_and_writes_json_markdown_and_plot",
    "tests/eval/test_compare.py::test_finetune_classification_protocol",
    "tests/eval/test_compare.py::test_given_test_set_is_the_same_for_every_seed",
    "tests/eval/test_compare.py::test_multilabel_csv_linear",
    "tests/eval/test_compare.py::test_resume_after_a_kill_continues_with_the_same_results",
    "tests/eval/test_compare.py::test_segmentation_finetune_scores_dice_on_the_test_images",
    "tests/eval/test_eval.py::test_3d_linear_with_registered_tiny_checkpoint",
    "tests/eval/test_eval.py::test_checkpoint_runs_are_pairs",
    "tests/eval/test_eval.py::test_drive_segmentation_from_backbone_checkpoint",
    "tests/eval/test_eval.py::test_grad_cam",
    "tests/eval/test_eval.py::test_linear_random_init_via_cli",
    "tests/eval/test_eval.py::test_results_to_metrics_markdown_plot",
    "tests/eval/test_eval.py::test_robustness",
    "tests/eval/test_finetune.py::test_3d_classification_from_registered_weights_records_their_sha256",
    "tests/eval/test_finetune.py::test_3d_segmentation_on_nifti_pairs_from_an_encoder_checkpoint",
    "tests/eval/test_finetune.py::test_bf16_run_trains_records_bf16_and_resumes_in_bf16",
    "tests/eval/test_finetune.py::test_classification_run_writes_a_model_that_loads_with_its_head",
    "tests/eval/test_finetune.py::test_multilabel_csv_run",
    "tests/eval/test_finetune.py::test_resume_continues_exactly",
    "tests/eval/test_finetune.py::test_segmentation_on_images_of_different_sizes",
    "tests/export/test_export.py::test_cli_export",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[resnet18]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[resnet50]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[resnetv2_50x1_bit]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[unet3d]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[unet3d_seg]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[unet3d_small_seg]",
    "tests/export/test_export.py::test_every_architecture_exports_and_verifies[unet_resnet18]",
    "tests/export/test_export.py::test_features_only_exports_every_level[resnet18]",
    "tests/export/test_export.py::test_features_only_exports_every_level[resnet50]",
    "tests/export/test_export.py::test_features_only_exports_every_level[resnetv2_50x1_bit]",
    "tests/export/test_export.py::test_features_only_exports_every_level[unet3d.genesis_chest_ct]",
    "tests/export/test_export.py::test_features_only_exports_every_level[unet3d_seg]",
    "tests/export/test_export.py::test_features_only_exports_every_level[unet3d_small]",
    "tests/export/test_export.py::test_features_only_exports_every_level[unet_resnet18]",
    "tests/export/test_export.py::test_genesis_batch_statistics_are_in_the_graph",
    "tests/export/test_export.py::test_int8_2d_classifier_agrees_with_fp32",
    "tests/export/test_export.py::test_int8_calibration_methods",
    "tests/export/test_export.py::test_int8_segmentation_and_3d[unet3d_small.genesis_ct32]",
    "tests/export/test_export.py::test_int8_segmentation_and_3d[unet3d_small_seg]",
    "tests/export/test_export.py::test_int8_segmentation_and_3d[unet_resnet18]",
    "tests/export/test_export.py::test_int8_tolerance_failure_is_reported",
    "tests/export/test_export.py::test_perturbed_model_fails_verification_and_writes_nothing",
    "tests/export/test_export.py::test_pretrained_weights_provenance_in_metadata",
    "tests/export/test_export.py::test_static_batch_and_dynamic_spatial",
    "tests/export/test_export.py::test_torchscript_fallback_is_recorded",
    "tests/hub/test_hub.py::test_push_then_load_back_with_zoo_and_with_timm",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[micle-resnet18]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[mocov2-resnet18]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[pcrl-unet3d_seg]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[pcrl-unet_resnet18]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[pcrlv2-resnet18]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[pcrlv2-unet3d_seg]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[simclr-resnet18]",
    "tests/methods/test_methods_contract.py::test_loss_falls_on_a_fixed_subset[swcl-resnet18]",
    "tests/methods/test_methods_contract.py::test_same_seed_same_losses_and_exact_resume[pcrl-unet_resnet18]",
    "tests/methods/test_methods_contract.py::test_same_seed_same_losses_and_exact_resume[pcrlv2-resnet18]",
    "tests/methods/test_methods_genesis.py::test_restoration_on_real_ct_decreases",
    "tests/methods/test_methods_micle.py::test_resume_continues_with_the_same_pairs",
    "tests/methods/test_methods_pcrl.py::test_pcrl_3d_on_a_real_ct_cube",
    "tests/methods/test_methods_pcrlv2.py::test_pcrlv2_2d_on_real_xrays",
    "tests/methods/test_methods_pcrlv2.py::test_pcrlv2_3d_on_a_real_ct_cube",
    "tests/methods/test_methods_swcl.py::test_cli_pretrain_end_to_end",
    "tests/methods/test_methods_swcl.py::test_pipeline_reports_heldout_accuracy_and_caches_each_stage",
    "tests/methods/test_methods_swcl.py::test_supcon_gathers_every_rank_under_torchrun",
    "tests/train/test_pretrain.py::test_cli_pretrain",
    "tests/train/test_pretrain.py::test_init_from_and_bn_only",
    "tests/train/test_pretrain.py::test_pretrain_3d_on_real_ct",
    "tests/train/test_pretrain.py::test_pretrain_runs_resumes_exactly_and_exports[mocov2-resnet18-kw1]",
    "tests/train/test_pretrain.py::test_pretrain_runs_resumes_exactly_and_exports[simclr-resnet18-kw0]",
    "tests/train/test_pretrain.py::test_same_seed_same_losses_other_seed_other_losses",
    "tests/train/test_pretrain.py::test_ship_weights_script",
    "tests/train/test_pretrain.py::test_torchrun_ddp_two_processes",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW:
            item.add_marker(pytest.mark.slow)
