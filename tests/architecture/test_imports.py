"""The import rules of docs/architecture.md, read from the source: api -> queue_worker <-
supervisor, runtime a leaf without pymongo, and no module importing its way back to itself."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "queue_worker", "supervisor", "runtime")


def modules() -> dict[str, Path]:
    """Every module of our packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(path: Path, name: str, known: frozenset[str] = frozenset()) -> Iterator[str]:
    """The dotted names a module imports, anywhere in it (lazy imports count too); `from p
    import m` of a known submodule m is an import of p.m alone."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            if all(sub in known for sub in submodules):
                yield from submodules
            else:
                yield base


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    ours = modules()
    known = frozenset(ours)
    return {
        name: {t for t in imported(path, name, known) if t in ours and t != name}
        for name, path in ours.items()
    }


def test_the_packages_import_each_other_only_one_way() -> None:
    """queue_worker imports neither api nor supervisor; api and supervisor never import each
    other; runtime imports none of ours and no pymongo (the masters load it)."""
    forbidden = {
        "queue_worker": ("api", "supervisor"),
        "api": ("supervisor",),
        "supervisor": ("api",),
        "runtime": ("api", "queue_worker", "supervisor", "pymongo", "bson"),
    }
    broken = []
    for name, path in modules().items():
        top = name.split(".")[0]
        for target in imported(path, name):
            if target.split(".")[0] in forbidden[top]:
                broken.append(f"{name} imports {target}")
    assert broken == []


def test_no_module_imports_its_way_back_to_itself() -> None:
    """The module graph has no cycle, lazy imports included: each module can be read and
    changed knowing only what is below it."""
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []
