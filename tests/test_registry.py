"""Registry, names and the pretrained-config schema."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zoo
from zoo.meta.cfg import PretrainedCfg, validate_cfg
from zoo.meta.registry import get_arch_entry

REQUIRED_ARCHS = [
    "pcrl_resnet18", "pcrl_unet3d", "pcrlv2_resnet18", "pcrlv2_unet3d", "swcl_resnet18",
    "swcl_resnetv2_50x1", "genesis_unet3d", "simclr_resnet18", "mocov2_resnet18",
]


def test_required_architectures_are_registered() -> None:
    names = zoo.list_models()
    for arch in REQUIRED_ARCHS:
        assert arch in names


@pytest.mark.parametrize("name", zoo.list_models() + zoo.list_pretrained())
def test_every_entry_matches_the_schema(name: str) -> None:
    cfg = zoo.get_pretrained_cfg(name)
    assert validate_cfg(cfg) == []
    assert cfg.architecture == name.split(".")[0]
    assert PretrainedCfg.from_dict(cfg.to_dict()) == cfg


def test_schema_catches_bad_entries() -> None:
    good = zoo.get_pretrained_cfg("mocov2_resnet50")
    assert validate_cfg(good.replace(input_size=(3, 224))) != []
    assert validate_cfg(good.replace(spatial_dims=3)) != []
    assert any("sha256" in p for p in validate_cfg(good.replace(tag="x", file="x.safetensors", sha256="abc")))
    assert any("metrics" in p for p in validate_cfg(good.replace(
        tag="x", file="x.safetensors", sha256="0" * 64, file_size=1, pretrain_data="d", modality="m",
        license_weights="l", license_data="l", command="c")))
    assert validate_cfg(good.replace(verified=True)) != []


def test_wildcards_exclude_and_pretrained(register_weights) -> None:
    assert zoo.list_models("pcrl_*") == sorted(n for n in zoo.list_models() if n.startswith("pcrl_"))
    assert "pcrlv2_resnet18" not in zoo.list_models("pcrl_*")
    assert zoo.list_models(["genesis*", "swcl*"], exclude_filters=["*_seg", "*_small"]) == [
        "genesis_unet3d", "swcl_resnet18", "swcl_resnetv2_50x1"]
    import torch

    register_weights("mocov2_resnet50.unit", zoo.create_model("mocov2_resnet50").state_dict())
    assert "mocov2_resnet50.unit" in zoo.list_pretrained("mocov2_resnet50*")
    assert "mocov2_resnet50.unit" in zoo.list_models("mocov2_resnet50", pretrained=True)
    assert zoo.is_model("mocov2_resnet50.unit") and zoo.is_model("mocov2_resnet50")
    assert not zoo.is_model("mocov2_resnet50.nope") and not zoo.is_model("resnet18")
    # a bare arch resolves to its default (first) tag; shipped weights count as pretrained
    assert zoo.get_pretrained_cfg("mocov2_resnet50").tag == "unit"
    assert zoo.get_pretrained_cfg("pcrl_resnet18").tag == "kermany64"
    # zoo's own loadable weights come before an official entry that must be converted first
    assert zoo.get_pretrained_cfg("swcl_resnet18").tag == "fundus64"
    assert zoo.list_pretrained("swcl_resnet18*") == ["swcl_resnet18.fundus64", "swcl_resnet18.swap"]
    assert "pcrl_resnet18.kermany64" in zoo.list_models("pcrl_*", pretrained=True)
    del torch


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(zoo.UnknownModelError, match="pcrl_resnet18"):
        zoo.get_pretrained_cfg("pcrl_resnt18")
    with pytest.raises(zoo.UnknownModelError, match="Unknown tag 'nope'"):
        zoo.get_pretrained_cfg("pcrl_resnet18.nope")
    with pytest.raises(zoo.UnknownModelError, match="zoo list"):
        zoo.create_model("no_such_model")
    with pytest.raises(zoo.UnknownModelError):
        get_arch_entry("xyz")


def test_register_model_decorator_adds_a_user_model() -> None:
    from zoo.meta import registry as _registry

    @zoo.register_model
    def my_tiny_model(pretrained: bool = False, **kwargs):  # noqa: ANN202
        """A user model."""
        import torch

        return torch.nn.Linear(2, kwargs.get("num_classes") or 1)

    try:
        assert "my_tiny_model" in zoo.list_models("my_*")
        model = zoo.create_model("my_tiny_model", num_classes=3)
        assert model.out_features == 3
    finally:
        _registry._archs.pop("my_tiny_model")


def test_metadata_is_readable_without_torch() -> None:
    code = (
        "import sys, zoo, zoo.cli\n"
        "zoo.list_models(); zoo.list_pretrained(); zoo.get_pretrained_cfg('pcrl_unet3d')\n"
        "zoo.cli.main(['list']); zoo.cli.main(['info', 'pcrl_resnet18'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
