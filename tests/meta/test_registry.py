"""Registry, names and the pretrained-config schema."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zoo
from zoo.meta.cfg import PretrainedCfg, validate_cfg
from zoo.meta.registry import get_arch_entry, get_tags, list_aliases, resolve_name

REQUIRED_ARCHS = [
    "resnet18", "resnet50", "resnetv2_50x1_bit", "unet_resnet18", "unet3d", "unet3d_seg", "unet3d_small",
    "unet3d_small_seg",
]
# zoo 0.1 names and what they mean now (old names are aliases, never listed)
OLD_NAMES = {  # zoo 0.1 names on purpose
    "pcrl_resnet18.kermany64": "resnet18.pcrl_kermany64",  # zoo 0.1 name
    "pcrl_resnet18": "resnet18.pcrl_kermany64",  # zoo 0.1 name
    "genesis_unet3d_seg.chest_ct": "unet3d_seg.genesis_chest_ct",  # zoo 0.1 name
    "genesis_unet3d_small": "unet3d_small.genesis_ct32",  # zoo 0.1 name
    "pcrl_unet_resnet18": "unet_resnet18",  # zoo 0.1 name
    "mocov2_resnet50": "resnet50",  # zoo 0.1 name
}


def test_required_architectures_are_registered() -> None:
    assert zoo.list_models() == sorted(REQUIRED_ARCHS)


@pytest.mark.parametrize("name", zoo.list_models() + zoo.list_pretrained())
def test_every_entry_matches_the_schema(name: str) -> None:
    cfg = zoo.get_pretrained_cfg(name)
    assert validate_cfg(cfg) == []
    assert cfg.architecture == name.split(".")[0]
    assert PretrainedCfg.from_dict(cfg.to_dict()) == cfg


def test_schema_catches_bad_entries() -> None:
    good = zoo.get_pretrained_cfg("resnet50")
    assert validate_cfg(good.replace(input_size=(3, 224))) != []
    assert validate_cfg(good.replace(spatial_dims=3)) != []
    assert any("sha256" in p for p in validate_cfg(good.replace(tag="x", file="x.safetensors", sha256="abc")))
    assert any("metrics" in p for p in validate_cfg(good.replace(
        tag="x", file="x.safetensors", sha256="0" * 64, file_size=1, pretrain_data="d", modality="m",
        license_weights="l", license_data="l", command="c")))
    assert validate_cfg(good.replace(verified=True)) != []


def test_wildcards_exclude_and_pretrained(register_weights) -> None:
    assert zoo.list_models("unet3d*") == ["unet3d", "unet3d_seg", "unet3d_small", "unet3d_small_seg"]
    assert zoo.list_models(["unet3d*", "resnet*"], exclude_filters=["*_seg", "*_small"]) == [
        "resnet18", "resnet50", "resnetv2_50x1_bit", "unet3d"]
    register_weights("resnet50.mocov2_unit", zoo.create_model("resnet50").state_dict())
    assert "resnet50.mocov2_unit" in zoo.list_pretrained("resnet50.*")
    assert "resnet50.mocov2_unit" in zoo.list_models("resnet50", pretrained=True)
    assert zoo.is_model("resnet50.mocov2_unit") and zoo.is_model("resnet50")
    assert not zoo.is_model("resnet50.nope") and not zoo.is_model("resnet19")
    # no default tag registered for resnet50: the bare name is the network without weights
    assert zoo.get_pretrained_cfg("resnet50").tag == "" and not zoo.get_pretrained_cfg("resnet50").has_weights
    assert zoo.list_pretrained("resnet18.swcl_*") == ["resnet18.swcl_fundus64", "resnet18.swcl_swap"]
    assert zoo.list_pretrained("*.pcrl_*") == ["resnet18.pcrl_kermany64", "unet3d_small.pcrl_ct32",
                                              "unet3d_small_seg.pcrl_ct32", "unet_resnet18.pcrl_kermany64"]


def test_metadata_filters() -> None:
    assert zoo.list_pretrained(method="pcrl", modality="cxr") == ["resnet18.pcrl_kermany64",
                                                                  "unet_resnet18.pcrl_kermany64"]
    assert all(zoo.get_pretrained_cfg(n).method == "pcrlv2" for n in zoo.list_pretrained(method="pcrlv2"))
    # wildcards in values, case-insensitive; several values
    assert zoo.list_pretrained(method="pcrl*") == sorted(zoo.list_pretrained(method=["pcrl", "pcrlv2"]))
    assert "resnet18.pcrlv2_kermany64" in zoo.list_pretrained(method="PCRL*")
    kermany = zoo.list_pretrained(pretrain_data="*kermany*")
    assert kermany and all("Kermany" in zoo.get_pretrained_cfg(n).pretrain_data for n in kermany)
    assert "resnet18.pcrlv2_chest" not in kermany
    # a network matches when one of its weight tags does
    assert zoo.list_models(method="genesis") == ["unet3d", "unet3d_seg", "unet3d_small", "unet3d_small_seg"]
    assert zoo.list_models(modality="fundus") == ["resnet18", "resnetv2_50x1_bit"]
    assert zoo.list_models("unet3d_small*", method="pcrl", modality="ct") == ["unet3d_small", "unet3d_small_seg"]
    assert zoo.list_models(method="nope") == [] and zoo.list_pretrained(modality="mri") == []


def test_default_tags_are_explicit_and_shipped() -> None:
    defaults = {n: get_tags(n)[1] for n in zoo.list_models()}
    assert defaults == {
        "resnet18": "micle_kermany64", "resnet50": None, "resnetv2_50x1_bit": None,
        "unet_resnet18": "pcrl_kermany64", "unet3d": None, "unet3d_seg": None,
        "unet3d_small": "pcrl_ct32", "unet3d_small_seg": "pcrl_ct32",
    }
    for network, tag in defaults.items():
        if tag:  # a default is weights zoo ships (verified), never an entry that must be converted first
            cfg = zoo.get_pretrained_cfg(network)
            assert cfg.tag == tag and cfg.verified and not cfg.is_official and cfg.metrics


def test_bare_network_without_default_names_its_tags() -> None:
    with pytest.raises(zoo.WeightsNotFoundError, match=r"zoo list unet3d\* --pretrained"):
        zoo.create_model("unet3d", pretrained=True)


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_names_are_aliases_with_a_warning(old: str) -> None:
    new = OLD_NAMES[old]
    with pytest.warns(DeprecationWarning, match=rf"'{old}' is a deprecated zoo 0.1 name: use '{new}'"):
        assert resolve_name(old) == new
    with pytest.warns(DeprecationWarning, match=new):
        cfg = zoo.get_pretrained_cfg(old)
    assert cfg == zoo.get_pretrained_cfg(new)
    assert zoo.is_model(old)
    assert old not in zoo.list_models() + zoo.list_pretrained()


def test_create_model_with_an_old_name_warns_and_loads_the_same_network() -> None:
    import torch

    with pytest.warns(DeprecationWarning, match="use 'unet3d_seg.genesis_chest_ct'") as record:
        model = zoo.create_model("genesis_unet3d_seg.chest_ct")  # zoo 0.1 name
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert model.pretrained_cfg.name == "unet3d_seg.genesis_chest_ct"
    assert model.pretrained_cfg.arch_kwargs["norm"] == "batch_stats_bn"  # what the old name implied
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):
        old = zoo.create_model("pcrl_resnet18", num_classes=2)  # zoo 0.1 name
    torch.manual_seed(0)
    new = zoo.create_model("resnet18", num_classes=2)
    assert type(old) is type(new)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))


def test_every_alias_resolves_to_a_registered_name() -> None:
    assert len(list_aliases()) == 19
    for old in list_aliases():
        assert zoo.is_model(resolve_name(old, warn=False)), old


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(zoo.UnknownModelError, match="resnet18"):
        zoo.get_pretrained_cfg("resnt18")
    with pytest.raises(zoo.UnknownModelError, match="Unknown tag 'nope'.*resnet18.pcrl_kermany64"):
        zoo.get_pretrained_cfg("resnet18.nope")
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
        "zoo.list_models(); zoo.list_pretrained(); zoo.get_pretrained_cfg('unet3d')\n"
        "zoo.cli.main(['list']); zoo.cli.main(['info', 'resnet18'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("old", "network", "arch_kwargs"), [
    ("pcrl_resnet18.kermany64", "resnet18", {"depth": 18}),  # zoo 0.1 name
    ("genesis_unet3d_small", "unet3d_small", {"norm": "batch_stats_bn", "width": 16}),  # zoo 0.1 name
])
def test_local_dir_written_by_zoo_0_1_loads_with_a_warning(tmp_path, old: str, network: str, arch_kwargs: dict) -> None:
    """A repository folder of zoo 0.1 (config.json's zoo block names the old architecture) still loads."""
    import json

    import torch
    from safetensors.torch import save_file

    from zoo._io import sha256_file

    torch.manual_seed(0)
    src = zoo.create_model(network, **arch_kwargs)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "model.safetensors"))
    arch, _, tag = old.partition(".")
    cfg = zoo.get_pretrained_cfg(network).to_dict()
    cfg.update(architecture=arch, tag=tag, arch_kwargs=arch_kwargs, file=None, sha256=sha256_file(
        tmp_path / "model.safetensors"), file_size=(tmp_path / "model.safetensors").stat().st_size)
    zoo_block = {"format": 1, "name": old, "zoo_version": "0.1.0", "pretrained_cfg": cfg}
    (tmp_path / "config.json").write_text(json.dumps({"architecture": arch, "zoo": zoo_block}))

    with pytest.warns(DeprecationWarning, match=f"'{old}' is a deprecated zoo 0.1 name: use '{network}"):
        model = zoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert model.pretrained_cfg.architecture == network
    assert {k: model.pretrained_cfg.arch_kwargs[k] for k in arch_kwargs} == arch_kwargs  # as recorded
    assert type(model) is type(src)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values(), strict=True))
