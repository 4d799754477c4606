"""`zoo convert`: official checkpoint layouts -> zoo safetensors, and the official registry entries.

Each layout test builds a file the way the upstream training script saves it (dict structure,
prefixes, argparse options, optimizer state, EMA model, projection heads) from a model with random
weights, converts it through the CLI, strict-loads the result (by path and by registry name from the
mirror directory) and compares outputs with the model the file was made from.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

import zoo
from zoo._io import sha256_file
from zoo.cli import main
from zoo.convert import LAYOUTS, Rename, get_layout
from zoo.hub import WeightsNotFoundError
from zoo.meta import registry as _registry

X2D = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
X3D = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
Output = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_features(x)


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and running statistics in every norm layer (convs are random already)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1000)
    return model.eval()


def _model(name: str, **kwargs: Any) -> nn.Module:
    return _randomize_norms(zoo.create_model(name, **kwargs))


def _opt(**kwargs: Any) -> argparse.Namespace:
    """The argparse options PCRL / PCRLv2 save as ``opt``."""
    base = dict(lr=0.01, momentum=0.9, weight_decay=1e-4, epochs=240, batch_size=64, model="pcrlv2",
                phase="pretask", ratio=1.0, output="./pretrained_weights", amp=False, gpus="0,1")
    return argparse.Namespace(**{**base, **kwargs})


def _sgd_state(n: int = 3) -> dict[str, Any]:
    """An SGD state dict with momentum buffers, as ``optimizer.state_dict()`` gives it (a few params)."""
    params = [torch.randn(4, 3, requires_grad=True) for _ in range(n)]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def _prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return OrderedDict((prefix + k, v) for k, v in sd.items())


def _linear_sd(i: int, o: int) -> dict[str, torch.Tensor]:
    return nn.Linear(i, o).state_dict()


class _LUConvHead(nn.Module):
    """Upstream's deep-supervision head: an LUConv to one channel (conv1 + bn1)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c, 1, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(1)


# --- one builder per layout: (official object, source file name, checks, registry names, dropped count)
Built = tuple[Any, str, list[tuple[str, Output, torch.Tensor, torch.Tensor]], list[str], int]


def _pcrlv2_2d() -> Built:
    m = _model("resnet18")
    sd = m.state_dict()
    assert len(sd) == 120  # the smp ResNet-18 encoder: torchvision keys without fc
    obj = {"opt": _opt(n="chexpter"), "state_dict": sd, "optimizer": _sgd_state(), "epoch": 240}
    checks = [("resnet18", _forward, X2D, m(X2D))]
    return obj, "simance_multi_crop_chexpter_pretask_1.0_240.pt", checks, ["resnet18.pcrlv2_chexpert"], 0


def _pcrlv2_3d() -> Built:
    m = _model("unet3d_seg.pcrlv2_luna")
    sd = OrderedDict(m.state_dict())
    for level, c in (("up_tr256", 256), ("up_tr128", 128), ("up_tr64", 64)):
        sd.update(_prefixed(f"{level}.bn.", nn.BatchNorm1d(c).state_dict()))
        head = nn.Sequential(nn.Linear(c, 2 * c), nn.BatchNorm1d(2 * c), nn.ReLU(), nn.Linear(2 * c, c))
        sd.update(_prefixed(f"{level}.predictor_head.", head.state_dict()))
        sd.update(_prefixed(f"{level}.deep_supervision_head.", _LUConvHead(c).state_dict()))
    assert len(sd) == 169  # upstream.md: the full PCRLv23d has 169 keys, ~17.1 M parameters
    n_params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert 17.05e6 < n_params < 17.15e6
    obj = {"opt": _opt(model="pcrlv2_3d", n="luna"), "state_dict": sd, "optimizer": _sgd_state(), "epoch": 240}
    encoder = m.forward_intermediates(X3D, intermediates_only=True)[-1]
    checks = [("unet3d_seg.pcrlv2_luna", _forward, X3D, m(X3D)), ("unet3d", _features, X3D, encoder)]
    return obj, "simance_multi_crop_luna_pretask_1.0_240.pt", checks, ["unet3d_seg.pcrlv2_luna", "unet3d.pcrlv2_luna"], 63


def _swcl_resnet18() -> Built:
    m = _model("resnet18")
    sd = _prefixed("encoder.", m.state_dict())
    sd.update(_prefixed("projection_network.out.0.", _linear_sd(512, 512)))
    sd.update(_prefixed("projection_network.out.2.", _linear_sd(512, 128)))
    checks = [("resnet18", _forward, X2D, m(X2D))]
    return sd, "pytorch_model.bin", checks, ["resnet18.swcl_swap"], 4


# An independent BiT ResNetV2 written from the facts in upstream.md (BiT module names), to check the
# renaming *and* the numerics (weight standardisation eps 1e-10, root padding, stride placement).
class _StdConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (self.weight - mean) / torch.sqrt(var + 1e-10)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _BiTUnit(nn.Module):
    def __init__(self, cin: int, cout: int, cmid: int, stride: int) -> None:
        super().__init__()
        self.gn1, self.conv1 = nn.GroupNorm(32, cin), _StdConv(cin, cmid, 1, bias=False)
        self.gn2, self.conv2 = nn.GroupNorm(32, cmid), _StdConv(cmid, cmid, 3, stride, 1, bias=False)
        self.gn3, self.conv3 = nn.GroupNorm(32, cmid), _StdConv(cmid, cout, 1, bias=False)
        self.downsample = _StdConv(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(x))
        residual = self.downsample(out) if self.downsample is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.gn2(out)))
        return self.conv3(F.relu(self.gn3(out))) + residual


class _BiT(nn.Module):
    def __init__(self, units: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.root = nn.Sequential(OrderedDict(
            conv=_StdConv(3, 64, 7, 2, 3, bias=False), pad=nn.ConstantPad2d(1, 0.0), pool=nn.MaxPool2d(3, 2, 0)))
        blocks, cin = OrderedDict(), 64
        for b, n in enumerate(units):
            cmid = 64 * 2**b
            blocks[f"block{b + 1}"] = nn.Sequential(OrderedDict(
                (f"unit{u + 1:02d}", _BiTUnit(cin if u == 0 else 4 * cmid, 4 * cmid, cmid,
                                              2 if (u == 0 and b > 0) else 1)) for u in range(n)))
            cin = 4 * cmid
        self.body = nn.Sequential(blocks)
        self.head = nn.Sequential(OrderedDict(gn=nn.GroupNorm(32, 2048), relu=nn.ReLU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.root(x)))


def _swcl_resnetv2() -> Built:
    ref = _randomize_norms(_BiT())
    sd = _prefixed("encoder.", ref.state_dict())
    sd.update(_prefixed("projection_network.out.0.", _linear_sd(2048, 2048)))
    sd.update(_prefixed("projection_network.out.2.", _linear_sd(2048, 128)))
    with torch.no_grad():
        expected = ref(X2D)
    checks = [("resnetv2_50x1_bit", _features, X2D, expected)]
    return sd, "pytorch_model.bin", checks, ["resnetv2_50x1_bit.swcl_swap"], 4


def _genesis() -> Built:
    m = _model("unet3d_seg.genesis_chest_ct")  # norm="batch_stats_bn" from the catalog
    obj = {"epoch": 35, "state_dict": _prefixed("module.", m.state_dict()), "optimizer_state_dict": _sgd_state()}
    encoder = m.forward_intermediates(X3D, intermediates_only=True)[-1]
    checks = [("unet3d_seg.genesis_chest_ct", _forward, X3D, m(X3D)), ("unet3d.genesis_chest_ct", _features, X3D, encoder)]
    return obj, "Genesis_Chest_CT.pt", checks, ["unet3d_seg.genesis_chest_ct", "unet3d.genesis_chest_ct"], 0


def _pcrl_2d() -> Built:
    m = _model("unet_resnet18")
    full = m.state_dict()
    encoder = OrderedDict((k.removeprefix("encoder."), v) for k, v in full.items() if k.startswith("encoder."))
    decoder = OrderedDict((k.removeprefix("decoder."), v) for k, v in full.items() if k.startswith("decoder."))
    ema = _prefixed("module.model.", {k: v.clone() for k, v in full.items()})
    for head, (i, o) in {"fc1": (512, 128), "fc2": (128, 128), "aug_fc1": (6, 256), "aug_fc2": (256, 512)}.items():
        ema.update(_prefixed(f"module.{head}.", _linear_sd(i, o)))
    obj = {
        "opt": _opt(model="pcrl", n="chest"), "state_dict": encoder, "decoder_state_dict": decoder,
        "contrast": {"params": torch.tensor([16384.0, 0.2, -1.0, -1.0, 0.5]), "memory": torch.randn(32, 128)},
        "optimizer": _sgd_state(), "epoch": 240, "model_ema": ema,
    }
    # the student's segmentation head is not saved upstream: compare the decoder output
    checks = [("unet_resnet18", _features, X2D, m.forward_features(X2D)),
              ("resnet18", _features, X2D, m.encoder.forward_features(X2D))]
    return obj, "pcrl_chest_pretask_1.0_240.pt", checks, [], 0


def _pcrl_3d(norm: str = "bn") -> Built:
    m = _model("unet3d_seg", norm=norm)
    sd = OrderedDict(m.state_dict())
    for head, (i, o) in {"fc1": (512, 128), "fc2": (128, 128), "aug_fc1": (7, 256), "aug_fc2": (256, 512)}.items():
        sd.update(_prefixed(f"{head}.", _linear_sd(i, o)))
    obj = {
        "opt": _opt(model="pcrl_3d", n="luna", norm=norm), "state_dict": sd,
        "contrast": {"params": torch.tensor([16384.0, 0.2]), "memory": torch.randn(16, 128)},
        "optimizer": _sgd_state(), "epoch": 240, "model_ema": _prefixed("module.", sd),
    }
    encoder = m.forward_intermediates(X3D, intermediates_only=True)[-1]
    checks = [("unet3d_seg", _forward, X3D, m(X3D)), ("unet3d", _features, X3D, encoder)]
    return obj, "pcrl_3d_luna_pretask_1.0_240.pt", checks, [], 8


def _openselfsup() -> Built:
    m = _model("resnet50")
    sd = m.state_dict()
    neck = {"mlp.0.weight": torch.randn(2048, 2048), "mlp.0.bias": torch.randn(2048),
            "mlp.2.weight": torch.randn(128, 2048), "mlp.2.bias": torch.randn(128)}
    state = OrderedDict(queue=torch.randn(128, 64), queue_ptr=torch.zeros(1, dtype=torch.long))
    # backbone is encoder_q[0] (one module under two names); encoder_k is a copy (shared here to stay small)
    state.update(_prefixed("encoder_q.0.", sd))
    state.update(_prefixed("encoder_q.1.", neck))
    state.update(_prefixed("encoder_k.0.", sd))
    state.update(_prefixed("encoder_k.1.", neck))
    state.update(_prefixed("backbone.", sd))
    obj = {"meta": {"epoch": 200, "iter": 140000, "mmcv_version": "0.2.12", "time": "Mon Jan  1 00:00:00 2024",
                    "config": "model = dict(type='MOCO', queue_len=65536)"},
           "state_dict": state, "optimizer": _sgd_state()}
    checks = [("resnet50", _forward, X2D, m(X2D))]
    return obj, "moco_v2_chexpert_epoch_200.pth", checks, [], 2 + 2 * (len(sd) + 4)


def _moco_v2() -> Built:
    """facebookresearch/moco main_moco.py: DataParallel MoCo with an MLP head on both encoders."""
    m = _model("mocov2_resnet50")
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(2048, 2048), "fc.0.bias": torch.randn(2048),
            "fc.2.weight": torch.randn(128, 2048), "fc.2.bias": torch.randn(128)}
    state = OrderedDict()
    state.update(_prefixed("module.encoder_q.", {**sd, **head}))
    state.update(_prefixed("module.encoder_k.", {**sd, **head}))
    state["module.queue"] = torch.randn(128, 64)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    obj = {"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": _sgd_state()}
    checks = [("mocov2_resnet50", _forward, X2D, m(X2D))]
    return obj, "moco_v2_800ep_pretrain.pth.tar", checks, [], 4 + len(sd) + 4 + 2


BUILDERS: dict[str, Callable[[], Built]] = {
    "pcrlv2-2d": _pcrlv2_2d, "pcrlv2-3d": _pcrlv2_3d, "swcl-resnet18": _swcl_resnet18,
    "swcl-resnetv2-50x1": _swcl_resnetv2, "genesis": _genesis, "pcrl-2d": _pcrl_2d, "pcrl-3d": _pcrl_3d,
    "openselfsup": _openselfsup, "moco-v2": _moco_v2,
}


def _convert(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        rc = main(["convert", *args])
    except SystemExit as exit_:  # argparse refused an argument
        rc = int(exit_.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _check_outputs(checks: list[tuple[str, Output, torch.Tensor, torch.Tensor]], load: Callable[[str], nn.Module]) -> None:
    for name, fn, x, expected in checks:
        model = load(name).eval()
        with torch.no_grad():
            got = fn(model, x)
        tol = 1e-4 if name == "resnetv2_50x1_bit" else 1e-6  # an independent BiT implementation
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


def test_every_layout_has_a_test() -> None:
    assert set(BUILDERS) == set(LAYOUTS)


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_convert_official_layout(layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.no_grad():
        obj, source_name, checks, names, n_dropped = BUILDERS[layout]()
    src = tmp_path / source_name
    torch.save(obj, src)
    out = tmp_path / "converted.safetensors"

    rc, text, err = _convert(capsys, "--from", layout, str(src), "-o", str(out))
    assert rc == 0, err
    sha = sha256_file(out)
    assert f"sha256 {sha}" in text and "registry entry:" in text
    assert f'sha256="{sha}"' in text
    if n_dropped:
        assert sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("  dropped ")) == n_dropped
    else:
        assert "dropped" not in text.replace('"dropped"', "")
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
    assert meta["layout"] == layout and meta["source_sha256"] == sha256_file(src)
    assert meta["zoo_version"] == zoo.__version__ and len(json.loads(meta["dropped"])) == n_dropped
    _check_outputs(checks, lambda name: zoo.create_model(name, checkpoint_path=out))

    if not names:
        return
    for name in names:  # the registry entry without a converted file: the documented error
        with pytest.raises(WeightsNotFoundError) as info:
            zoo.create_model(name, pretrained=True)
        cfg = zoo.get_pretrained_cfg(name)
        assert cfg.origin in str(info.value) and f"zoo convert --from {layout} PATH --name {cfg.name}" in str(info.value)
    mirror = tmp_path / "mirror"
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(mirror))
    rc, text, err = _convert(capsys, "--from", layout, str(src))  # default name and output: the mirror
    assert rc == 0, err
    target = mirror / zoo.get_pretrained_cfg(names[0]).file
    assert sha256_file(target) == sha  # conversion is deterministic (canonical safetensors header)
    by_arch = {_registry.split_model_name(n)[0]: n for n in names}
    _check_outputs(checks, lambda name: zoo.create_model(by_arch[_registry.split_model_name(name)[0]], pretrained=True))


def test_pcrl_3d_group_norm_is_read_from_opt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with torch.no_grad():
        obj, _, checks, _, _ = _pcrl_3d(norm="gn")
    src, out = tmp_path / "pcrl_gn.pt", tmp_path / "pcrl_gn.safetensors"
    torch.save(obj, src)
    rc, text, err = _convert(capsys, "--from", "pcrl-3d", str(src), "-o", str(out))
    assert rc == 0, err
    assert "create_model(..., norm='gn')" in text
    _check_outputs(checks, lambda name: zoo.create_model(name, checkpoint_path=out, norm="gn"))


def test_genesis_converted_model_uses_batch_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Upstream's ContBatchNorm3d normalises with the batch statistics in eval mode too."""
    m = _model("unet3d_seg.genesis_chest_ct")
    src, out = tmp_path / "Genesis_Chest_CT.pt", tmp_path / "g.safetensors"
    # the 2019 release predates torch's zip format: read the legacy format too
    torch.save({"epoch": 1, "state_dict": _prefixed("module.", m.state_dict()), "optimizer_state_dict": {}}, src,
               _use_new_zipfile_serialization=False)
    assert _convert(capsys, "--from", "genesis", str(src), "-o", str(out))[0] == 0
    model = zoo.create_model("unet3d_seg.genesis_chest_ct", checkpoint_path=out).eval()
    with torch.no_grad():
        eval_out = model(X3D)
        running = zoo.create_model("unet3d_seg.genesis_chest_ct", checkpoint_path=out, norm="bn").eval()(X3D)
        train_out = model.train()(X3D)
    torch.testing.assert_close(eval_out, train_out, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(eval_out, running, atol=1e-3)  # running statistics would give other outputs


def test_bit_renames() -> None:
    layout = get_layout("swcl-resnetv2-50x1")
    assert layout.map_key("encoder.body.block2.unit03.gn1.weight") == ("stages.1.blocks.2.norm1.weight", None)
    assert layout.map_key("encoder.body.block1.unit01.downsample.weight") == (
        "stages.0.blocks.0.downsample.conv.weight", None)
    assert layout.map_key("encoder.root.conv.weight") == ("stem.conv.weight", None)
    assert layout.map_key("encoder.head.gn.bias") == ("norm.bias", None)
    assert layout.map_key("projection_network.out.2.bias")[1] is not None
    assert Rename(r"^a(?P<i>\d+)\.", "b{i}.", one_based=("i",)).apply("a10.w") == "b9.w"


def test_official_entries_match_layouts() -> None:
    files: dict[str, dict[str, Any]] = {}
    for name in zoo.list_pretrained():
        cfg = zoo.get_pretrained_cfg(name)
        if not cfg.is_official:
            continue
        layout = get_layout(cfg.convert_from)
        assert cfg.architecture in layout.archs, name
        assert not cfg.verified and cfg.sha256 is None and cfg.file_size is None
        shared = {k: v for k, v in cfg.to_dict().items() if k not in ("architecture", "tag", "description")}
        for key in ("classifier", "num_classes", "arch_kwargs"):  # the encoder and _seg models differ here
            shared.pop(key)
        assert files.setdefault(cfg.file, shared) == shared, f"{name} shares {cfg.file} with different fields"
    assert len(files) == 6  # PCRLv2 chest, chexpert, luna; SWCL x2; Models Genesis


def test_info_shows_licence_and_convert_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "unet3d_seg.genesis_chest_ct"]) == 0
    text = capsys.readouterr().out
    assert "LICENCE (weights)  NON-COMMERCIAL" in text
    assert "zoo convert --from genesis PATH --name unet3d_seg.genesis_chest_ct" in text
    assert main(["info", "resnet18.swcl_swap"]) == 0
    assert "not redistributable" in capsys.readouterr().out


# --- malformed files -------------------------------------------------------------------------------
def _pcrlv2_file(tmp_path: Path, edit: Callable[[dict[str, torch.Tensor]], None] | None = None) -> Path:
    sd = zoo.create_model("resnet18").state_dict()
    if edit is not None:
        edit(sd)
    path = tmp_path / "simance_multi_crop_chest_pretask_1.0_240.pt"
    torch.save({"opt": _opt(), "state_dict": sd, "optimizer": _sgd_state(), "epoch": 240}, path)
    return path


def _fails(capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path, *needles: str,
           layout: str = "pcrlv2-2d") -> None:
    out = tmp_path / "out.safetensors"
    rc, _, err = _convert(capsys, "--from", layout, str(src), "-o", str(out))
    assert rc == 2
    for needle in needles:
        assert needle in err, err
    assert not out.exists() and not list(tmp_path.glob("*.tmp.safetensors"))


def test_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _pcrlv2_file(tmp_path, lambda sd: sd.pop("layer3.1.conv2.weight"))
    _fails(capsys, tmp_path, src, "missing keys: layer3.1.conv2.weight", "pcrlv2-2d")


def test_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _pcrlv2_file(tmp_path, lambda sd: sd.__setitem__("layer1.0.bn1.weight", torch.ones(32)))
    _fails(capsys, tmp_path, src, "wrong shape", "layer1.0.bn1.weight: checkpoint (32,) vs model (64,)")


def test_unknown_head_is_not_dropped_silently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _pcrlv2_file(tmp_path, lambda sd: sd.__setitem__("proj.weight", torch.ones(2, 2)))
    _fails(capsys, tmp_path, src, "unexpected keys: proj.weight")


def test_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _pcrlv2_file(tmp_path)
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _fails(capsys, tmp_path, src, "not a readable PyTorch checkpoint", "truncated")


def test_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "notes.pt"
    src.write_text("these are not weights\n")
    _fails(capsys, tmp_path, src, "not a readable PyTorch checkpoint")
    torch.save(torch.zeros(3), src)
    _fails(capsys, tmp_path, src, "holds a Tensor, not a dict")
    _fails(capsys, tmp_path, tmp_path / "absent.pt", "does not exist")


def test_wrong_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "pytorch_model.bin"
    torch.save(_prefixed("encoder.", zoo.create_model("resnet18").state_dict()), src)
    _fails(capsys, tmp_path, src, "is a bare state dict", "not the full pcrlv2-2d checkpoint",
           "torch.save({'state_dict': sd}")
    _fails(capsys, tmp_path, _pcrlv2_file(tmp_path), "does not convert to unet3d_seg.genesis_chest_ct", layout="genesis")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code_ran"
    src = tmp_path / "evil.pt"
    torch.save({"opt": _Payload(marker), "state_dict": {}, "epoch": 1}, src)
    _fails(capsys, tmp_path, src, "refusing to load", "system", "can run code")
    assert not marker.exists()


def test_output_must_be_safetensors_and_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(_pcrlv2_file(tmp_path))
    rc, _, err = _convert(capsys, "--from", "pcrlv2-2d", src, "-o", str(tmp_path / "x.pt"))
    assert rc == 2 and "must be a .safetensors file" in err
    (tmp_path / "file").write_text("")
    rc, _, err = _convert(capsys, "--from", "pcrlv2-2d", src, "-o", str(tmp_path / "file" / "x.safetensors"))
    assert rc == 2 and "is a file" in err and "Traceback" not in err
    from zoo.convert import ConvertError, convert_checkpoint

    with pytest.raises(ConvertError, match="cannot write"):  # the API, without the CLI's argument check
        convert_checkpoint(src, "pcrlv2-2d", tmp_path / "file" / "x.safetensors")
    (tmp_path / "outdir").mkdir()
    rc, _, err = _convert(capsys, "--from", "pcrlv2-2d", src, "-o", str(tmp_path / "outdir"))
    assert rc == 2 and "is a directory" in err and "Traceback" not in err
    with pytest.raises(ConvertError, match="is a directory; give a file name"):
        convert_checkpoint(src, "pcrlv2-2d", tmp_path / "outdir")


def test_moco_v2_file_under_openselfsup_names_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with torch.no_grad():
        obj = _moco_v2()[0]
    src = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(obj, src)
    _fails(capsys, tmp_path, src, "no weights left", "--from moco-v2", layout="openselfsup")


def test_bare_state_dict_is_short_and_names_the_wrap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bare.pt"
    torch.save(zoo.create_model("pcrlv2_unet3d_seg").state_dict(), src)
    out = tmp_path / "out.safetensors"
    rc, _, err = _convert(capsys, "--from", "pcrlv2-3d", str(src), "-o", str(out))
    assert rc == 2 and "bare state dict" in err and "in all" in err and "wrapped.pt" in err
    assert len(err) < 600 and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind", ["sparse", "quantized", "meta", "complex"])
def test_unstorable_tensors_are_refused(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(sd: dict[str, torch.Tensor]) -> None:
        w = sd["layer1.0.conv1.weight"]
        sd["layer1.0.conv1.weight"] = {
            "sparse": lambda: w.to_sparse(),
            "quantized": lambda: torch.quantize_per_tensor(w, 0.1, 0, torch.qint8),
            "meta": lambda: torch.empty_like(w, device="meta"),
            "complex": lambda: w.to(torch.complex64),
        }[kind]()

    src = _pcrlv2_file(tmp_path, edit)
    _fails(capsys, tmp_path, src, f"is a {kind} tensor", "layer1.0.conv1.weight")


@pytest.mark.parametrize("norm", ["batchnorm", 3, ""])
def test_invalid_opt_norm(norm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with torch.no_grad():
        obj = _pcrl_3d()[0]
    obj["opt"].norm = norm
    src = tmp_path / "pcrl_3d.pt"
    torch.save(obj, src)
    _fails(capsys, tmp_path, src, "opt.norm is", "bn, batch_stats_bn, gn, in", layout="pcrl-3d")


def test_non_tensor_grammar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _pcrlv2_file(tmp_path, lambda sd: sd.__setitem__("layer1.0.bn1.num_batches_tracked", 3))
    _fails(capsys, tmp_path, src, "is an int, not a tensor")
