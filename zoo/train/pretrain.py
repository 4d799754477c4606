"""``zoo.train.pretrain``: the names of the pretraining loop, kept importable from one place.

The code lives in :mod:`zoo.train.config` (PretrainConfig and its checks), :mod:`zoo.train.loop` (the
step and the run), :mod:`zoo.train.checkpoints`, :mod:`zoo.train.distributed` and
:mod:`zoo.train.schedules`.
"""

from __future__ import annotations

from .config import (
    PretrainConfig,
    PretrainError,
    PretrainResult,
    load_run_config,
    parse_hparams,
    split_legacy_hparams,
)
from .loop import Batch, _collate, build_optimizer, prepare_method, pretrain, train_step

__all__ = [
    "PretrainConfig", "PretrainResult", "PretrainError", "pretrain", "parse_hparams", "prepare_method", "train_step",
    "build_optimizer", "split_legacy_hparams", "load_run_config", "Batch", "_collate",
]
