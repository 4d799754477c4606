"""Torch-free metadata: the pretrained-config schema (:mod:`.cfg`), the registry of networks and their
weight tags (:mod:`.registry`) and the built-in catalog (:mod:`.catalog`, loaded on first use)."""

from .cfg import Intensity, PretrainedCfg, validate_cfg
from .registry import (
    UnknownModelError,
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    register_model,
    register_pretrained,
)

__all__ = [
    "Intensity",
    "PretrainedCfg",
    "validate_cfg",
    "UnknownModelError",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "register_model",
    "register_pretrained",
]
