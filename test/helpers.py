"""Helpers shared by tests (importable as ``helpers``: pytest puts test/ on sys.path)."""
from __future__ import annotations

import subprocess
import time


def spin_until(executor, predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return bool(predicate())


def stop_processes(procs: dict[str, subprocess.Popen], timeout: float = 20.0) -> dict[str, str]:
    """Ctrl-C every node process still running, then collect each one's output (killed after ``timeout``)."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(2)
    outs = {}
    for name, p in procs.items():
        try:
            outs[name] = p.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            outs[name] = p.communicate()[0]
    return outs
