"""Loading weights: strictness, heads, in_chans adaptation, integrity, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from tests.conftest import small_input
from zoo._io import sha256_file
from zoo.hub import integrity as _integrity
from zoo.models.builder import adapt_input_conv


def _state(arch: str, **kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return zoo.create_model(arch, **kwargs).state_dict()


@pytest.mark.parametrize("arch", ["resnet18", "resnetv2_50x1_bit", "unet_resnet18", "unet3d_seg"])
def test_pretrained_round_trip_gives_identical_outputs(arch: str, register_weights) -> None:
    torch.manual_seed(0)
    src = zoo.create_model(arch).eval()
    register_weights(f"{arch}.unit", src.state_dict())
    model = zoo.create_model(f"{arch}.unit", pretrained=True).eval()
    x = small_input(arch)
    with torch.no_grad():
        assert torch.equal(src(x), model(x))
    assert model.pretrained_cfg.name == f"{arch}.unit"


def test_one_checkpoint_loads_the_encoder_and_the_segmentation_model(register_weights) -> None:
    full = zoo.create_model("unet3d_seg").eval()
    path = register_weights("unet3d_seg.unit", full.state_dict())
    encoder = zoo.create_model("unet3d", checkpoint_path=path, num_classes=2).eval()
    x = small_input("unet3d", batch=1)
    with torch.no_grad():
        assert torch.equal(encoder.forward_features(x), full._encode(x)[-1])
    # and the 2D PCRL U-Net checkpoint gives its encoder to the plain ResNet
    unet = zoo.create_model("unet_resnet18").eval()
    save_file(unet.state_dict(), str(path.with_name("u.safetensors")))
    resnet = zoo.create_model("resnet18", checkpoint_path=path.with_name("u.safetensors")).eval()
    x2 = small_input("resnet18", batch=1)
    with torch.no_grad():
        assert torch.equal(resnet.forward_features(x2), unet.encoder.forward_features(x2))


def test_head_is_dropped_only_when_num_classes_differs(register_weights, caplog) -> None:
    sd = _state("resnet18", num_classes=10)
    register_weights("resnet18.head10", sd, num_classes=10)
    same = zoo.create_model("resnet18.head10", pretrained=True)
    assert torch.equal(same.fc.weight, sd["fc.weight"])
    with caplog.at_level("INFO"):
        other = zoo.create_model("resnet18.head10", pretrained=True, num_classes=3)
    assert "dropped the checkpoint's classifier head" in caplog.text
    assert other.fc.out_features == 3
    assert torch.equal(other.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    pooled = zoo.create_model("resnet18.head10", pretrained=True, num_classes=0).eval()
    assert pooled(torch.randn(1, 3, 32, 32)).shape == (1, 512)


@pytest.mark.parametrize("arch,src_c,dst_c", [
    ("resnet18", 3, 1), ("resnet18", 1, 3), ("resnet18", 3, 6),
    ("unet3d", 1, 3), ("unet3d", 2, 1),
])
def test_first_conv_adapts_in_both_directions(arch: str, src_c: int, dst_c: int, tmp_path: Path) -> None:
    sd = _state(arch, in_chans=src_c)
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    model = zoo.create_model(arch, in_chans=dst_c, checkpoint_path=path).eval()
    cfg = zoo.get_pretrained_cfg(arch)
    w = model.get_submodule(cfg.first_conv).weight
    assert w.shape[1] == dst_c
    src = sd[f"{cfg.first_conv}.weight"]
    # a constant image gives the same first-layer response before and after adaptation
    assert torch.allclose(w.sum(1), src.sum(1), atol=1e-5)


def test_adapt_input_conv_rules() -> None:
    w = torch.randn(4, 3, 3, 3, 3)
    assert torch.allclose(adapt_input_conv(1, w), w.sum(1, keepdim=True))
    w6 = adapt_input_conv(6, w)
    assert torch.allclose(w6[:, 3:], w6[:, :3]) and torch.allclose(w6[:, :3], w / 2)
    assert adapt_input_conv(3, w) is w


def test_strict_load_names_missing_unexpected_and_misshaped_keys(tmp_path: Path) -> None:
    sd = _state("resnet18")
    path = tmp_path / "w.safetensors"
    broken = dict(sd)
    del broken["layer3.0.bn1.running_mean"]
    broken["extra.weight"] = torch.zeros(1)
    broken["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    save_file(broken, str(path))
    with pytest.raises(zoo.CheckpointError) as err:
        zoo.create_model("resnet18", checkpoint_path=path)
    msg = str(err.value)
    assert "missing keys: layer3.0.bn1.running_mean" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "layer1.0.conv1.weight: checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)" in msg


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_state("unet3d_seg"), str(path))
    with pytest.raises(zoo.CheckpointError, match="does not fit ResNet"):
        zoo.create_model("resnet18", checkpoint_path=path)


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    sd = _state("resnet18")
    good = tmp_path / "w.safetensors"
    save_file(sd, str(good))
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(zoo.CheckpointError, match="truncated or corrupted"):
        zoo.create_model("resnet18", checkpoint_path=truncated)
    junk = tmp_path / "j.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(zoo.CheckpointError, match="not a readable safetensors"):
        zoo.create_model("resnet18", checkpoint_path=junk)
    pickle = tmp_path / "w.pth"
    torch.save(sd, pickle)
    with pytest.raises(zoo.CheckpointError, match="zoo convert"):
        zoo.create_model("resnet18", checkpoint_path=pickle)
    with pytest.raises(zoo.CheckpointError, match="does not exist"):
        zoo.create_model("resnet18", checkpoint_path=tmp_path / "nope.safetensors")


def test_hash_mismatch_loads_nothing_and_names_both_hashes(register_weights) -> None:
    path = register_weights("resnet18.unit", _state("resnet18"))
    zoo.create_model("resnet18.unit", pretrained=True)  # stamps the good file
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip one byte, same size
    path.write_bytes(bytes(data))
    cfg = zoo.get_pretrained_cfg("resnet18.unit")
    with pytest.raises(zoo.IntegrityError) as err:
        zoo.create_model("resnet18.unit", pretrained=True)
    assert cfg.sha256 in str(err.value) and sha256_file(path) in str(err.value)
    path.write_bytes(b"short")
    with pytest.raises(zoo.IntegrityError, match="truncated"):
        zoo.create_model("resnet18.unit", pretrained=True)


def test_verification_is_cached_for_warm_loads(register_weights, monkeypatch) -> None:
    register_weights("resnet18.unit", _state("resnet18"))
    calls = []
    real = _integrity.sha256_file
    monkeypatch.setattr(_integrity, "sha256_file", lambda p: calls.append(p) or real(p))
    zoo.create_model("resnet18.unit", pretrained=True)
    zoo.create_model("resnet18.unit", pretrained=True)
    assert len(calls) == 1


def test_missing_weights_list_every_source(register_weights, monkeypatch) -> None:
    path = register_weights("resnet18.unit", _state("resnet18"))
    path.unlink()
    with pytest.raises(zoo.WeightsNotFoundError) as err:
        zoo.create_model("resnet18.unit", pretrained=True)
    assert "ZOO_WEIGHTS_DIR" in str(err.value) and "weights/" in str(err.value)
    with pytest.raises(zoo.WeightsNotFoundError, match="no registered pretrained weights"):
        zoo.create_model("resnet50", pretrained=True)  # no weights registered


def test_overlay_changes_the_pretrained_cfg() -> None:
    model = zoo.create_model("resnet18", pretrained_cfg_overlay={"input_size": (3, 128, 128)})
    assert model.pretrained_cfg.input_size == (3, 128, 128)


# --- what was loaded, resolved and hashed once -------------------------------------------------------
def _count_hashes(monkeypatch) -> list:
    calls: list = []
    real = _integrity.sha256_file
    monkeypatch.setattr(_integrity, "sha256_file", lambda p: calls.append(p) or real(p))
    return calls


def test_model_records_what_it_loaded_hashed_once_cold_and_never_warm(register_weights, monkeypatch) -> None:
    path = register_weights("resnet18.unit", _state("resnet18"))
    calls = _count_hashes(monkeypatch)
    model = zoo.create_model("resnet18.unit", pretrained=True)
    assert len(calls) == 1  # cold: one full hash
    src = model.pretrained_source
    assert isinstance(src, zoo.hub.ResolvedWeights) and src.verified and src.path == path
    assert src.sha256 == zoo.get_pretrained_cfg("resnet18.unit").sha256 == sha256_file(path)
    assert src.name == "resnet18.unit" and "ZOO_WEIGHTS_DIR" in src.source and src.size == path.stat().st_size
    calls.clear()
    feats = zoo.create_model("resnet18.unit", pretrained=True, features_only=True)
    assert calls == [] and feats.pretrained_source == src  # warm: the stamp, zero hashes; on the wrapper too
    # the record itself loads the same file with no resolution and no hash
    again = zoo.create_model("resnet18", num_classes=0, checkpoint_path=src)
    assert calls == [] and again.pretrained_source is src
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True))
    assert zoo.create_model("resnet18").pretrained_source is None  # random init


def test_checkpoint_path_is_hashed_once_and_marked_unverified(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "mine.safetensors"
    save_file(_state("resnet18"), str(path))
    calls = _count_hashes(monkeypatch)
    model = zoo.create_model("resnet18", checkpoint_path=path)
    assert len(calls) == 1
    src = model.pretrained_source
    assert src.sha256 == sha256_file(path) and not src.verified and src.source == "checkpoint_path"


def test_eval_and_export_read_the_record_instead_of_resolving_again(register_weights, monkeypatch) -> None:
    from zoo.eval.harness import build_classifier, resolve_source
    from zoo.export.onnx import _resolve_model

    register_weights("resnet18.unit", _state("resnet18"))
    calls = _count_hashes(monkeypatch)
    source = resolve_source("resnet18.unit")
    for seed in range(3):
        model = build_classifier(source, "pretrained", num_classes=2, seed=seed)
        assert model.pretrained_source is source.weights
    assert len(calls) == 1 and source.sha256 == source.weights.sha256  # one hash for the whole evaluation
    calls.clear()
    model, _, sha = _resolve_model("resnet18.unit", False, None, None, {})
    assert calls == [] and sha == source.sha256 and model.pretrained_source.verified
