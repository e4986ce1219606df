"""Every module imports, and the package's own import graph has no circle (standard library only).

Why: a circle (demo <-> train.evaluate once) means two modules can no longer be understood, tested or
moved one at a time, and it hides until an import order changes. Imports inside functions count too:
they are the usual way a circle sneaks back in.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import cosmos_policy_ros

PACKAGE = "cosmos_policy_ros"
ROOT = Path(cosmos_policy_ros.__file__).parent


def package_modules() -> dict[str, Path]:
    """Dotted name -> source file of every module we wrote (generated msg/srv packages excluded)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and parts[1] in ("msg", "srv"):
            continue
        out[".".join(parts)] = path
    return out


def imported_names(module: str, path: Path) -> set[str]:
    """Dotted names of our modules that `module` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                target = ".".join(stem + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {m: {n for n in imported_names(m, p) if n in modules and n != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (iterative DFS, white/grey/black colouring)."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_cycle_finder_sees_a_circle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_and_function_level_imports_are_edges(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from .sibling import thing\n    import cosmos_policy_ros.config\n")
    assert imported_names("cosmos_policy_ros.pkg.mod", src) >= {"cosmos_policy_ros.pkg.sibling",
                                                                 "cosmos_policy_ros.config"}


def test_package_import_graph_has_no_circle():
    cycle = find_cycle(import_graph(package_modules()))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_every_module_imports(module):
    importlib.import_module(module)
