"""The ``zoo`` command and the torch.hub entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import zoo
from tests.conftest import REPO
from zoo.cli import main


def test_list_and_patterns(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pcrl_resnet18" in out and "genesis_unet3d_seg" in out
    assert main(["list", "swcl*"]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    assert main(["list", "nothing*"]) == 1


def test_list_pretrained_and_info(register_weights, capsys) -> None:
    register_weights("pcrl_resnet18.unit", zoo.create_model("pcrl_resnet18").state_dict())
    assert main(["list", "--pretrained"]) == 0
    assert "pcrl_resnet18.unit" in capsys.readouterr().out
    assert main(["info", "pcrl_resnet18.unit"]) == 0
    out = capsys.readouterr().out
    for text in ("LICENCE (weights)", "sha256", "mean (0.485", "usage:", "pretrained=True"):
        assert text in out
    assert main(["info", "pcrl_unet3d", "--json"]) == 0
    assert '"spatial_dims": 3' in capsys.readouterr().out


def test_unknown_name_exits_2_with_suggestions(capsys) -> None:
    assert main(["info", "pcrl_resnet"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_verify_reports_each_file(register_weights, capsys) -> None:
    path = register_weights("pcrl_resnet18.unit", zoo.create_model("pcrl_resnet18").state_dict())
    assert main(["verify", "pcrl_resnet18*"]) == 0
    assert "OK       pcrl_resnet18.unit" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    assert main(["verify", "pcrl_resnet18*"]) == 1
    assert "CORRUPT  pcrl_resnet18.unit" in capsys.readouterr().out


def test_console_script_runs() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "zoo")
    out = subprocess.run([exe, "list", "pcrl*"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pcrl_unet3d" in out.stdout


def test_hubconf_lists_only_architectures_and_loads() -> None:
    hub = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    public = sorted(f for f in dir(hub) if callable(getattr(hub, f)) and not f.startswith("_"))
    assert public == sorted([*zoo.list_models(), "create_model"])
    assert "tag" in hub.pcrl_resnet18.__doc__ and "PCRL" in hub.pcrl_resnet18.__doc__
    model = torch.hub.load(str(REPO), "pcrl_resnet18", source="local", num_classes=3).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    model = torch.hub.load(str(REPO), "create_model", "pcrl_unet3d", source="local", in_chans=2).eval()
    assert model(torch.randn(1, 2, 16, 16, 16)).shape == (1, 512)


def test_hubconf_pretrained_tag(register_weights) -> None:
    torch.manual_seed(0)
    src = zoo.create_model("pcrl_resnet18")
    register_weights("pcrl_resnet18.unit", src.state_dict())
    model = torch.hub.load(str(REPO), "pcrl_resnet18", source="local", pretrained=True, tag="unit")
    assert torch.equal(model.conv1.weight, src.conv1.weight)
    with pytest.raises(zoo.WeightsNotFoundError):
        torch.hub.load(str(REPO), "swcl_resnetv2_50x1", source="local", pretrained=True)
