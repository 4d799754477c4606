"""zoo: self-supervised medical-imaging backbones with verified pretrained weights.

The registry API is torch-free and imported eagerly; everything that needs torch is imported on
first use, so ``zoo list`` / ``zoo info`` answer instantly.
"""

from __future__ import annotations

import importlib
from typing import Any

from .meta import (
    Intensity,
    PretrainedCfg,
    UnknownModelError,
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    register_model,
    register_pretrained,
)

__version__ = "0.2.0"

_LAZY = {
    "create_model": "zoo.models.builder",
    "CheckpointError": "zoo.models.builder",
    "resolve_data_config": "zoo.data.transforms",
    "create_transform": "zoo.data.transforms",
    "ModelInputError": "zoo.models._contract",
    "IntegrityError": "zoo.hub",
    "WeightsNotFoundError": "zoo.hub",
    "export_onnx": "zoo.export",
    "save_for_hf": "zoo.export.huggingface",
    "push_to_hub": "zoo.export.huggingface",
}

__all__ = [
    "__version__",
    "Intensity",
    "PretrainedCfg",
    "UnknownModelError",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "register_model",
    "register_pretrained",
    "finetune",
    "compare",
    *_LAZY,
]


def finetune(model: str, data: str, out: str, **options: Any) -> Any:
    """Fine-tune ``model`` on your labelled ``data`` and write ``out`` (``zoo finetune``'s Python API).

    ``options`` are the fields of :class:`zoo.eval.finetune.FinetuneConfig` (``epochs``, ``img_size``,
    ``val``, ``freeze_encoder``, ``layer_decay``, ``pretrained``, ``seed``, ``resume``, ...). Returns a
    :class:`~zoo.eval.finetune.FinetuneResult`; ``zoo.create_model("local-dir:" + out, pretrained=True)``
    loads the model.
    """
    from .eval.finetune import FinetuneConfig, run_finetune
    from .export.huggingface import save_for_hf

    return run_finetune(FinetuneConfig(model=model, data=str(data), out=str(out), **options), save=save_for_hf)


def compare(pattern: str, data: str, **options: Any) -> dict[str, Any]:
    """Rank every checkpoint matching ``pattern`` and random init on your labelled ``data`` (``zoo compare``'s
    Python API).

    ``options`` are the fields of :class:`zoo.eval.compare.CompareConfig` (``label_fractions``, ``protocol``,
    ``seeds``, ``test``, ``out``, ...). Returns the results dict also written to ``OUT/compare.json``.
    """
    from .eval.compare import CompareConfig, run_compare

    return run_compare(CompareConfig(pattern=pattern, data=str(data), **options))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
