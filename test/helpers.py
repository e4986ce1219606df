"""Helpers shared by tests (importable as ``helpers``: pytest puts test/ on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
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


def start_node(module: str, *params: str, name: str) -> subprocess.Popen:
    """``python -m module`` as node ``name`` with ``-p key:=value`` parameters; output merged, read by the test."""
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
