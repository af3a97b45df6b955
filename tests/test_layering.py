"""The package's dependencies point one way (docs/architecture.md) and no module imports itself in a cycle.

Every ``import qkv.…`` / ``from qkv… import`` of every module counts, also those inside functions.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "qkv"

#: lowest first: a module may import its own layer and the layers before it, never one after it.
LAYERS = [
    {"config", "scoring", "data"},
    {"nn"},
    {"models"},
    {"decode"},
    {"train"},
    {"interop"},
    {"tasks"},
    {"viz"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qkv"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("qkv"))
        graph[name] = found
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in imports() if m != "qkv" and layer(m) is None)
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"


def test_no_import_from_a_higher_layer():
    bad = [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in imports().items()
        if m != "qkv"
        for d in deps
        if layer(d) is not None and layer(m) is not None and layer(d) > layer(m)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = imports()
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}  # a package's own
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # a package's __init__ re-exporting its submodules is not a cycle: drop edges from a package to its children
    def nested(a: str, b: str) -> bool:
        return b.startswith(a + ".") or a.startswith(b + ".")

    real = [c for c in cycles if not all(nested(a, b) for a, b in itertools.pairwise(c))]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)
