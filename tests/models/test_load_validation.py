"""Weights that are not weights are refused at load: values, dtypes, partial heads, arch kwargs, config.json."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.convert import ConvertError, convert_checkpoint
from zoo.models import builder
from zoo.models.builder import CheckpointError, adapt_input_conv, check_cfg_modules, check_state_dict

SMALL = "resnet18"
Edit = Callable[[dict[str, torch.Tensor]], None]


def _file(tmp_path: Path, edit: Edit | None = None, arch: str = SMALL, metadata: dict[str, str] | None = None,
          **kwargs) -> Path:
    sd = {k: v.clone() for k, v in zoo.create_model(arch, **kwargs).state_dict().items()}
    if edit is not None:
        edit(sd)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def _set(key: str, value: torch.Tensor) -> Edit:
    return lambda sd: sd.__setitem__(key, value)


def _nan(key: str, n: int = 1) -> Edit:
    def edit(sd: dict[str, torch.Tensor]) -> None:
        sd[key].view(-1)[:n] = float("nan")
    return edit


# --- values and dtypes ---------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "needles"), [
    (_nan("layer2.0.conv1.weight", 3), ["NaN or Inf values", "layer2.0.conv1.weight (3 of"]),
    (_set("bn1.bias", torch.full((64,), float("inf"))), ["NaN or Inf", "bn1.bias (64 of 64)"]),
    (_set("layer1.0.bn1.running_var", -torch.ones(64)), ["negative BatchNorm running_var", "layer1.0.bn1.running_var"]),
    (_set("conv1.weight", torch.ones(64, 3, 7, 7, dtype=torch.int32)), ["wrong dtype", "conv1.weight (int32, floats"]),
    (_set("bn1.weight", torch.ones(64, dtype=torch.bool)), ["bn1.weight (bool, floats expected)"]),
    (_set("bn1.weight", torch.ones(64, dtype=torch.complex64)), ["bn1.weight (complex64"]),
    (_set("bn1.weight", torch.ones(64).to(torch.float8_e4m3fn)), ["bn1.weight (float8_e4m3fn"]),
    (_set("bn1.num_batches_tracked", torch.tensor(1.5)), ["bn1.num_batches_tracked (float32, integers expected)"]),
])
def test_bad_values_are_refused_by_checkpoint_path(tmp_path: Path, edit: Edit, needles: list[str]) -> None:
    path = _file(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        zoo.create_model(SMALL, checkpoint_path=path)
    for needle in needles + ["ZOO_CHECK_WEIGHTS=0"]:
        assert needle in str(err.value), str(err.value)


def test_long_lists_are_shortened(tmp_path: Path) -> None:
    def all_nan(sd: dict[str, torch.Tensor]) -> None:
        for v in sd.values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"\.\.\. \(\d+ in all\)"):
        zoo.create_model(SMALL, checkpoint_path=_file(tmp_path, all_nan))


def test_half_precision_and_integer_counters_load(tmp_path: Path) -> None:
    def half(sd: dict[str, torch.Tensor]) -> None:
        for k, v in sd.items():
            sd[k] = v.half() if v.is_floating_point() else v
    zoo.create_model(SMALL, checkpoint_path=_file(tmp_path, half))  # num_batches_tracked stays int64


def test_opt_out_loads_what_you_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, _nan("layer1.0.conv1.weight"))
    monkeypatch.setenv(builder.CHECK_WEIGHTS_ENV, "0")
    model = zoo.create_model(SMALL, checkpoint_path=path)
    assert torch.isnan(model.layer1[0].conv1.weight).any()
    monkeypatch.delenv(builder.CHECK_WEIGHTS_ENV)
    fresh = zoo.create_model(SMALL)
    builder.load_checkpoint(fresh, path, fresh.pretrained_cfg, check_values=False)
    assert torch.isnan(fresh.layer1[0].conv1.weight).any()
    with pytest.raises(CheckpointError):
        builder.load_checkpoint(fresh, path, fresh.pretrained_cfg)


def test_check_state_dict_without_a_model() -> None:
    check_state_dict({"a.weight": torch.ones(2), "bn.num_batches_tracked": torch.tensor(3)})
    with pytest.raises(CheckpointError, match="a.weight"):
        check_state_dict({"a.weight": torch.tensor([1.0, float("nan")])}, where="x.pt")
    with pytest.raises(CheckpointError, match="a.weight \\(int64"):
        check_state_dict({"a.weight": torch.ones(2, dtype=torch.long)})


def test_local_dir_with_matching_sha256_is_still_checked(tmp_path: Path) -> None:
    model = zoo.create_model(SMALL)
    with torch.no_grad():
        model.layer4[1].bn2.running_var.fill_(-1.0)
    folder = zoo.save_for_hf(model, tmp_path / "repo")  # config.json records the file's true sha256
    with pytest.raises(CheckpointError, match="layer4.1.bn2.running_var"):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)


def _opt(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"lr": 0.1, "epochs": 240, "b": 64, **kwargs})


def test_convert_refuses_non_finite_weights(tmp_path: Path) -> None:
    sd = zoo.create_model("resnet18").state_dict()
    sd["layer3.0.conv2.weight"][0, 0, 0, 0] = float("inf")
    src = tmp_path / "simance_multi_crop_chest_pretask_1.0_240.pt"
    torch.save({"opt": _opt(), "state_dict": sd, "epoch": 240}, src)
    out = tmp_path / "out.safetensors"
    with pytest.raises(ConvertError, match="layer3.0.conv2.weight"):
        convert_checkpoint(src, "pcrlv2-2d", out)
    assert not out.exists() and not list(tmp_path.glob("*.tmp.safetensors"))


# --- heads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("drop", "kept"), [("fc.bias", "fc.weight"), ("fc.weight", "fc.bias")])
def test_half_a_head_is_refused(tmp_path: Path, drop: str, kept: str) -> None:
    path = _file(tmp_path, lambda sd: sd.pop(drop), num_classes=2)
    with pytest.raises(CheckpointError, match=f"head is incomplete: it has {kept} but not {drop}"):
        zoo.create_model(SMALL, checkpoint_path=path, num_classes=2)


def test_random_head_warns_once_per_name(register_weights, caplog: pytest.LogCaptureFixture) -> None:
    register_weights(f"{SMALL}.headtest", zoo.create_model(SMALL).state_dict())
    builder._WARNED_HEADS.discard(f"{SMALL}.headtest")
    with caplog.at_level(logging.INFO, logger="zoo.models.builder"):
        zoo.create_model(f"{SMALL}.headtest", pretrained=True, num_classes=2)
        zoo.create_model(f"{SMALL}.headtest", pretrained=True, num_classes=3)
        zoo.create_model(f"{SMALL}.headtest", pretrained=True)  # num_classes=0: no head, nothing to say
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    text = warnings[0].getMessage()
    assert "randomly initialised" in text and "linear probe or fine-tuning" in text and "fc.weight" in text
    assert sum("randomly initialised" in r.getMessage() for r in caplog.records) == 2  # the repeat at INFO


def test_random_head_is_quiet_where_the_head_is_trained_next(register_weights, caplog: pytest.LogCaptureFixture) -> None:
    """Fine-tuning and probes build a new head on purpose: no warning there, and the first warning outside
    the block is still given."""
    register_weights(f"{SMALL}.headquiet", zoo.create_model(SMALL).state_dict())
    builder._WARNED_HEADS.discard(f"{SMALL}.headquiet")
    with caplog.at_level(logging.INFO, logger="zoo.models.builder"):
        with builder.head_trained_next():
            zoo.create_model(f"{SMALL}.headquiet", pretrained=True, num_classes=2)
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        zoo.create_model(f"{SMALL}.headquiet", pretrained=True, num_classes=2)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


# --- architecture arguments recorded in the file ---------------------------------------------------
@pytest.mark.parametrize(("made", "built"), [("gn", "in"), ("in", "gn")])
def test_norm_recorded_in_the_file_must_match(tmp_path: Path, made: str, built: str) -> None:
    arch = "unet3d_small_seg"
    meta = {"format": "pt", "name": arch, "arch_kwargs": json.dumps({"norm": made})}  # as `zoo convert` writes
    path = _file(tmp_path, arch=arch, metadata=meta, norm=made)
    with pytest.raises(CheckpointError, match=f"norm='{made}' \\(model: '{built}'\\).*Create the model with norm='{made}'"):
        zoo.create_model(arch, checkpoint_path=path, norm=built)
    with pytest.raises(CheckpointError, match="norm="):
        zoo.create_model("unet3d_small", checkpoint_path=path, norm=built)  # the encoder too
    zoo.create_model(arch, checkpoint_path=path, norm=made)


def test_registry_arch_kwargs_of_the_recorded_name_count(tmp_path: Path) -> None:
    """A convert output records only what differs from its entry: the entry's kwargs are the rest."""
    arch = "unet3d_small_seg.genesis_ct32"  # registered with norm='batch_stats_bn'
    path = _file(tmp_path, arch=arch, metadata={"name": arch, "arch_kwargs": "{}"})
    with pytest.raises(CheckpointError, match="norm='batch_stats_bn' \\(model: 'gn'\\)"):
        zoo.create_model(arch, checkpoint_path=path, norm="gn")
    # running instead of batch statistics: same parameters and buffers, a documented choice
    zoo.create_model(arch, checkpoint_path=path, norm="bn")


def test_files_without_recorded_kwargs_load(tmp_path: Path) -> None:
    path = _file(tmp_path, arch="unet3d_small_seg", metadata={"format": "pt", "arch_kwargs": "not json"})
    zoo.create_model("unet3d_small_seg", checkpoint_path=path, norm="bn")


# --- first convolution -----------------------------------------------------------------------------
@pytest.mark.parametrize("weight", [torch.ones(8), torch.tensor(1.0), torch.ones(8, 3)])
def test_adapt_input_conv_refuses_non_conv_weights(weight: torch.Tensor) -> None:
    with pytest.raises(CheckpointError, match="not a convolution's weight"):
        adapt_input_conv(1, weight)


def test_adapt_input_conv_refuses_empty_channels_and_bad_in_chans() -> None:
    with pytest.raises(CheckpointError, match="no input or output channels"):
        adapt_input_conv(1, torch.ones(8, 0, 3, 3))
    with pytest.raises(ValueError, match="positive int"):
        adapt_input_conv(0, torch.ones(8, 3, 3, 3))


def test_first_conv_of_another_rank_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, _set("conv1.weight", torch.ones(64, 3)))
    with pytest.raises(CheckpointError, match="conv1.weight has shape \\(64, 3\\)"):
        zoo.create_model(SMALL, checkpoint_path=path, in_chans=1)


# --- pretrained config against the model -----------------------------------------------------------
@pytest.mark.parametrize("arch", ["resnet18", "resnetv2_50x1_bit", "unet_resnet18", "unet3d_small.genesis_ct32",
                                  "unet3d_small_seg.genesis_ct32"])
@pytest.mark.parametrize("num_classes", [0, 2])
def test_registered_modules_are_head_and_stem(arch: str, num_classes: int) -> None:
    with torch.device("meta"):
        model = zoo.create_model(arch, num_classes=num_classes)
    check_cfg_modules(model, model.pretrained_cfg)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("classifier", "conv1", "'classifier' = 'conv1' is not the output layer"),
    ("classifier", "nothing", "'classifier' = 'nothing' is not a module"),
    ("first_conv", "fc", "'first_conv' = 'fc' is not the first convolution"),
    ("first_conv", "layer1.0.conv1", "'first_conv' = 'layer1.0.conv1' is not the first convolution"),
])
def test_config_naming_other_modules_is_refused(tmp_path: Path, field: str, value: str, needle: str) -> None:
    folder = zoo.save_for_hf(zoo.create_model(SMALL), tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    config["zoo"]["pretrained_cfg"][field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=needle):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)


def test_config_num_classes_contradicting_the_head_is_refused(tmp_path: Path) -> None:
    folder = zoo.save_for_hf(zoo.create_model(SMALL, num_classes=2), tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    config["zoo"]["pretrained_cfg"]["num_classes"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="says num_classes=5.*fc.weight \\(2, 512\\)"):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)
    model = zoo.create_model(f"local-dir:{folder}", pretrained=True, num_classes=7)  # a new head: asked for
    assert model.fc.out_features == 7


def test_config_with_null_sha256_is_refused(tmp_path: Path) -> None:
    folder = zoo.save_for_hf(zoo.create_model(SMALL), tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    config["zoo"]["pretrained_cfg"]["sha256"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="pretrained_cfg.sha256 is missing or null"):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)


def test_deeply_nested_config_json_is_a_clear_error(tmp_path: Path) -> None:
    folder = zoo.save_for_hf(zoo.create_model(SMALL), tmp_path / "repo")
    (folder / "config.json").write_text('{"zoo": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="cannot read"):
        zoo.create_model(f"local-dir:{folder}")


@pytest.mark.parametrize(("arch_kwargs", "needle"), [
    ({"nonsense": 1}, "takes no argument(s) ['nonsense']"),
    ({"drop_rate": "x"}, "argument drop_rate='x' should be of type float"),
    ({"depth": "18"}, "arch_kwargs.depth must be of type int like 18"),
])
def test_config_arch_kwargs_the_model_cannot_take(tmp_path: Path, arch_kwargs: dict, needle: str) -> None:
    folder = zoo.save_for_hf(zoo.create_model(SMALL), tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    config["zoo"]["pretrained_cfg"]["arch_kwargs"].update(arch_kwargs)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as err:
        zoo.create_model(f"local-dir:{folder}", pretrained=True)
    assert needle in str(err.value) and "config.json" in str(err.value), str(err.value)


def test_model_kwargs_typos_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"UNet3DEncoder takes no argument\(s\) \['widht'\]"):
        zoo.create_model("unet3d_small", widht=8)
    with torch.device("meta"):
        zoo.create_model("unet3d_small", drop_rate=__import__("numpy").float32(0.1))  # numpy scalars are numbers
