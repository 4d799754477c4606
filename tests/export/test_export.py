"""ONNX export: every architecture exports and verifies against onnxruntime on real data; int8; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import zoo
from zoo import PretrainedCfg, UnknownModelError, WeightsNotFoundError
from zoo.cli import main
from zoo.data.paths import data_root
from zoo.export import (
    ExportError,
    Tolerance,
    VerificationError,
    export_onnx,
    ort_session,
    quantize_onnx,
    read_metadata,
    sample_inputs,
    verify_onnx,
)

ALL = zoo.list_models()
# one architecture per distinct network (the six ResNet-18 entries share one, the _small 3D ones differ by width)
FEATURE_ARCHS = ["resnet18", "resnet50", "resnetv2_50x1_bit", "unet_resnet18",
                 "unet3d.genesis_chest_ct", "unet3d_seg", "unet3d_small"]


def small_size(name: str) -> int:
    """64 px for 2D models, 16^3 cubes for 3D ones."""
    return 64 if zoo.get_pretrained_cfg(name).spatial_dims == 2 else 16


def run_ort(path: Path, x: np.ndarray) -> list[np.ndarray]:
    return ort_session(path).run(None, {"input": x})


@pytest.mark.parametrize("name", ALL)
def test_every_architecture_exports_and_verifies(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.onnx"
    result = export_onnx(name, path, input_size=small_size(name))
    assert path.is_file() and result.path == path
    assert result.exporter == "dynamo"
    assert result.fp32 is not None and result.fp32.passed
    assert [c.batch_size for c in result.fp32.checks] == [1, 2]
    assert result.fp32.max_abs_diff < 1e-3 and result.fp32.cosine > 0.99999
    assert result.input_shape[0] == "batch"  # dynamic batch by default
    meta = read_metadata(path)
    assert meta["model"] == name and meta["exporter"] == "dynamo"
    assert json.loads(meta["pretrained_cfg"]) == json.loads(json.dumps(zoo.get_pretrained_cfg(name).to_dict()))
    assert meta["weights"] == "random initialisation" and meta["weights_sha256"] == ""
    assert json.loads(meta["verification"])["passed"] is True


@pytest.mark.parametrize("name", FEATURE_ARCHS)
def test_features_only_exports_every_level(name: str, tmp_path: Path) -> None:
    path = tmp_path / "features.onnx"
    model = zoo.create_model(name, features_only=True).eval()
    result = export_onnx(model, path, input_size=small_size(name), features_only=True)
    assert result.fp32 is not None and result.fp32.passed
    assert result.output_names == [f"features_{i}" for i in range(len(model.feature_info))]
    x, _ = sample_inputs(model.pretrained_cfg, (model.in_chans,) + (small_size(name),) * model.spatial_dims, 3)
    with torch.no_grad():
        refs = model(torch.from_numpy(x))
    outs = run_ort(path, x)  # batch 3: a size the verification did not use
    assert [o.shape for o in outs] == [tuple(r.shape) for r in refs]
    for out, ref in zip(outs, refs, strict=True):
        assert np.abs(out - ref.numpy()).max() <= 1e-4 * (1.0 + np.abs(ref.numpy()).max())
    assert read_metadata(path)["features_only"] == "true"


def test_genesis_batch_statistics_are_in_the_graph(tmp_path: Path) -> None:
    """Models Genesis' BN normalises with the batch's statistics in eval mode: the ONNX file must too."""
    path = tmp_path / "genesis.onnx"
    model = zoo.create_model("unet3d.genesis_chest_ct").eval()
    export_onnx(model, path, input_size=16, batch_size=1)
    x, _ = sample_inputs(model.pretrained_cfg, (1, 16, 16, 16), 2)
    alone = run_ort(path, x[:1])[0]
    together = run_ort(path, x)[0]
    with torch.no_grad():
        torch_alone, torch_together = model(torch.from_numpy(x[:1])).numpy(), model(torch.from_numpy(x)).numpy()
    # the first sample's features depend on its batch companion, in PyTorch and in onnxruntime alike
    assert np.abs(torch_alone[0] - torch_together[0]).max() > 1e-3
    np.testing.assert_allclose(alone, torch_alone, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(together, torch_together, rtol=1e-3, atol=1e-4)


def test_pretrained_weights_provenance_in_metadata(tmp_path: Path, register_weights) -> None:
    source = zoo.create_model("unet3d_small")
    weights = register_weights("unet3d_small.pcrl_test", source.state_dict())
    path = tmp_path / "m.onnx"
    export_onnx("unet3d_small.pcrl_test", path, input_size=16)
    meta = read_metadata(path)
    from zoo._io import sha256_file

    assert meta["model"] == "unet3d_small.pcrl_test" and meta["tag"] == "pcrl_test"
    assert meta["weights"] == "pretrained" and meta["weights_sha256"] == sha256_file(weights)
    cfg = PretrainedCfg.from_dict(json.loads(meta["pretrained_cfg"]))
    assert cfg.intensity.kind == "hu_window" and cfg.sha256 == meta["weights_sha256"]
    # the ONNX model is the pretrained network: same output as the source module
    x, _ = sample_inputs(cfg, (1, 16, 16, 16), 2)
    with torch.no_grad():
        ref = source.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ort(path, x)[0], ref, rtol=1e-3, atol=1e-5)


def test_static_batch_and_dynamic_spatial(tmp_path: Path) -> None:
    static = export_onnx("resnet18.pcrl_kermany64", tmp_path / "static.onnx", input_size=64, batch_size=2,
                         dynamic_batch=False)
    assert static.input_shape == (2, 3, 64, 64) and [c.batch_size for c in static.fp32.checks] == [2]
    with pytest.raises(Exception, match="(?i)dimension|shape|got"):
        run_ort(static.path, np.zeros((1, 3, 64, 64), np.float32))

    model = zoo.create_model("unet_resnet18").eval()
    seg = export_onnx(model, tmp_path / "seg.onnx", input_size=64, dynamic_spatial=True)
    assert all(isinstance(d, str) for d in (seg.input_shape[0], *seg.input_shape[2:]))
    x, _ = sample_inputs(model.pretrained_cfg, (3, 96, 128), 1)  # another size than exported
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ort(seg.path, x)[0], ref, rtol=1e-3, atol=1e-4)


def test_int8_2d_classifier_agrees_with_fp32(tmp_path: Path) -> None:
    path = tmp_path / "int8.onnx"
    # the pooled features (512 values per image), not a random 2-class head: two near-zero logits per image make
    # the cosine gate a coin toss across CPUs (0.979 on an AVX2-only EPYC, >= 0.98 with VNNI)
    result = export_onnx("resnet18.pcrl_kermany64", path, input_size=64, quantize="int8", num_classes=0,
                         calibration_data=data_root() / "cxr" / "kermany" / "train" / "NORMAL",
                         calibration_samples=8)
    assert result.int8 is not None and result.int8.passed
    assert result.int8.cosine >= Tolerance().int8_min_cosine
    meta = read_metadata(path)
    quant = json.loads(meta["quantization"])
    assert quant["format"] == "QDQ" and "per-channel" in quant["weights"] and quant["calibration_samples"] == 8
    assert "kermany/train/NORMAL" in quant["calibration_data"]
    assert json.loads(meta["verification_int8"])["passed"] is True
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert path.stat().st_size < 0.4 * 4 * 11.2e6  # int8 weights: well under the fp32 size


def _xrays(split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` NORMAL then ``n`` PNEUMONIA Kermany X-rays of ``split`` (first by file name), at 64 px, and labels."""
    from PIL import Image

    transform = zoo.create_transform(zoo.resolve_data_config(zoo.get_pretrained_cfg("resnet18.pcrl_kermany64")))
    root = data_root() / "cxr" / "kermany" / split
    files = [f for c in ("NORMAL", "PNEUMONIA") for f in sorted((root / c).glob("*.jpeg"))[:n]]
    x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    return x, np.repeat([0, 1], n)


@pytest.mark.slow
def test_int8_classifier_with_a_trained_head_keeps_its_predictions(tmp_path: Path) -> None:
    """A real classifier (pretrained backbone + a head fitted on 48 training X-rays) exported to int8: its
    predicted class on 64 test X-rays agrees with PyTorch's on >= 90% of them (top-1, not just the cosine)."""
    from sklearn.linear_model import LogisticRegression

    model = zoo.create_model("resnet18.pcrl_kermany64", pretrained=True, num_classes=2).eval()
    x_train, y_train = _xrays("train", 24)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x_train), pre_logits=True).numpy()
    probe = LogisticRegression(C=1.0, max_iter=1000).fit(feats, y_train)
    head = model.get_classifier()
    with torch.no_grad():  # one logit per class: -z/2, +z/2 gives softmax = the probe's sigmoid
        w, b = torch.from_numpy(probe.coef_[0]).float(), float(probe.intercept_[0])
        head.weight.copy_(torch.stack([-w / 2, w / 2]))
        head.bias.copy_(torch.tensor([-b / 2, b / 2]))
    path = tmp_path / "int8.onnx"
    result = export_onnx(model, path, input_size=64, quantize="int8",
                         calibration_data=data_root() / "cxr" / "kermany" / "train" / "NORMAL", calibration_samples=8)
    assert result.int8 is not None and result.int8.passed and result.int8.agreement is not None
    x_test, y_test = _xrays("test", 32)
    with torch.no_grad():
        eager = model(x_test).argmax(1).numpy()
    int8 = run_ort(path, x_test.numpy())[0].argmax(1)
    assert (eager == y_test).mean() >= 0.7  # the head is a real classifier, so agreement means something
    assert set(eager) == {0, 1}
    assert (int8 == eager).mean() >= 0.9, (int8 == eager).mean()  # 63 of 64 on a Xeon with AMX / VNNI


@pytest.mark.parametrize("name", ["unet3d_small.genesis_ct32", "unet3d_small_seg", "unet_resnet18"])
def test_int8_segmentation_and_3d(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = export_onnx(name, tmp_path / "int8.onnx", input_size=small_size(name), quantize="int8",
                         calibration_samples=8)
    assert result.int8 is not None and result.int8.passed and result.int8.cosine > 0.98
    if name.endswith("_seg") or name.startswith("pcrl_unet_"):
        assert result.int8.agreement is not None and result.int8.agreement > 0.9  # per-voxel labels
    assert list(cwd.iterdir()) == []  # the quantizer leaves nothing in the working directory


@pytest.fixture(scope="module")
def int8_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("pair")
    fp32 = tmp / "fp32.onnx"
    export_onnx("unet3d_small.pcrl_ct32", fp32, input_size=16)
    cfg = zoo.get_pretrained_cfg("unet3d_small")
    calib, _ = sample_inputs(cfg, (1, 16, 16, 16), 8, "calibrate")
    int8 = tmp / "int8.onnx"
    quantize_onnx(fp32, int8, calib)
    x, _ = sample_inputs(cfg, (1, 16, 16, 16), 3)
    return fp32, int8, x


def test_int8_tolerance_failure_is_reported(int8_pair: tuple[Path, Path, np.ndarray]) -> None:
    fp32, int8, x = int8_pair
    ok = verify_onnx(int8, fp32, x, [1, 2], atol=float("inf"), rtol=0.0, min_cosine=0.98)
    assert ok.passed and 0.98 < ok.cosine < 1.0  # close, but really quantized
    strict = verify_onnx(int8, fp32, x, [1, 2], atol=float("inf"), rtol=0.0, min_cosine=1.0 - 1e-12)
    assert not strict.passed and "FAILED" in strict.summary()
    assert read_metadata(int8)["model"] == "unet3d_small.pcrl_ct32"  # its default tag; metadata survives quantization
    assert json.loads(read_metadata(int8)["quantization"])["calibration"] == "MinMax"


def test_int8_calibration_methods(int8_pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    fp32, minmax, x = int8_pair
    cfg = zoo.get_pretrained_cfg("unet3d_small")
    calib, _ = sample_inputs(cfg, (1, 16, 16, 16), 8, "calibrate")
    pct = tmp_path / "pct.onnx"
    quantize_onnx(fp32, pct, calib, method="percentile")
    assert json.loads(read_metadata(pct)["quantization"])["calibration"] == "Percentile"
    scales = [{i.name: numpy_helper.to_array(i) for i in onnx.load(str(f)).graph.initializer if i.name.endswith("_scale")}
              for f in (minmax, pct)]
    # clipping the outliers narrows some activation range: another file, still close to fp32
    assert any(not np.allclose(scales[0][k], scales[1][k]) for k in scales[0])
    assert verify_onnx(pct, fp32, x, [1], atol=float("inf"), rtol=0.0, min_cosine=0.98).passed
    for bad in (lambda: quantize_onnx(fp32, tmp_path / "bad.onnx", calib, method="mse"),
                lambda: export_onnx("unet3d_small.pcrl_ct32", tmp_path / "bad.onnx", input_size=16, quantize="int8",
                                    calibration_method="mse")):
        with pytest.raises(ExportError, match="calibration method must be one of"):
            bad()
    assert main(["export", "unet3d_small", "-o", str(tmp_path / "bad.onnx"), "--int8",
                 "--calibration-method", "mse"]) == 2
    assert not (tmp_path / "bad.onnx").exists()


class _Perturbed(nn.Module):
    """A model whose exported graph differs from eager mode (as a broken exporter would make it)."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.shift = shift
        self.pretrained_cfg = zoo.get_pretrained_cfg("resnet18")
        self.in_chans = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.shift if torch.onnx.is_in_onnx_export() else y


def test_perturbed_model_fails_verification_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError, match="beyond tolerance") as info:
        export_onnx(_Perturbed(1e-2), path, input_size=32)
    assert "FAILED" in str(info.value) and "not written" in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # no temporary files left behind
    # the same perturbation is kept (and flagged as unverified) when verification is switched off
    result = export_onnx(_Perturbed(1e-2), path, input_size=32, verify=False)
    assert path.is_file() and result.fp32 is None and "verification" not in read_metadata(path)
    # an unperturbed module passes
    export_onnx(_Perturbed(0.0), tmp_path / "good.onnx", input_size=32)


class _DataDependent(nn.Module):
    """Data-dependent control flow: torch.export refuses it, the TorchScript tracer records one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pretrained_cfg = zoo.get_pretrained_cfg("resnet18")
        self.in_chans = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.abs().sum() >= 0 else -y


def test_torchscript_fallback_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    result = export_onnx(_DataDependent(), path, input_size=32)
    meta = read_metadata(path)
    assert result.exporter == "torchscript" == meta["exporter"]
    assert meta["exporter_fallback_reason"].startswith("dynamo:")
    assert meta["weights"] == "unknown (module given)" and result.fp32.passed
    with pytest.raises(ExportError, match="dynamo: "):
        export_onnx(_DataDependent(), path, input_size=32, exporter="dynamo")


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="Did you mean"):
        export_onnx("pcrl_resnt18", tmp_path / "m.onnx")
    official = next((n for n in zoo.list_pretrained() if zoo.get_pretrained_cfg(n).is_official), None)
    if official is not None:  # registered upstream weights that were not converted here: the fix is named
        with pytest.raises(WeightsNotFoundError, match="zoo convert"):
            export_onnx(official, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="does not exist; create it"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="must end with .onnx"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.pt")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "dir.onnx")
    with pytest.raises(ExportError, match="quantize must be"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.onnx", quantize="int4")
    with pytest.raises(ExportError, match="channel"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.onnx", input_size=(1, 64, 64))
    with pytest.raises(ExportError, match="does not fit a 2D model"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.onnx", input_size=(64, 64, 64, 64))
    with pytest.raises(ExportError, match="returns one tensor"):
        export_onnx(zoo.create_model("unet3d_small"), tmp_path / "m.onnx", input_size=16, features_only=True)
    with pytest.raises(ExportError, match="no zoo pretrained_cfg"):
        export_onnx(nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="exporter must be"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.onnx", input_size=32, exporter="tf")
    with pytest.raises(ExportError, match="does not run"):
        export_onnx("unet_resnet18", tmp_path / "m.onnx", input_size=40)  # not a multiple of 32
    with pytest.raises(ExportError, match="no images"):
        export_onnx("resnet18.pcrl_kermany64", tmp_path / "m.onnx", input_size=32, quantize="int8",
                    calibration_data=tmp_path / "dir.onnx")
    with pytest.raises(ExportError, match="calibration data .* does not exist"):
        export_onnx("unet3d_small.pcrl_ct32", tmp_path / "m.onnx", input_size=16, quantize="int8",
                    calibration_data=tmp_path / "nowhere")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.onnx"
    assert main(["export", "unet3d_small", "-o", str(out), "--input-size", "16", "--batch-size", "2"]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "cosine" in printed.out and "-> ok" in printed.out
    assert "[torch.onnx]" not in printed.out + printed.err  # exporter chatter is silenced
    assert read_metadata(out)["model"] == "unet3d_small"
    assert main(["export", "nope_net", "-o", str(out)]) == 2
    assert "Unknown model" in capsys.readouterr().err
    assert main(["export", "resnet18", "-o", str(tmp_path / "x" / "m.onnx")]) == 2
    assert "mkdir -p" in capsys.readouterr().err
