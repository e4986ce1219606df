"""Helpers shared by tests (importable as ``helpers``: pytest puts test/ on sys.path)."""
from __future__ import annotations

import time


def spin_until(executor, predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return bool(predicate())
