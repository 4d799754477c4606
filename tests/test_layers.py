"""The package's imports point one way, and the metadata layers never import torch.

Layers, bottom to top: shared helpers (zoo._io, zoo._plot, zoo._machine) -> meta -> hub -> models ->
data -> methods -> train -> eval -> report / export / convert / cli. A module may import its own layer
and any layer below, never one above. The one circle allowed: the registry loads the built-in catalog on
first use (zoo.meta.registry -> zoo.meta.catalog by name), and the catalog registers into the registry.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"

LAYERS = {
    "zoo._io": 0, "zoo._plot": 0, "zoo._machine": 0,
    "zoo.meta": 1,
    "zoo.hub": 2,
    "zoo.models": 3,
    "zoo.data": 4,
    "zoo.methods": 5,
    "zoo.train": 6,
    "zoo.eval": 7,
    "zoo.report": 8, "zoo.export": 8, "zoo.convert": 8,
    "zoo.cli": 9,
    "zoo": 9,  # the package face re-exports lazily
}
TORCH_FREE = ("zoo._io", "zoo._plot", "zoo.meta", "zoo.hub", "zoo.report")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ZOO.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every zoo import in a file, including lazy ones inside functions."""
    tree = ast.parse(path.read_text())
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out += [(node.lineno, n if _is_module(n) else target) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(line, t) for line, t in out if t == "zoo" or t.startswith("zoo.")]


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ZOO.parent / rel).with_suffix(".py").is_file() or (ZOO.parent / rel / "__init__.py").is_file()


FILES = sorted(ZOO.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ZOO.parent)))
def test_imports_point_down(path: Path) -> None:
    module = _module_name(path)
    mine = _layer(module)
    upward = [f"line {line}: {target}" for line, target in _imports(path)
              if target != "zoo" and _layer(target) > mine]
    assert not upward, f"{module} (layer {mine}) imports upward: {upward}"


def test_torch_free_layers_never_import_torch_statically() -> None:
    offenders = []
    for path in FILES:
        module = _module_name(path)
        if not any(module == p or module.startswith(p + ".") for p in TORCH_FREE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{module}: {n}" for n in names if n.split(".")[0] in ("torch", "timm", "torchvision")]
    assert not offenders, offenders


def test_metadata_commands_do_not_load_torch() -> None:
    code = ("import sys, zoo, zoo.meta, zoo.hub, zoo.report, zoo.cli; zoo.list_pretrained(); "
            "zoo.get_pretrained_cfg('resnet18'); print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'timm', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_no_import_circle_but_the_catalog() -> None:
    graph: dict[str, set[str]] = {}
    for path in FILES:
        graph[_module_name(path)] = {t for _, t in _imports(path) if t != "zoo"}
    allowed = {("zoo.meta.registry", "zoo.meta.catalog")}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start and len(trail) > 1:
                    cycle = tuple(trail)
                    if not any(a in cycle and b in cycle for a, b in allowed):
                        cycles.append(" -> ".join(cycle + (start,)))
                elif nxt not in seen and nxt in graph and nxt.startswith("zoo."):
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert not cycles, sorted(set(cycles))[:10]
