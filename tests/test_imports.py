"""The package's import graph has no circle: lower layers never import upper ones, not even lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import t2i_unlearn

PACKAGE = Path(t2i_unlearn.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (a package ``__init__`` names the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The package modules an import statement names (``from pkg import sub`` names ``pkg.sub`` when it is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    out = set()
    for name in names:
        while name and name not in modules:  # ``import a.b.func``-style names: the longest module prefix
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(root: Path, lazy: bool) -> dict[str, set[str]]:
    """Module -> package modules it imports. ``lazy``: also the imports inside functions; never ``if TYPE_CHECKING:`` ones."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()

        def visit(nodes: list[ast.stmt] | list[ast.AST], module: str = module, path: Path = path, edges: set[str] = edges) -> None:
            for node in nodes:
                if isinstance(node, ast.Import | ast.ImportFrom):
                    edges.update(_targets(node, module, path.name == "__init__.py", modules))
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not lazy:
                    continue
                elif isinstance(node, ast.If) and _is_type_checking(node.test):
                    visit(node.orelse)
                else:
                    visit(list(ast.iter_child_nodes(node)))

        visit(ast.parse(path.read_text(encoding="utf-8")).body)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_cycle_finder_reports_a_circle(tmp_path: Path) -> None:
    """The check itself: a lazy import that closes a circle is found (and only when lazy imports count)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import high\n\ndef f():\n    from .sub import mid\n")
    (pkg / "sub" / "mid.py").write_text("from pkg import high\n")
    (pkg / "high.py").write_text("import pkg.low\n")
    assert find_cycle(import_graph(pkg, lazy=False)) is None
    assert find_cycle(import_graph(pkg, lazy=True)) == ["pkg.high", "pkg.low", "pkg.sub.mid", "pkg.high"]


@pytest.mark.parametrize("lazy", [False, True], ids=["module-level", "with-imports-in-functions"])
def test_no_import_circle(lazy: bool) -> None:
    graph = import_graph(PACKAGE, lazy)
    assert len(graph) > 40 and "t2i_unlearn.models" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_loader_and_world_lookup_stay_below_methods_and_builder() -> None:
    """The two circles this package once had: the pipeline loader imported a method, the world lookup the builder."""
    graph = import_graph(PACKAGE, lazy=True)
    assert not any(m.startswith("t2i_unlearn.methods") for m in graph["t2i_unlearn.models"])
    assert "t2i_unlearn.toy.build" not in graph["t2i_unlearn.toy.world"]
