"""Model inputs: dtypes, the smallest 3D cube, and non-finite values under batch statistics."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.models._contract import ModelInputError, check_input


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return zoo.create_model("resnet18").eval()


@pytest.fixture(scope="module")
def genesis() -> torch.nn.Module:
    return zoo.create_model("unet3d_small.genesis_ct32").eval()  # norm='batch_stats_bn': batch statistics in eval


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_refused_with_the_cast(resnet: torch.nn.Module, genesis: torch.nn.Module,
                                                     dtype: torch.dtype) -> None:
    for model, shape in ((resnet, (1, 3, 32, 32)), (genesis, (1, 1, 16, 16, 16))):
        with pytest.raises(ModelInputError, match=r"float32 weights, got a .* input.*x.to\(torch.float32\)"):
            model(torch.zeros(shape, dtype=dtype))


def test_matching_dtypes_and_autocast_pass(resnet: torch.nn.Module) -> None:
    with torch.no_grad():
        assert zoo.create_model("resnet18").double().eval()(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).dtype \
            == torch.float64
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert resnet(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (1, 1, 7, 16, 16), (1, 1, 16, 16, 0)])
def test_cubes_too_small_for_the_encoder_poolings(genesis: torch.nn.Module, shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelInputError, match="spatial size >= 8"):
        genesis(torch.zeros(shape))


def test_shallow_feature_levels_accept_smaller_cubes() -> None:
    feats = zoo.create_model("unet3d_small", features_only=True, out_indices=(0, 1)).eval()
    with torch.no_grad():
        assert [f.shape[-1] for f in feats(torch.zeros(1, 1, 2, 2, 2))] == [2, 1]
    with pytest.raises(ModelInputError, match="spatial size >= 2"):
        feats(torch.zeros(1, 1, 1, 2, 2))


def test_segmentation_unet_refuses_empty_volumes() -> None:
    seg = zoo.create_model("unet3d_small_seg").eval()
    with pytest.raises(ModelInputError, match="spatial size >= 8"):
        seg(torch.zeros(1, 1, 0, 8, 8))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_batch_statistics_models_refuse_non_finite_voxels(genesis: torch.nn.Module, value: float) -> None:
    x = torch.rand(3, 1, 16, 16, 16)
    x[2, 0, 1, 2, 3] = value
    with pytest.raises(ModelInputError, match=r"sample\(s\) \[2\].*statistics of the whole batch"):
        genesis(x)
    with torch.no_grad():
        assert torch.isfinite(genesis(x[:2])).all()


def test_running_statistics_models_keep_non_finite_per_sample() -> None:
    """With running statistics (eval, norm='bn') a NaN stays in its own sample: no refusal needed."""
    model = zoo.create_model("unet3d_small").eval()
    x = torch.rand(2, 1, 16, 16, 16)
    x[1, 0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out[0]).all() and not torch.isfinite(out[1]).all()
    model.train()
    with pytest.raises(ModelInputError, match="statistics of the whole batch"):
        model(x)  # in training BatchNorm uses batch statistics


def test_check_input_direct() -> None:
    check_input(torch.zeros(1, 2, 8, 8), 2, 2, "m", dtype=torch.float32, min_size=8)
    with pytest.raises(ModelInputError, match="NaN or Inf.*because"):
        check_input(torch.full((1, 2, 8, 8), float("nan")), 2, 2, "m", finite_reason="because.")
