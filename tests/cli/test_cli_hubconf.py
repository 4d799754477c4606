"""The ``zoo`` command and the torch.hub entry points."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import zoo
from tests.conftest import REPO
from zoo.cli import main
from zoo.meta.registry import list_aliases


def test_list_and_patterns(capsys) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["network", "default", "tag", "tags", "description"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert sorted(rows) == zoo.list_models()
    assert rows["resnet18"] == ["micle_kermany64", str(len(zoo.list_pretrained("resnet18.*")))]
    assert rows["resnet50"] == ["-", "0"]
    assert main(["list", "unet3d_small*"]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    assert main(["list", "nothing*"]) == 1


def test_list_filters_by_method_and_modality(capsys) -> None:
    assert main(["list", "--method", "pcrl", "--modality", "ct"]) == 0
    assert [r.split()[0] for r in capsys.readouterr().out.splitlines()[1:]] == ["unet3d_small", "unet3d_small_seg"]
    assert main(["list", "--pretrained", "--method", "pcrl*", "--modality", "cxr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["network.tag", "method", "modality", "input", "status"]
    assert [r.split()[0] for r in lines[1:]] == zoo.list_pretrained(method="pcrl*", modality="cxr")
    row = next(r.split() for r in lines if r.startswith("resnet18.pcrl_kermany64 "))
    assert row[1:6] == ["pcrl", "cxr", "64x64", "verified", "CC-BY-4.0"]
    assert "unverified (convert)" in next(r for r in lines if r.startswith("resnet18.pcrlv2_chest "))
    assert main(["list", "--method", "nope"]) == 1
    assert "method 'nope'" in capsys.readouterr().err


def test_list_pretrained_and_info(register_weights, capsys) -> None:
    register_weights("resnet18.pcrl_unit", zoo.create_model("resnet18").state_dict())
    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "resnet18.pcrl_unit" in out and "pcrl_resnet18" not in out  # zoo 0.1 names are never listed
    assert main(["info", "resnet18.pcrl_unit"]) == 0
    out = capsys.readouterr().out
    for text in ("LICENCE (weights)", "sha256", "mean (0.485", "usage:", "pretrained=True"):
        assert text in out
    assert main(["info", "unet3d", "--json"]) == 0
    assert '"spatial_dims": 3' in capsys.readouterr().out


def test_info_of_a_network_lists_its_tags_and_default(capsys) -> None:
    assert main(["info", "unet3d_small"]) == 0
    out = capsys.readouterr().out
    assert "unet3d_small.pcrl_ct32 (default)" in out and "unet3d_small.genesis_ct32" in out
    assert re.search(r"^default tag +unet3d_small.pcrl_ct32 ", out, re.M)
    assert main(["info", "unet3d"]) == 0
    out = capsys.readouterr().out
    assert "none: pretrained=True needs a tag" in out and "unet3d.genesis_chest_ct" in out


def test_info_with_an_old_name_warns_and_shows_the_new_one(capsys) -> None:
    import warnings

    with warnings.catch_warnings():
        assert main(["info", "pcrl_resnet18.kermany64"]) == 0  # zoo 0.1 name
    captured = capsys.readouterr()
    assert ("zoo: warning: 'pcrl_resnet18.kermany64' is a deprecated zoo 0.1 name: use 'resnet18.pcrl_kermany64'"
            in captured.err)
    assert captured.out.startswith("name               resnet18.pcrl_kermany64\n")


def test_unknown_name_exits_2_with_suggestions(capsys) -> None:
    assert main(["info", "pcrl_resnet"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_verify_reports_each_file(register_weights, capsys) -> None:
    path = register_weights("resnet18.pcrl_unit", zoo.create_model("resnet18").state_dict())
    assert main(["verify", "resnet18.pcrl_*"]) == 0
    assert "OK       resnet18.pcrl_unit" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    assert main(["verify", "resnet18.pcrl_*"]) == 1
    assert "CORRUPT  resnet18.pcrl_unit" in capsys.readouterr().out


def test_console_script_runs() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "zoo")
    out = subprocess.run([exe, "list", "unet3d*"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "unet3d_small_seg" in out.stdout
    out = subprocess.run([exe, "list", "pcrl*"], capture_output=True, text=True, timeout=60)  # zoo 0.1 names
    assert out.returncode == 1 and "zoo list --method pcrl" in out.stderr


def test_hubconf_lists_networks_and_old_names_and_loads() -> None:
    hub = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    public = sorted(f for f in dir(hub) if callable(getattr(hub, f)) and not f.startswith("_"))
    assert public == sorted([*zoo.list_models(), *list_aliases(), "create_model"])
    assert "micle_kermany64" in hub.resnet18.__doc__ and "pcrl_kermany64" in hub.resnet18.__doc__
    model = torch.hub.load(str(REPO), "resnet18", source="local", num_classes=3).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    model = torch.hub.load(str(REPO), "create_model", "unet3d", source="local", in_chans=2).eval()
    assert model(torch.randn(1, 2, 16, 16, 16)).shape == (1, 512)


def test_hubconf_pretrained_tag(register_weights) -> None:
    torch.manual_seed(0)
    src = zoo.create_model("resnet18")
    register_weights("resnet18.pcrl_unit", src.state_dict())
    model = torch.hub.load(str(REPO), "resnet18", source="local", pretrained=True, tag="pcrl_unit")
    assert torch.equal(model.conv1.weight, src.conv1.weight)
    with pytest.raises(zoo.WeightsNotFoundError):
        torch.hub.load(str(REPO), "resnetv2_50x1_bit", source="local", pretrained=True)


def test_hubconf_old_entry_point_warns_and_loads_the_new_name(register_weights) -> None:
    torch.manual_seed(0)
    src = zoo.create_model("resnet18")
    register_weights("resnet18.pcrl_unit", src.state_dict())
    hub = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    assert "resnet18.pcrl_kermany64" in hub.pcrl_resnet18.__doc__  # zoo 0.1 name
    with pytest.warns(DeprecationWarning, match="use 'resnet18.pcrl_unit'"):
        model = torch.hub.load(str(REPO), "pcrl_resnet18", source="local", pretrained=True, tag="unit")  # zoo 0.1
    assert torch.equal(model.conv1.weight, src.conv1.weight)
