"""The official checkpoint layouts zoo converts, as data (torch-free).

Each :class:`Layout` says where the weights sit in the upstream file (``containers``), which prefixes
to strip, which keys are dropped on purpose (with the reason, reported to the user), and how the
remaining names are renamed into zoo's. Everything not dropped must strict-load into the layout's
zoo architectures, so a wrong entry here fails loudly instead of silently losing weights.

The facts come from ../shared/docs/upstream.md and the upstream training scripts. Entries marked
*unverified* were read from the upstream model definitions but never checked against a released file
(those files cannot be downloaded here): correct them in this table if a real file disagrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Rename", "Drop", "Layout", "LAYOUTS", "get_layout", "layout_names"]


@dataclass(frozen=True)
class Rename:
    """Rewrite the part of a key matched by ``pattern`` as ``template`` (``str.format`` of its groups).

    Groups named in ``one_based`` are integers counted from 1 upstream and from 0 in zoo.
    """

    pattern: str
    template: str
    one_based: tuple[str, ...] = ()

    def apply(self, key: str) -> str:
        def repl(match: re.Match[str]) -> str:
            groups = {k: int(v) - 1 if k in self.one_based else v for k, v in match.groupdict().items()}
            return self.template.format(**groups)

        return re.sub(self.pattern, repl, key)


@dataclass(frozen=True)
class Drop:
    """Keys matching ``pattern`` (after prefix stripping) are left out on purpose, for ``reason``."""

    pattern: str
    reason: str


@dataclass(frozen=True)
class Layout:
    """One official checkpoint layout: how to turn its keys into zoo's.

    Attributes:
        name: the ``zoo convert --from`` value.
        description: what the file is and how upstream saves it.
        archs: zoo architectures the converted file must strict-load into (the first is the main one).
        containers: ``(entry, prefix)`` pairs: the top-level entry holding a state dict (None = the file
            is a plain state dict) and the prefix its keys get in zoo.
        strip_prefixes: removed from the start of every key, in order (``module.`` from DataParallel).
        drops: keys left out on purpose, with the reason.
        renames: applied in order to every kept key.
        opt_arch_kwargs: architecture arguments read from the checkpoint's ``opt`` (argparse options).
        verified_keys: False when the key names come from upstream code but were never checked
            against a released file.
    """

    name: str
    description: str
    archs: tuple[str, ...]
    containers: tuple[tuple[str | None, str], ...] = (("state_dict", ""),)
    strip_prefixes: tuple[str, ...] = ("module.",)
    drops: tuple[Drop, ...] = ()
    renames: tuple[Rename, ...] = ()
    opt_arch_kwargs: tuple[str, ...] = ()
    verified_keys: bool = True
    _drop_res: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_drop_res", tuple(re.compile(d.pattern) for d in self.drops))

    def map_key(self, key: str, prefix: str = "") -> tuple[str, str | None]:
        """``(zoo key, None)`` for a kept key, ``(stripped key, reason)`` for a dropped one."""
        for p in self.strip_prefixes:
            key = key.removeprefix(p)
        for drop, pattern in zip(self.drops, self._drop_res, strict=True):
            if pattern.search(key):
                return key, drop.reason
        for rename in self.renames:
            key = rename.apply(key)
        return prefix + key, None


_PCRLV2_3D_HEADS = Drop(
    r"^up_tr\d+\.(bn|predictor_head|deep_supervision_head)\.",
    "PCRLv2 pretraining heads per decoder level (BN1d on the pooled feature, SimSiam predictor, "
    "deep-supervision head); not part of the downstream network",
)

# BiT (big_transfer) ResNetV2 names -> timm ResNetV2 names (zoo.models.resnetv2).
_BIT_TO_TIMM = (
    Rename(r"^root\.conv\.", "stem.conv."),
    Rename(r"^body\.block(?P<stage>\d+)\.unit(?P<block>\d+)\.", "stages.{stage}.blocks.{block}.",
           one_based=("stage", "block")),
    Rename(r"\.gn(?P<i>[123])\.", ".norm{i}."),
    Rename(r"\.downsample\.weight$", ".downsample.conv.weight"),
    Rename(r"^head\.gn\.", "norm."),
)

_SWCL_PROJECTION = Drop(r"^projection_network\.", "SupCon projection head (GAP -> Linear -> ReLU -> Linear(128))")

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="pcrlv2-2d",
            description="PCRLv2 2D (RL4M/PCRLv2, train_2d.py): {'opt', 'state_dict', 'optimizer', 'epoch'}; "
            "state_dict = the smp ResNet-18 encoder (torchvision names, no fc, no prefix)",
            archs=("resnet18",),
        ),
        Layout(
            name="pcrlv2-3d",
            description="PCRLv2 3D (RL4M/PCRLv2, train_3d.py): {'opt', 'state_dict', 'optimizer', 'epoch'}; "
            "state_dict = the full PCRLv23d (encoder + decoder without skips + per-level heads, 169 keys)",
            archs=("unet3d_seg", "unet3d"),
            drops=(_PCRLV2_3D_HEADS,),
            verified_keys=False,
        ),
        Layout(
            name="swcl-resnet18",
            description="SWCL ResNet-18 (BPYap/SWCL, pytorch_model.bin): a plain state dict, "
            "encoder.* (torchvision names) + projection_network.*",
            archs=("resnet18",),
            containers=((None, ""),),
            strip_prefixes=("module.", "encoder."),
            drops=(_SWCL_PROJECTION,),
        ),
        Layout(
            name="swcl-resnetv2-50x1",
            description="SWCL BiT ResNetV2-50x1 (BPYap/SWCL, pytorch_model.bin): a plain state dict, "
            "encoder.{root,body,head.gn}.* (BiT names) + projection_network.*",
            archs=("resnetv2_50x1_bit",),
            containers=((None, ""),),
            strip_prefixes=("module.", "encoder."),
            drops=(_SWCL_PROJECTION,),
            renames=_BIT_TO_TIMM,
        ),
        Layout(
            name="genesis",
            description="Models Genesis (MrGiovanni/ModelsGenesis, Genesis_Chest_CT.pt): "
            "{'epoch', 'state_dict' (module.* UNet3D keys), 'optimizer_state_dict'}",
            archs=("unet3d_seg", "unet3d"),
        ),
        Layout(
            name="pcrl-2d",
            description="PCRL 2D (Luchixiang/PCRL, pcrl.py): {'opt', 'state_dict' (encoder), 'decoder_state_dict', "
            "'contrast', 'optimizer', 'epoch', 'model_ema'}; the student encoder and decoder are kept",
            archs=("unet_resnet18", "resnet18"),
            containers=(("state_dict", "encoder."), ("decoder_state_dict", "decoder.")),
        ),
        Layout(
            name="pcrl-3d",
            description="PCRL 3D (Luchixiang/PCRL, pcrl_3d.py): {'opt', 'state_dict' (full PCRLModel3d), "
            "'contrast', 'optimizer', 'epoch', 'model_ema'}; the norm is read from opt.norm",
            archs=("unet3d_seg", "unet3d"),
            drops=(
                Drop(r"^fc[12]\.", "PCRL projection head (GAP -> fc1 -> ReLU -> fc2)"),
                Drop(r"^aug_fc[12]\.", "PCRL transformation-conditioned attention (aug_fc1 -> aug_fc2)"),
            ),
            opt_arch_kwargs=("norm",),
        ),
        Layout(
            name="moco-v2",
            description="MoCo v2 (facebookresearch/moco, main_moco.py, e.g. moco_v2_800ep_pretrain.pth.tar): "
            "{'epoch', 'arch', 'state_dict', 'optimizer'}; state_dict = module.encoder_q.* (the backbone, "
            "torchvision names, MLP head fc.0/fc.2) + module.encoder_k.* + module.queue",
            archs=("resnet50",),
            strip_prefixes=("module.", "encoder_q."),
            drops=(
                Drop(r"^fc\.", "MoCo v2 MLP head of the query encoder (fc.0 -> ReLU -> fc.2, 128-d)"),
                Drop(r"^encoder_k\.", "MoCo key encoder (momentum copy of the query encoder)"),
                Drop(r"^queue(_ptr)?$", "MoCo negative queue"),
            ),
        ),
        Layout(
            name="openselfsup",
            description="OpenSelfSup / HPT MoCo v2: {'state_dict', 'meta' | 'author', ...}; backbone.* keys "
            "(or already extracted, no prefix) next to encoder_q/encoder_k/neck/queue",
            archs=("resnet50",),
            strip_prefixes=("module.", "backbone."),
            drops=(
                Drop(r"^encoder_[qk]\.", "MoCo query/key encoders (the query encoder duplicates backbone.*)"),
                Drop(r"^queue(_ptr)?$", "MoCo negative queue"),
                Drop(r"^neck\.", "MoCo v2 MLP neck (projection head)"),
            ),
        ),
    )
}


def layout_names() -> list[str]:
    """The ``--from`` values, in table order."""
    return list(LAYOUTS)


def get_layout(name: str) -> Layout:
    """The layout called ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}") from None
