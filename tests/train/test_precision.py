"""Training precision (fp32 / bf16 / fp16 autocast) and the probe's threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zoo.cli import main as cli_main
from zoo.data import augment3d as aug3d
from zoo.data.paths import data_root
from zoo.eval.harness import set_threads, usable_cpus
from zoo.eval.probe import LogisticRegression
from zoo.methods import get_method
from zoo.methods._common import ViewMaker2D, info_nce, nt_xent
from zoo.train.precision import Precision, PrecisionError, check_precision, make_precision
from zoo.train.pretrain import (
    PretrainConfig,
    PretrainError,
    build_optimizer,
    prepare_method,
    pretrain,
    train_step,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def test_precision_names_per_device() -> None:
    assert check_precision("fp32", "cpu") == "fp32" and check_precision("bf16", "cpu") == "bf16"
    with pytest.raises(PrecisionError, match="needs a CUDA device.*use --precision bf16"):
        check_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="must be one of fp32, bf16, fp16"):
        check_precision("fp8", "cpu")
    fp32 = make_precision("fp32", "cpu")
    assert fp32.scaler is None and fp32.record() == {"precision": "fp32", "autocast_dtype": None,
                                                     "grad_scaler": False, "device": "cpu"}
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cpu")
    bf16 = make_precision("bf16", "cpu")
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert bf16.record()["autocast_dtype"] == "torch.bfloat16" and bf16.state_dict() == {}


def _same_views(make: object, *args: object) -> None:
    """``make(*args, generator)`` gives the same tensors, bit for bit, with and without bf16 autocast."""
    plain = make(*args, torch.Generator().manual_seed(3))  # type: ignore[operator]
    with BF16:
        mixed = make(*args, torch.Generator().manual_seed(3))  # type: ignore[operator]
    a = plain if isinstance(plain, (tuple, list)) else [plain]
    b = mixed if isinstance(mixed, (tuple, list)) else [mixed]
    for u, v in zip(a, b, strict=True):
        assert u.dtype == v.dtype == torch.float32 and torch.equal(u, v)


@pytest.mark.slow
def test_pcrl_views_do_not_depend_on_autocast() -> None:
    """PCRL's views, targets and codes are made in float32 under a bf16 run (2D and 3D)."""
    g = torch.Generator().manual_seed(0)
    x2, x3 = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 1, 16, 16, 16, generator=g)
    for arch, x in (("pcrl_unet_resnet18", x2), ("pcrl_unet3d_small_seg", x3)):
        pcrl = get_method("pcrl")(arch, queue_size=8)
        _same_views(lambda b, gen, m=pcrl: [t for t in vars(m.make_views(b, gen)).values()], x)


def test_views_do_not_depend_on_autocast() -> None:
    """Augmentations run in float32 under a bf16 run: the objective's inputs do not change."""
    g = torch.Generator().manual_seed(0)
    x2, x3 = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 1, 16, 16, 16, generator=g)
    _same_views(ViewMaker2D("simclr_resnet18", "simclr"), x2)
    _same_views(lambda b, gen: aug3d.nonlinear_intensity(b, 1.0, generator=gen), x3)
    _same_views(lambda b, gen: aug3d.gaussian_blur3d(b, torch.rand(2, 3, generator=gen) * 2), x3)
    _same_views(lambda b, gen: aug3d.sample_views(b, torch.zeros(2, 3), torch.ones(2, 3) * 0.7, (16, 16, 16),
                                                  aug3d.random_flip_affine(2, generator=gen)), x3)


def test_contrastive_similarities_stay_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2, neg = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g), torch.randn(32, 16, generator=g)
    ref = nt_xent(z1, z2, 0.2), info_nce(z1, z2, neg, 0.2)
    with BF16:
        got = nt_xent(z1, z2, 0.2), info_nce(z1, z2, neg, 0.2)
        low = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.2)  # bf16 projections are scored in fp32
    assert all(torch.equal(a, b) and b.dtype == torch.float32 for a, b in zip(ref, got, strict=True))
    assert low.dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("arch,shape", [("pcrl_unet_resnet18", (4, 3, 32, 32)), ("pcrl_unet3d_small_seg", (2, 1, 16, 16, 16))])
def test_bf16_step_tracks_fp32(arch: str, shape: tuple[int, ...]) -> None:
    """The first bf16 PCRL step (same weights, same views) gives every loss term within 2% of fp32."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    terms = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        method = get_method("pcrl")(arch, queue_size=64)
        prepare_method(method, torch.device("cpu"), len(shape) - 2, True)
        opt, _ = build_optimizer(PretrainConfig(method="pcrl", arch=arch, data="", out=""), method)
        out = train_step(method, method, x, torch.Generator().manual_seed(0), opt, 0, 10, True, make_precision(name, "cpu"))
        terms[name] = {k: float(v.detach()) for k, v in out.items() if v.numel() == 1}
        assert out["loss"].dtype == torch.float32
        assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                   for p in method.parameters())
    for k, ref in terms["fp32"].items():
        assert terms["bf16"][k] == pytest.approx(ref, rel=0.02, abs=1e-3), k


@pytest.mark.slow
def test_pretrain_records_precision_and_keeps_it_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = data_root() / "cxr/kermany/train"
    if not src.is_dir():
        pytest.skip(f"real data not found at {data_root()}; set ZOO_DATA_DIR to the shared data directory")
    data = tmp_path / "xrays"
    for cls in ("NORMAL", "PNEUMONIA"):
        (data / cls).mkdir(parents=True)
        for f in sorted((src / cls).glob("*.jpeg"))[:4]:
            (data / cls / f.name).symlink_to(f)
    cfg = dict(method="simclr", arch="simclr_resnet18", data=str(data), out=str(tmp_path / "run"), img_size=32,
               batch_size=4, epochs=1, progress=False, ckpt_every=0, precision="bf16", max_steps=1)
    result = pretrain(PretrainConfig(**cfg))  # type: ignore[arg-type]
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["precision"]["precision"] == "bf16" and run["config"]["precision"] == "bf16"
    entry = json.loads(result.pretrained_cfg.read_text())
    assert "bf16 autocast" in entry["notes"] and "--precision bf16" in entry["command"]
    exported = load_file(str(result.weights))
    assert {v.dtype for v in exported.values() if v.is_floating_point()} == {torch.float32}  # the export stays fp32
    with pytest.raises(PretrainError, match="precision: checkpoint 'bf16' vs now 'fp32'"):
        pretrain(PretrainConfig(**{**cfg, "precision": "fp32", "resume": True, "max_steps": 2}))  # type: ignore[arg-type]
    argv = ["pretrain", "--method", "simclr", "--arch", "simclr_resnet18", "--data", str(data), "--img-size", "32",
            "--batch-size", "4", "--max-steps", "1", "--out", str(tmp_path / "cli"), "--no-progress",
            "--precision", "fp16"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "--precision fp16 needs a CUDA device" in err and "Traceback" not in err


@CUDA
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_cuda_step_with_autocast(name: str) -> None:
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    method = get_method("pcrl")("pcrl_unet_resnet18", queue_size=64)
    prepare_method(method, torch.device("cuda"), 2, True)
    opt, _ = build_optimizer(PretrainConfig(method="pcrl", arch="pcrl_unet_resnet18", data="", out=""), method)
    amp = make_precision(name, "cuda")
    assert (amp.scaler is not None) == (name == "fp16")
    x = torch.rand(4, 3, 32, 32, device="cuda")
    for step in range(2):
        out = train_step(method, method, x, torch.Generator().manual_seed(step), opt, step, 2, True, amp)
        assert torch.isfinite(out["loss"])
    if amp.scaler is not None:
        state = amp.state_dict()
        fresh = make_precision(name, "cuda")
        fresh.load_state_dict(state)
        assert fresh.scaler.get_scale() == amp.scaler.get_scale()  # type: ignore[union-attr]


def test_probe_runs_on_one_thread_and_restores_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's solver runs under a BLAS limit of one thread and torch at one thread; both restored."""
    from sklearn.linear_model import LogisticRegression as Sk
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 16)).astype(np.float32), rng.integers(0, 2, 60)
    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    seen: list[tuple[int, set[int]]] = []
    real = Sk.fit

    def spy(self: Sk, *args: object, **kwargs: object) -> object:
        seen.append((torch.get_num_threads(), {p["num_threads"] for p in threadpool_info()}))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sk, "fit", spy)
    one = LogisticRegression(2, l2_grid=(0.1, 1.0)).fit(x, y)
    assert seen and all(t == 1 and blas <= {1} for t, blas in seen)
    assert torch.get_num_threads() == before and [p["num_threads"] for p in threadpool_info()] == blas_before
    seen.clear()
    other = LogisticRegression(2, l2_grid=(0.1, 1.0), threads=None).fit(x, y)
    assert seen and all(t == before for t, _ in seen)
    assert np.allclose(one.predict_proba(x), other.predict_proba(x), atol=1e-6)


def test_eval_threads_default_and_errors() -> None:
    before = torch.get_num_threads()
    try:
        assert usable_cpus() >= 1
        assert set_threads(None) == usable_cpus() == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ValueError, match="--threads must be >= 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
    assert Precision().autocast() is not None


def test_eval_precision_is_checked_and_recorded() -> None:
    from zoo.eval.harness import EvalConfig
    from zoo.eval.tasks import get_task

    task = get_task("kermany_pneumonia")
    EvalConfig(model="resnet18", task=task.name, protocol="finetune", precision="bf16").validate(task)
    assert "--precision bf16" in EvalConfig(model="m", task=task.name, protocol="finetune", precision="bf16").command()
    with pytest.raises(ValueError, match="drop --precision"):
        EvalConfig(model="resnet18", task=task.name, protocol="linear", precision="bf16").validate(task)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        EvalConfig(model="resnet18", task=task.name, protocol="finetune", precision="fp16").validate(task)


def test_device_flag_errors_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(PretrainError, match="--device cuda: no CUDA device"):
        pretrain(PretrainConfig(method="simclr", arch="simclr_resnet18", data=str(tmp_path), out=str(tmp_path / "o"),
                                device="cuda"))
