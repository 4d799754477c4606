"""torch.hub entry points: one per zoo architecture, plus a generic ``create_model``.

    model = torch.hub.load("<repo or dir>", "pcrl_resnet18", pretrained=True, num_classes=2)
    torch.hub.help("<repo or dir>", "pcrl_resnet18")

Entry points are generated from the registry; nothing else is public here, so ``torch.hub.list``
shows exactly the architectures and ``create_model``.
"""

from __future__ import annotations

import zoo as _zoo

dependencies = ["torch", "timm", "safetensors", "numpy"]


def _entrypoint(arch: str):  # noqa: ANN202 - the returned callable is documented by its docstring
    _, _, description = _zoo.meta.registry.get_arch_entry(arch)
    tags = [name.partition(".")[2] for name in _zoo.list_pretrained(arch)]
    default = tags[0] if tags else None

    def entry(pretrained: bool = False, tag: str | None = None, **kwargs):
        name = f"{arch}.{tag}" if tag else arch
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = (
        f"{description}.\n\n"
        f"Args:\n"
        f"    pretrained: load the registered, sha256-verified weights of ``tag``.\n"
        f"    tag: which checkpoint (default: {default or 'none registered yet'}); "
        f"registered: {', '.join(tags) or 'none'}.\n"
        f"    **kwargs: as zoo.create_model (num_classes, in_chans, features_only, ...).\n"
    )
    return entry


for _arch in _zoo.list_models():
    globals()[_arch] = _entrypoint(_arch)


def create_model(model_name: str, pretrained: bool = False, **kwargs):
    """Any zoo model by name (``arch``, ``arch.tag`` or ``hf-hub:org/name``); see zoo.create_model."""
    return _zoo.create_model(model_name, pretrained=pretrained, **kwargs)
