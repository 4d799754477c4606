"""PCRL (2D and 3D) on real chest X-rays and CT: the objective, its parts, determinism and export."""

from __future__ import annotations

import math

import pytest
import torch

from tests._real_data import ct_cubes, xray_batch
from tests.conftest import train_steps
from zoo.methods import get_method
from zoo.methods._unet import decode, encode
from zoo.methods.pcrl import PCRL, nce_loss

TERMS = {"loss", "loss_contrast", "loss_recon", "nce_ordinary", "nce_mixed", "nce_cross", "mse_student",
         "mse_mixed", "mse_cross", "mse_mixed_cross"}


_train = train_steps


def _undo_code(t: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Invert the flips + rot90 that ``code`` describes."""
    nd = t.ndim - 2
    k = code[:, nd:].argmax(dim=1)
    out = t.clone()
    for i in range(t.shape[0]):
        y = torch.rot90(t[i:i + 1], -int(k[i]), dims=(2, 3))
        for axis in range(nd):
            if code[i, axis] > 0.5:
                y = y.flip(2 + axis)
        out[i:i + 1] = y
    return out


def test_registered_and_runs_on_real_xrays() -> None:
    assert get_method("pcrl") is PCRL
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=64)
    log = _train(method, xray_batch(4, 64), steps=2)
    assert TERMS <= set(log[0])
    for rec in log:
        assert all(math.isfinite(v) for v in rec.values())
        assert rec["loss"] == pytest.approx(rec["loss_contrast"] + rec["loss_recon"], rel=1e-5)


def test_attention_is_fed_the_transformation_code() -> None:
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=16)
    x = xray_batch(2, 32)
    with torch.no_grad():
        feats = encode(method.net, x)
        code_a = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]] * 2)
        code_b = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]] * 2)
        att_a, att_b = method.attend(code_a), method.attend(code_b)
        assert att_a.shape == (2, 512, 1, 1) and bool(((att_a > 0) & (att_a < 1)).all())
        assert not torch.allclose(att_a, att_b)
        out_a = decode(method.net, feats[:-1] + [feats[-1] * att_a])
        out_b = decode(method.net, feats[:-1] + [feats[-1] * att_b])
        assert not torch.allclose(out_a, out_b)
        assert torch.equal(out_a, decode(method.net, feats[:-1] + [feats[-1] * method.attend(code_a)]))
    out = method(x, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert method.attention[0].weight.grad is not None and method.attention[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["clean", "official"])
def test_targets_follow_the_code_and_reconstructions_have_the_input_shape(mode: str) -> None:
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=16, recon_target=mode)
    x = xray_batch(4, 64)
    v = method.make_views(x, torch.Generator().manual_seed(1))
    assert v.code1.shape == (4, 6) and torch.equal(v.code1[:, 2:].sum(1), torch.ones(4))
    for t in (v.x1, v.x2, v.gt1, v.gt2, v.target1, v.target2):
        assert t.shape == x.shape
    source1 = v.x1 if mode == "official" else v.gt1
    assert torch.equal(_undo_code(v.target1, v.code1), source1)
    assert not torch.equal(v.x1, v.gt1)  # inputs carry colour / blur / Cutout corruptions
    with torch.no_grad():
        _, fq = method.student(v.x1)
        _, fk = method.momentum_encoder(v.x2)
        student, cross = method.reconstruct(fq, fk, 0.7)
    assert student.shape == x.shape and cross.shape == x.shape


def test_momentum_encoder_takes_no_gradient_and_follows_the_ema() -> None:
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=16)
    with torch.no_grad():  # weights changed after construction (as --init-from does) reach the EMA
        method.net.encoder.conv1.weight.mul_(2.0)
    assert not torch.equal(method.ema.encoder.conv1.weight, method.net.encoder.conv1.weight)
    out = method(xray_batch(4, 32), torch.Generator().manual_seed(0))
    assert torch.equal(method.ema.encoder.conv1.weight, method.net.encoder.conv1.weight)
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in method.ema.parameters())
    assert all(not p.requires_grad and p.grad is None for p in method.ema_proj.parameters())
    opt = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    before = {k: v.clone() for k, v in method.ema.named_parameters()}
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in method.ema.named_parameters())
    student = dict(method.net.named_parameters())
    assert not torch.equal(student["encoder.conv1.weight"], before["encoder.conv1.weight"])
    method.on_after_step(0, 10)
    m = method.momentum
    for k, v in method.ema.named_parameters():
        torch.testing.assert_close(v, m * before[k] + (1 - m) * student[k].detach())
    assert float(method.nce_z) > 0  # NCE normalisation constant fixed at the first batch


def test_queue_enqueues_three_key_batches_per_step() -> None:
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=40)
    x = xray_batch(4, 32)
    g = torch.Generator().manual_seed(0)
    v = method.make_views(x, g)
    method.losses(v, g)
    assert int(method.queue.ptr) == 12
    with torch.no_grad():
        k, _ = method.momentum_encoder(v.x2)
    torch.testing.assert_close(method.queue.queue[:4], torch.nn.functional.normalize(k, dim=1))
    torch.testing.assert_close(method.queue.queue[:12].norm(dim=1), torch.ones(12))
    for expected in (24, 36, 8):  # wraps around K = 40
        method(x, g)
        assert int(method.queue.ptr) == expected
    method.eval()
    with torch.no_grad():
        method(x, g)
    assert int(method.queue.ptr) == 8  # evaluation does not enqueue


def test_pcrl_3d_on_a_real_ct_cube() -> None:
    torch.manual_seed(0)
    method = get_method("pcrl")("unet3d_seg", queue_size=32, model_kwargs={"width": 8})
    x = ct_cubes(2, (32, 32, 32))
    v = method.make_views(x, torch.Generator().manual_seed(0))
    assert v.code1.shape == (2, 7)
    assert torch.equal(_undo_code(v.target1, v.code1), v.gt1)
    assert float(v.gt1.min()) >= 0 and float(v.gt1.max()) <= 1
    log = _train(method, x, steps=2)
    assert all(math.isfinite(val) for rec in log for val in rec.values())
    with torch.no_grad():
        _, fq = method.student(v.x1)
        _, fk = method.momentum_encoder(v.x2)
        student, cross = method.reconstruct(fq, fk, 0.6)
    assert student.shape == x.shape and cross.shape == x.shape
    assert float(student.min()) >= 0 and float(student.max()) <= 1  # sigmoid output, as upstream
    pairs = torch.stack([x, x.flip(2)], dim=1)  # a loader's pairs of cubes (B, 2, 1, X, Y, Z)
    assert torch.isfinite(method(pairs, torch.Generator().manual_seed(0))["loss"])


@pytest.mark.parametrize(("contrast_weight", "recon_weight"), [(0.0, 1.0), (1.0, 0.0)])
def test_ablation_weights_drop_a_term_from_the_objective(contrast_weight: float, recon_weight: float) -> None:
    torch.manual_seed(0)
    method = PCRL("unet_resnet18", queue_size=32, contrast_weight=contrast_weight, recon_weight=recon_weight)
    out = method(xray_batch(4, 32), torch.Generator().manual_seed(0))
    kept = (out["loss_recon"] if contrast_weight == 0 else out["loss_contrast"]).detach()
    assert out["loss"].detach().item() == pytest.approx(kept.item(), rel=1e-6)
    out["loss"].backward()
    decoder_grad = sum(float(p.grad.abs().sum()) for p in method.net.decoder.parameters() if p.grad is not None)
    proj_grad = sum(float(p.grad.abs().sum()) for p in method.proj.parameters() if p.grad is not None)
    # the projection learns only from the NCE terms, the decoder only from the reconstructions
    assert (proj_grad == 0) == (contrast_weight == 0) and (decoder_grad == 0) == (recon_weight == 0)


def test_bad_inputs_are_named() -> None:
    method = PCRL("unet_resnet18", queue_size=16)
    with pytest.raises(ValueError, match="at least 2"):
        method(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 32"):
        method(torch.rand(2, 3, 48, 48))
    with pytest.raises(ValueError, match="spatial sizes equal"):
        method(torch.rand(2, 3, 32, 64))
    with pytest.raises(ValueError, match="expects a batch"):
        method(torch.rand(2, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="PCRL trains a 2D/3D U-Net with skips; 'resnet50' is not one, nor the encoder of one"):
        PCRL("resnet50")
    with pytest.raises(ValueError, match="recon_target"):
        PCRL("unet_resnet18", recon_target="noise")
    with pytest.raises(ValueError, match="not both 0"):
        PCRL("unet_resnet18", contrast_weight=0, recon_weight=0)


def test_nce_loss_matches_its_definition() -> None:
    scores = torch.tensor([[0.5, 0.1, 0.2], [0.3, 0.3, 0.05]])
    m, pn = 2, 1 / 10
    expected = -sum(
        math.log(s[0] / (s[0] + m * pn + 1e-5)) + sum(math.log(m * pn / (v + m * pn + 1e-5)) for v in s[1:])
        for s in scores.tolist()
    ) / 2
    assert float(nce_loss(scores, 10)) == pytest.approx(expected, rel=1e-6)
