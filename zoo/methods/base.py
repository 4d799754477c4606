"""The contract of a self-supervised method: a backbone in, a loss dict out.

A method never knows where weights are hosted or how data is read: the training loop hands it a batch
of preprocessed images (``(B, C, H, W)`` in [0, 1]) or cubes (``(B, C, X, Y, Z)`` in [0, 1]) and a
seeded generator; the method makes its own views and augmentations on tensors and returns its loss
terms. :meth:`export_state_dict` gives exactly the keys ``zoo.create_model(arch)`` strict-loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..train.pretrain import PretrainConfig

__all__ = ["SSLMethod"]


class SSLMethod(nn.Module):
    """Base class of the pretraining objectives.

    Subclasses set ``name`` and ``spatial_dims`` and implement :meth:`forward`. ``arch`` is a zoo
    architecture name (``create_model(arch, num_classes=0, **model_kwargs)`` builds the backbone).
    """

    name: ClassVar[str] = ""
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)

    def __init__(self, arch: str, **hparams: Any) -> None:
        super().__init__()
        self.arch = arch
        self.hparams = dict(hparams)

    @classmethod
    def build_dataset(cls, cfg: PretrainConfig) -> Dataset | None:
        """The method's own training samples, or ``None`` (the default) for the images of ``cfg.data``.

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
        """The backbone weights to ship, under the keys of ``create_model(self.arch)``."""
        raise NotImplementedError
