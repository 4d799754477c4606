"""PCRLv2 (2D and 3D) on real chest X-rays and CT: terms, multi-scale heads, determinism and export."""

from __future__ import annotations

import math

import pytest
import torch

from tests._real_data import ct_cubes, xray_batch
from tests.conftest import train_steps
from zoo.methods import get_method
from zoo.methods.pcrlv2 import PCRLv2, symmetric_cosine

TERMS = {"loss", "mse_recon", "loss_global", "loss_local", "loss_deep_sup"}


_train = train_steps


def test_pcrlv2_2d_on_real_xrays() -> None:
    assert get_method("pcrlv2") is PCRLv2
    torch.manual_seed(0)
    method = PCRLv2("resnet18", n_local=2)
    x = xray_batch(4, 64)
    x1, x2, target, local = method.make_views(x, torch.Generator().manual_seed(0))
    assert x1.shape == x2.shape == target.shape == x.shape
    assert local.shape == (2 * 4, 3, 32, 32)  # 96 px at 224 -> at least 32 px
    outs, final, masks = method.pyramid(x1, full=True)
    assert len(outs) == len(masks) == 5 and final.shape == x.shape
    assert all(m.shape == x.shape for m in masks)
    assert [p.shape[1] for p, _ in outs] == [256, 128, 64, 32, 16]
    log = _train(method, x, steps=2)
    assert TERMS <= set(log[0])
    for rec in log:
        assert all(math.isfinite(v) for v in rec.values())
        parts = rec["mse_recon"] + rec["loss_global"] + rec["loss_local"] + rec["loss_deep_sup"]
        assert rec["loss"] == pytest.approx(parts, rel=1e-5, abs=1e-6)
        assert -1.0 <= rec["loss_global"] <= 1.0 and -1.0 <= rec["loss_local"] <= 1.0


def test_stop_gradient_and_deep_supervision_schedule() -> None:
    pro_a, pro_b = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    pre_a, pre_b = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    symmetric_cosine((pro_a, pre_a), (pro_b, pre_b)).backward()
    assert pro_a.grad is None and pro_b.grad is None  # projections are targets only
    assert pre_a.grad is not None and pre_b.grad is not None
    assert float(symmetric_cosine((pre_a, pre_a), (pre_a, pre_a)).detach()) == pytest.approx(-1.0)

    torch.manual_seed(0)
    method = PCRLv2("resnet18", n_local=0)
    x, g = xray_batch(2, 32), torch.Generator().manual_seed(0)
    assert float(method(x, g)["loss_deep_sup"].detach()) > 0  # beta = 1 at the start
    method.on_after_step(10, 10)
    assert float(method.progress) == 1.0
    assert float(method(x, g)["loss_deep_sup"].detach()) == pytest.approx(0.0, abs=1e-7)  # beta = 0 at the end


def test_pcrlv2_3d_on_a_real_ct_cube() -> None:
    torch.manual_seed(0)
    method = PCRLv2("unet3d_seg", model_kwargs={"width": 8})
    x = ct_cubes(2, (32, 32, 32))
    x1, _, target, local = method.make_views(x, torch.Generator().manual_seed(0))
    assert local.shape == (6 * 2, 1, 16, 16, 16)
    assert float(target.min()) >= 0 and float(target.max()) <= 1
    assert abs(float(x1[0].mean())) < 1e-4 and float(x1[0].std()) == pytest.approx(1.0, rel=1e-3)  # z-scored
    outs, final, masks = method.pyramid(x1, full=True)
    assert len(outs) == 3 and final.shape == x.shape and all(m.shape == x.shape for m in masks)
    log = _train(method, x, steps=2)
    assert all(math.isfinite(v) for rec in log for v in rec.values())


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="PCRLv2 trains a 2D ResNet encoder"):
        PCRLv2("unet_resnet18")
    with pytest.raises(ValueError, match="PCRLv2 trains a 3D U-Net without skips .* 'unet3d_seg' is not one"):
        PCRLv2("unet3d_seg", model_kwargs={"decoder": "skip", "width": 8})
    method = PCRLv2("resnet18", n_local=0)
    with pytest.raises(ValueError, match="divisible by 32"):
        method(torch.rand(2, 3, 40, 40))
    with pytest.raises(ValueError, match="at least 2"):
        method(torch.rand(1, 3, 32, 32))
