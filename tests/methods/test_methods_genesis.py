"""Models Genesis on real CT cubes: the four transformations, restoration loss, determinism and export."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

import zoo
from tests._real_data import ct_cubes
from tests.conftest import train_steps
from zoo.methods import get_method
from zoo.methods.genesis import ModelsGenesis


def _train(method: ModelsGenesis, x: torch.Tensor, steps: int, seed: int = 0) -> list[float]:
    return [d["loss"] for d in train_steps(method, x, steps, seed)]


def test_restoration_on_real_ct_decreases() -> None:
    assert get_method("genesis") is ModelsGenesis
    torch.manual_seed(0)
    method = ModelsGenesis(model_kwargs={"width": 8})
    assert method.net.norm == "batch_stats_bn" and method.net.out_act == "sigmoid"
    losses = _train(method, ct_cubes(2, (32, 32, 16)), steps=20)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_pairs_apply_the_transformations_with_their_rates() -> None:
    x = ct_cubes(4, (32, 32, 16))
    g = torch.Generator().manual_seed(0)
    off = ModelsGenesis(flip_rate=0, local_rate=0, nonlinear_rate=0, paint_rate=0, model_kwargs={"width": 8})
    inp, target = off.make_pair(x, g)
    assert torch.equal(inp, x) and torch.equal(target, x)  # every transformation off: identity
    flips = ModelsGenesis(flip_rate=1, local_rate=0, nonlinear_rate=0, paint_rate=0, model_kwargs={"width": 8})
    inp, target = flips.make_pair(x, g)
    assert torch.equal(inp, target) and not torch.equal(target, x)  # flips hit input and target alike
    paint = ModelsGenesis(flip_rate=0, local_rate=0, nonlinear_rate=0, paint_rate=1, inpaint_rate=0,
                          model_kwargs={"width": 8})
    inp, target = paint.make_pair(x, g)
    assert torch.equal(target, x)
    kept = (inp == x).float().mean(dim=(1, 2, 3, 4))
    assert bool(((kept > 0.05) & (kept < 0.95)).all())  # out-painting keeps only some inner boxes
    full = ModelsGenesis(model_kwargs={"width": 8})
    inp, target = full.make_pair(x, g)
    assert inp.shape == target.shape == x.shape and not torch.equal(inp, target)


@pytest.mark.parametrize(("method_name", "arch"), [("genesis", "unet3d_small_seg"), ("genesis", "unet3d_small"),
                                               ("pcrl", "unet3d_small_seg"), ("pcrl", "unet3d_small")])
def test_the_width16_reference_archs_train_and_export(tmp_path, method_name: str, arch: str) -> None:
    """The CPU-sized reference architectures of scripts/pretrain_reference.sh (genesis_ct, pcrl_ct)."""
    from zoo.methods import get_method

    method = get_method(method_name)(arch)
    assert method.net.feature_info[-1]["num_chs"] == 256  # width 16: 16 * 2 ** 4
    save_file(method.export_state_dict(), str(tmp_path / "w.safetensors"))
    zoo.create_model(arch, checkpoint_path=tmp_path / "w.safetensors", **method.model_kwargs)  # strict
    assert method.model_kwargs.get("norm") == ("batch_stats_bn" if method_name == "genesis" else None)


def test_old_and_new_names_build_the_same_network() -> None:
    """genesis_unet3d_small_seg (zoo 0.1) = unet3d_small_seg with Models Genesis' batch-statistics BN."""
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):
        old = ModelsGenesis("genesis_unet3d_small_seg")  # zoo 0.1 name
    torch.manual_seed(0)
    new = ModelsGenesis("unet3d_small_seg")
    assert old.arch == new.arch == "unet3d_small_seg"
    assert old.model_kwargs["norm"] == new.model_kwargs["norm"] == "batch_stats_bn"
    x = torch.rand(2, 1, 16, 16, 16)
    a = old(x, torch.Generator().manual_seed(1))["loss"]
    b = new(x, torch.Generator().manual_seed(1))["loss"]
    assert torch.equal(a, b)


def test_bad_inputs_are_named() -> None:
    method = ModelsGenesis(model_kwargs={"width": 8})
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\)"):
        method(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 8"):
        method(torch.rand(2, 1, 20, 16, 16))
    with pytest.raises(ValueError, match="probability"):
        ModelsGenesis(paint_rate=1.5)
    with pytest.raises(ValueError, match="trains a 3D U-Net with skips"):
        ModelsGenesis("unet3d_seg", model_kwargs={"decoder": "noskip"})
    with pytest.raises(ValueError, match="trains a 3D U-Net with skips"):
        ModelsGenesis("resnet18")
