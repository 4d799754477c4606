"""Names of zoo 0.1, where the method was part of the architecture (``pcrl_resnet18.kermany64``).

Each old architecture name is an alias of a network and a method: a bare old name means the weights it
loaded by default, and ``OLD.tag`` means ``network.method_tag`` (``pcrl_resnet18.kermany64`` ->
``resnet18.pcrl_kermany64``). Old names keep working everywhere (create_model, torch.hub, the CLI,
``hf-hub:`` configs written by zoo 0.1) with a DeprecationWarning naming the new name.
"""

from __future__ import annotations

from ..registry import declare_alias

__all__: list[str] = []

_BSBN = {"norm": "batch_stats_bn"}

# old architecture -> (network, method, what the bare old name loaded, network kwargs the old name implied)
for _old, _network, _method, _bare, _kwargs in [
    ("pcrl_resnet18", "resnet18", "pcrl", "resnet18.pcrl_kermany64", {}),
    ("pcrlv2_resnet18", "resnet18", "pcrlv2", "resnet18.pcrlv2_kermany64", {}),
    ("swcl_resnet18", "resnet18", "swcl", "resnet18.swcl_fundus64", {}),
    ("simclr_resnet18", "resnet18", "simclr", "resnet18.simclr_kermany64", {}),
    ("mocov2_resnet18", "resnet18", "mocov2", "resnet18.mocov2_kermany64", {}),
    ("micle_resnet18", "resnet18", "micle", "resnet18.micle_kermany64", {}),
    ("mocov2_resnet50", "resnet50", "mocov2", "resnet50", {}),
    ("swcl_resnetv2_50x1", "resnetv2_50x1_bit", "swcl", "resnetv2_50x1_bit.swcl_swap", {}),
    ("pcrl_unet_resnet18", "unet_resnet18", "pcrl", "unet_resnet18", {}),
    ("genesis_unet3d", "unet3d", "genesis", "unet3d.genesis_chest_ct", _BSBN),
    ("genesis_unet3d_seg", "unet3d_seg", "genesis", "unet3d_seg.genesis_chest_ct", _BSBN),
    ("pcrl_unet3d", "unet3d", "pcrl", "unet3d", {}),
    ("pcrl_unet3d_seg", "unet3d_seg", "pcrl", "unet3d_seg", {}),
    ("pcrlv2_unet3d", "unet3d", "pcrlv2", "unet3d.pcrlv2_luna", {}),
    ("pcrlv2_unet3d_seg", "unet3d_seg", "pcrlv2", "unet3d_seg.pcrlv2_luna", {"decoder": "noskip"}),
    ("genesis_unet3d_small", "unet3d_small", "genesis", "unet3d_small.genesis_ct32", _BSBN),
    ("genesis_unet3d_small_seg", "unet3d_small_seg", "genesis", "unet3d_small_seg.genesis_ct32", _BSBN),
    ("pcrl_unet3d_small", "unet3d_small", "pcrl", "unet3d_small.pcrl_ct32", {}),
    ("pcrl_unet3d_small_seg", "unet3d_small_seg", "pcrl", "unet3d_small_seg.pcrl_ct32", {}),
]:
    declare_alias(_old, _network, _method, _bare, _kwargs)
