"""Check that every import statement of the package resolves on this interpreter (CI stage "humble").

Run with the oldest supported Python (3.10, ROS 2 Humble) and numpy (Ubuntu 22.04's 1.21.5). It reads
the source with this Python's parser (nothing is imported from the package itself), so modules whose
tests need torch or rclpy are checked too: a syntax error (PEP 695 generics, ...), ``import tomllib``,
``from typing import Self``, ``from itertools import batched`` or ``from numpy.exceptions import
AxisError`` fail here with file and line.

Usage: python scripts/ci_check_imports.py PACKAGE_DIR [--missing-ok torch,rclpy,*_msgs]
Modules matching --missing-ok (fnmatch on the name and its top-level package) are allowed to be
absent; imports inside ``try: ... except ImportError`` blocks are not checked.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib
import importlib.util
import sys
from pathlib import Path


def _guarded(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a try whose handlers catch ImportError/ModuleNotFoundError/Exception."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = {ast.unparse(h.type) if h.type else "" for h in node.handlers}
            if any(n in ("", "ImportError", "ModuleNotFoundError", "Exception") or "ImportError" in n for n in names):
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("package_dir", type=Path)
    ap.add_argument("--missing-ok", default="")
    args = ap.parse_args(argv)
    patterns = [p for p in args.missing_ok.split(",") if p]
    pkg = args.package_dir.resolve().name
    sys.path.insert(0, str(args.package_dir.resolve().parent))

    def ok_missing(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name.split(".")[0], p) for p in patterns)

    def resolves(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    problems, checked = [], 0
    files = sorted(args.package_dir.rglob("*.py"))
    for path in files:
        try:
            tree = ast.parse(path.read_text(), str(path))
        except SyntaxError as exc:
            problems.append(f"{path.relative_to(args.package_dir.parent)}:{exc.lineno}: syntax error on Python "
                            f"{sys.version.split()[0]}: {exc.msg}")
            continue
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in guarded or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == pkg):
                continue  # the package's own modules: checked as files
            where = f"{path.relative_to(args.package_dir.parent)}:{node.lineno}"
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for mod in mods:
                checked += 1
                if ok_missing(mod):
                    continue
                if not resolves(mod):
                    problems.append(f"{where}: no module {mod!r} on Python {sys.version.split()[0]}")
                    continue
                if isinstance(node, ast.ImportFrom):
                    try:
                        m = importlib.import_module(mod)
                    except ModuleNotFoundError as exc:  # e.g. safetensors.torch without torch
                        if not ok_missing(exc.name or ""):
                            problems.append(f"{where}: importing {mod} fails: {exc}")
                        continue
                    for a in node.names:
                        if a.name != "*" and not hasattr(m, a.name) and not resolves(f"{mod}.{a.name}"):
                            problems.append(f"{where}: {mod} has no {a.name!r} on Python {sys.version.split()[0]}"
                                            f" ({getattr(m, '__version__', '')})".replace(" ()", ""))
    for p in problems:
        print(p)
    print(f"ci_check_imports: {len(files)} files, {checked} imports, {len(problems)} unresolved "
          f"(Python {sys.version.split()[0]})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
