"""Every architecture: forward shapes, heads, features, channels, bad input, key layouts."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.conftest import small_input
from zoo.models.unet3d import BatchStatsNorm3d

ARCHS = zoo.list_models()
SEG = {"unet_resnet18", *(a for a in ARCHS if a.endswith("_seg"))}


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_and_contract(arch: str) -> None:
    model = zoo.create_model(arch, num_classes=4).eval()
    x = small_input(arch)
    with torch.no_grad():
        y = model(x)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
    if arch in SEG:
        assert y.shape == (2, 4, *x.shape[2:])
    else:
        assert y.shape == (2, 4)
        assert pre.shape == (2, model.num_features)
    for method in ("forward_features", "forward_head", "reset_classifier", "forward_intermediates"):
        assert callable(getattr(model, method))
    model.reset_classifier(0)
    with torch.no_grad():
        pooled = model(x)
    expected = (2, model.num_features, *x.shape[2:]) if arch in SEG else (2, model.num_features)
    assert pooled.shape == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_features_only(arch: str) -> None:
    model = zoo.create_model(arch, features_only=True).eval()
    x = small_input(arch, batch=1)
    with torch.no_grad():
        feats = model(x)
    info = model.feature_info
    assert len(feats) == len(info.channels()) >= 4
    for f, c, r in zip(feats, info.channels(), info.reduction(), strict=True):
        assert f.shape[1] == c
        assert tuple(f.shape[2:]) == tuple(s // r for s in x.shape[2:])
    picked = zoo.create_model(arch, features_only=True, out_indices=(1, 2)).eval()
    with torch.no_grad():
        assert [f.shape[1] for f in picked(x)] == info.channels()[1:3]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("in_chans", [1, 5])
def test_in_chans(arch: str, in_chans: int) -> None:
    model = zoo.create_model(arch, in_chans=in_chans).eval()
    with torch.no_grad():
        model(small_input(arch, batch=2, in_chans=in_chans))
    assert model.pretrained_cfg.in_chans == in_chans


@pytest.mark.parametrize("arch", ["resnet18", "unet3d", "unet_resnet18"])
def test_bad_input_errors_say_what_is_expected(arch: str) -> None:
    model = zoo.create_model(arch).eval()
    x = small_input(arch)
    with pytest.raises(zoo.ModelInputError, match="input channel"):
        model(torch.cat([x, x], dim=1))
    with pytest.raises(zoo.ModelInputError, match="batch dimension"):
        model(x[0])
    with pytest.raises(zoo.ModelInputError, match="floating-point"):
        model((x * 100).to(torch.uint8))
    with pytest.raises(zoo.ModelInputError, match="expects a torch.Tensor"):
        model(x.numpy())


def test_segmentation_models_need_divisible_sizes() -> None:
    with pytest.raises(zoo.ModelInputError, match="divisible by 8"):
        zoo.create_model("unet3d_seg.genesis_chest_ct")(torch.randn(1, 1, 16, 16, 12))
    with pytest.raises(zoo.ModelInputError, match="divisible by 32"):
        zoo.create_model("unet_resnet18")(torch.randn(1, 3, 48, 48))


def test_3d_unet_matches_the_upstream_layout() -> None:
    model = zoo.create_model("unet3d_seg.genesis_chest_ct")
    sd = model.state_dict()
    assert len(sd) == 106
    assert sum(p.numel() for p in model.parameters()) == 19_073_665
    for key in ("down_tr64.ops.0.conv1.weight", "down_tr512.ops.1.bn1.running_var",
                "up_tr256.up_conv.weight", "up_tr64.ops.1.bn1.bias", "out_tr.final_conv.weight"):
        assert key in sd
    assert sd["up_tr256.ops.0.conv1.weight"].shape[1] == 768
    noskip = zoo.create_model("unet3d_seg.pcrlv2_luna").state_dict()
    assert noskip["up_tr256.ops.0.conv1.weight"].shape[1] == 512
    encoder = zoo.create_model("unet3d").state_dict()
    assert set(encoder) - {"fc.weight", "fc.bias"} == {k for k in sd if k.startswith("down_tr")}


def test_resnet_keys_are_torchvision_keys() -> None:
    from torchvision.models import resnet18, resnet50

    assert set(zoo.create_model("resnet18", num_classes=1000).state_dict()) == set(resnet18().state_dict())
    assert set(zoo.create_model("resnet50", num_classes=1000).state_dict()) == set(resnet50().state_dict())
    unet = zoo.create_model("unet_resnet18").state_dict()
    assert "decoder.blocks.0.conv1.0.weight" in unet and "segmentation_head.0.weight" in unet
    assert unet["decoder.blocks.0.conv1.0.weight"].shape[1] == 512 + 256
    assert unet["decoder.blocks.4.conv1.0.weight"].shape[1] == 32


def test_resnetv2_is_bit_with_swcl_weight_standardisation() -> None:
    model = zoo.create_model("resnetv2_50x1_bit")
    assert model.stem.conv.eps == 1e-10
    assert model.num_features == 2048
    assert isinstance(model.norm, torch.nn.GroupNorm)


def test_batch_statistics_bn_uses_the_batch_in_eval_and_keeps_its_buffers() -> None:
    torch.manual_seed(0)
    model = zoo.create_model("unet3d.genesis_chest_ct").eval()
    norms = [m for m in model.modules() if isinstance(m, BatchStatsNorm3d)]
    assert norms
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 16, 16, 16) * 3 + 5
    with torch.no_grad():
        out = model.forward_features(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ref = zoo.create_model("unet3d")
    ref.load_state_dict(model.state_dict())
    ref.train()  # ordinary BN in train mode also normalises with batch statistics
    with torch.no_grad():
        assert torch.allclose(ref.forward_features(x), out, atol=1e-5)
    ref.eval()  # ...but not in eval mode
    with torch.no_grad():
        assert not torch.allclose(ref.forward_features(x), out, atol=1e-3)


@pytest.mark.parametrize("norm", ["gn", "in"])
def test_3d_norm_options(norm: str) -> None:
    model = zoo.create_model("unet3d_seg", norm=norm).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="norm must be one of"):
        zoo.create_model("unet3d", norm="bogus")
