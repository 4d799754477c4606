"""The contract of a self-supervised method: a backbone in, a loss dict out.

A method never knows where weights are hosted or how data is read: the training loop hands it a batch
of preprocessed images (``(B, C, H, W)`` in [0, 1]) or cubes (``(B, C, X, Y, Z)`` in [0, 1]) and a
seeded generator; the method makes its own views and augmentations on tensors and returns its loss
terms. :meth:`export_state_dict` gives exactly the keys ``zoo.create_model(arch, **model_kwargs)``
strict-loads.

A method is given a *network* name (``resnet18``, ``unet3d_small_seg``; a zoo 0.1 name such as
``genesis_unet3d_small_seg`` still works, with a DeprecationWarning, and brings the network kwargs it
implied) and decides from the network whether it can train it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..meta.registry import get_pretrained_cfg, resolve_name, split_model_name
from ..models.unets import DECODER_KWARGS, unet_of
from .hparams import hparams_class, parse_hparams

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["SSLMethod", "DataSpec", "resolve_network"]


@dataclass
class DataSpec:
    """What a method needs to build its own dataset (the loop's data settings, nothing else).

    ``options`` holds method-specific data settings (SWCL's pseudo-labeller and patch stages).
    """

    data: str
    data_kind: str = "auto"
    img_size: int = 224
    in_chans: int = 3
    workers: int = 0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def resolve_network(name: str) -> tuple[str, dict[str, Any]]:
    """``name`` (a network, or a zoo 0.1 architecture name) -> ``(network, network kwargs the name implied)``.

    ``genesis_unet3d_small_seg`` -> ``("unet3d_small_seg", {"norm": "batch_stats_bn", "width": 16, ...})``
    (with a DeprecationWarning); ``resnet18`` -> ``("resnet18", {})``. A name with weights (``network.tag``) is
    refused: a method trains a network; start from weights with ``--init-from``.
    """
    new = resolve_name(name)
    network, tag = split_model_name(new)
    if new == name:
        if tag:
            raise ValueError(f"{name!r} names weights, not a network: give --arch {network} (and --init-from "
                             f"{name} to start from those weights)")
        return network, {}
    # an old name: every network kwarg of what it stood for, so the old recipe is rebuilt exactly
    return network, dict(get_pretrained_cfg(new).arch_kwargs)


class SSLMethod(nn.Module):
    """Base class of the pretraining objectives.

    Subclasses set ``name`` and ``spatial_dims`` and implement :meth:`forward`. ``arch`` is a zoo
    network name; after construction ``self.arch`` is the network's current name and
    ``self.model_kwargs`` the network kwargs used (the method's defaults, those an old name implied,
    then the caller's ``model_kwargs``).
    """

    name: ClassVar[str] = ""
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    # keys of DataSpec.options the method's build_dataset reads (its data settings, not hyper-parameters)
    data_option_keys: ClassVar[tuple[str, ...]] = ()
    # (online, target) sub-module names of the momentum encoders, updated by update_momentum_pairs
    momentum_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, arch: str, model_kwargs: dict[str, Any] | None = None, **hparams: Any) -> None:
        super().__init__()
        network, implied = resolve_network(arch)
        self.arch = network
        self.model_kwargs: dict[str, Any] = {**self.network_defaults(network), **implied, **dict(model_kwargs or {})}
        # typed and checked (HparamError names the known keys); every field recorded, defaults included
        self.hp = parse_hparams(type(self), hparams)
        self.hparams: dict[str, Any] = dataclasses.asdict(self.hp)

    @classmethod
    def hparams_class(cls) -> type:
        """The dataclass of the method's hyper-parameters (see :mod:`zoo.methods.hparams`)."""
        return hparams_class(cls)

    @classmethod
    def parse_hparams(cls, values: dict[str, Any]) -> Any:
        """``values`` checked into :meth:`hparams_class` (unknown keys and wrong types refused)."""
        return parse_hparams(cls, values)

    @property
    def export_kwargs(self) -> dict[str, Any]:
        """The network kwargs of the exported weights (an encoder network drops its U-Net's decoder kwargs)."""
        if unet_of(self.arch) is None:
            return dict(self.model_kwargs)
        return {k: v for k, v in self.model_kwargs.items() if k not in DECODER_KWARGS}

    @classmethod
    def network_defaults(cls, network: str) -> dict[str, Any]:
        """Network kwargs the method implies unless ``model_kwargs`` say otherwise (none by default)."""
        return {}

    @classmethod
    def build_dataset(cls, spec: DataSpec) -> Dataset | None:
        """The method's own training samples, or ``None`` (the default) for the images of ``spec.data``.

        Methods that need more than images (same-patient pairs, pseudo-labelled patches) return a
        dataset whose items are ``dict[str, Tensor]``; the loop stacks each key into a batch and hands
        the dict to :meth:`forward`.
        """
        return None

    def forward(
        self, batch: torch.Tensor | dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; ``out["loss"]`` is what is back-propagated."""
        raise NotImplementedError

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (momentum encoders, queues, schedules)."""

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone weights to ship, under the keys of ``create_model(self.arch, **self.model_kwargs)``."""
        raise NotImplementedError
