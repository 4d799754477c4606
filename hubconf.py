"""torch.hub entry points: one per zoo network, plus a generic ``create_model``.

    model = torch.hub.load("<repo or dir>", "resnet18", pretrained=True, tag="pcrl_kermany64", num_classes=2)
    torch.hub.help("<repo or dir>", "resnet18")

Entry points are generated from the registry; zoo 0.1's names (``pcrl_resnet18``) are entry points too
that still load, with a DeprecationWarning naming the new name (their docstring says which).
"""

from __future__ import annotations

import zoo as _zoo
from zoo.meta import registry as _registry

dependencies = ["torch", "timm", "safetensors", "numpy"]


def _entrypoint(arch: str):  # noqa: ANN202 - the returned callable is documented by its docstring
    _, _, description = _registry.get_arch_entry(arch)
    tags, default = _registry.get_tags(arch)

    def entry(pretrained: bool = False, tag: str | None = None, **kwargs):
        name = f"{arch}.{tag}" if tag else arch
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = (
        f"{description}.\n\n"
        f"Args:\n"
        f"    pretrained: load the registered, sha256-verified weights of ``tag``.\n"
        f"    tag: which weights (default: {default or 'none: name a tag'}); "
        f"registered: {', '.join(tags) or 'none'}.\n"
        f"    **kwargs: as zoo.create_model (num_classes, in_chans, features_only, ...).\n"
    )
    return entry


def _alias_entrypoint(old: str):  # noqa: ANN202
    def entry(pretrained: bool = False, tag: str | None = None, **kwargs):
        return _zoo.create_model(f"{old}.{tag}" if tag else old, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = old
    entry.__doc__ = f"Deprecated zoo 0.1 name: use {_registry.resolve_name(old, warn=False)!r}."
    return entry


for _arch in _zoo.list_models():
    globals()[_arch] = _entrypoint(_arch)
for _old in _registry.list_aliases():
    globals()[_old] = _alias_entrypoint(_old)


def create_model(model_name: str, pretrained: bool = False, **kwargs):
    """Any zoo model by name (``network``, ``network.tag`` or ``hf-hub:org/name``); see zoo.create_model."""
    return _zoo.create_model(model_name, pretrained=pretrained, **kwargs)
