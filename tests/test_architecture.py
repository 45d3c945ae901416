"""Imports flow one way: no module of ``emoclf`` imports one that (directly or not) imports it back.

Rooms are the top-level modules and the subpackages (``data/``, ``evaluation/``) taken whole, and every import
counts, those inside functions included (a lazy import is still a dependency). ``python tests/test_architecture.py``
prints the floors: each room stands one floor above the highest room it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emoclf"


def room(module: str) -> str:
    """``emoclf.data.io`` -> ``data/``, ``emoclf.training`` -> ``training``, ``emoclf`` -> ``__init__``."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    return parts[0] + "/" if (PACKAGE / parts[0]).is_dir() else parts[0]


def imports(path: Path) -> set[str]:
    """The emoclf modules a file imports (``from emoclf import console`` is the module ``emoclf.console``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "emoclf"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "emoclf":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                found.add(sub if is_module or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else node.module)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        here = room(module)
        edges.setdefault(here, set()).update(room(m) for m in imports(path) if room(m) != here)
    return edges


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each room's floor; raises ``AssertionError`` naming a loop of rooms if there is one."""
    floor: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> int:
        if node in path:
            loop = " -> ".join(path[path.index(node) :] + (node,))
            raise AssertionError(f"an import runs back up: {loop}")
        if node not in floor:
            floor[node] = 1 + max((visit(m, (*path, node)) for m in edges.get(node, ())), default=0)
        return floor[node]

    for node in edges:
        visit(node, ())
    return floor


def test_no_import_runs_back_up():
    built = floors(graph())
    assert built["layout"] == built["errors"] == 1, "the file names and the errors must stay on the ground floor"


def test_evaluation_is_pure_scoring():
    """Scoring depends on neither packaging a model (model cards, checkpoints) nor tracking."""
    reached, todo = set(), ["evaluation/"]
    edges = graph()
    while todo:
        for m in edges.get(todo.pop(), ()):
            if m not in reached:
                reached.add(m)
                todo.append(m)
    assert not reached & {"modelcard", "finishing", "checkpoints", "tracking", "training", "trainer"}


if __name__ == "__main__":
    for name, level in sorted(floors(graph()).items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"floor {level:2d}  {name}")
