"""pytest plugin for the CI stages that run the suite without some packages (scripts/ci_ros_distros.sh).

``COSMOS_CI_MISSING_OK`` names them, comma-separated (fnmatch patterns against the module name and its
top-level package, e.g. ``torch,rclpy,*_msgs``). A test module, or a test, that fails only because
one of those is not installed (``ModuleNotFoundError``) is reported as skipped, naming the module;
every other error stays an error, so a numpy-2-only call or a Python 3.11 import still fails the stage.
New test files need no list: whatever imports torch is skipped here by itself.

The stage refuses to start when a listed top-level package is importable after all (it would not
test what it claims), e.g. a torch that slipped into the venv.

Loaded with ``-p ci_missing_ok`` (scripts/ on PYTHONPATH), with ``-p no:model_fixtures`` (the torch
fixtures test/conftest.py registers).
"""
from __future__ import annotations

import fnmatch
import importlib.util
import os
import re

import pytest

_NO_MODULE = re.compile(r"module named '([\w.]+)'")  # pytest may cut the text before it


def _patterns() -> list[str]:
    return [p.strip() for p in os.environ.get("COSMOS_CI_MISSING_OK", "").split(",") if p.strip()]


def _allowed(name: str | None) -> bool:
    if not name:
        return False
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name.split(".")[0], p) for p in _patterns())


def _missing_module(exc: BaseException | None) -> str | None:
    """The module a ModuleNotFoundError in ``exc``'s chain names, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError):
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None


def _installed(name: str) -> bool:
    """A real module (not a namespace package such as the checkout's launch/ folder)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def pytest_configure(config):
    present = [p for p in _patterns() if not any(c in p for c in "*?[") and _installed(p)]
    if present:
        raise pytest.UsageError(f"COSMOS_CI_MISSING_OK names {', '.join(present)}, but this venv has it: "
                                "the stage would not test what it says")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    names = _NO_MODULE.findall(str(rep.longrepr))
    if names and all(_allowed(n) for n in names):
        rep.outcome = "skipped"
        rep.longrepr = (str(collector.path), 0, f"Skipped: needs {names[-1]} (not installed in this CI stage)")
        rep.result = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or call.excinfo is None:
        return
    name = _missing_module(call.excinfo.value)
    why = "needs"
    if not _allowed(name):  # a child process (CLI, node) that died of the missing module: its output says so
        names = _NO_MODULE.findall(rep.longreprtext)
        name = names[-1] if names and all(_allowed(n) for n in names) else None
        why = "a child process needs"
    if name:
        path, lineno, _ = item.location
        rep.outcome = "skipped"
        rep.longrepr = (path, (lineno or 0) + 1, f"Skipped: {why} {name} (not installed in this CI stage)")
