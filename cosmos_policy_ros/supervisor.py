"""Run a node graph as child processes: prefixed output, signal forwarding, fail-fast.

This is what ``ros2 launch`` does for us on a ROS 2 install; the package CLI needs it where the
ROS 2 CLI is absent. Rules: Ctrl-C / SIGTERM are forwarded to every node (SIGINT first, so rclpy
shuts down cleanly; SIGTERM then SIGKILL after a grace period); if any node exits while the graph
should be running, the others are stopped and the supervisor reports which node died and exits
non-zero.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    pump: threading.Thread | None = None
    exit_code: int | None = None


@dataclass
class GraphResult:
    exit_code: int
    reason: str
    children: dict[str, int | None] = field(default_factory=dict)


class Supervisor:
    def __init__(self, children: Sequence[tuple[str, list[str]]], env: dict | None = None,
                 grace_s: float = 5.0, out: Callable[[str], None] | None = None):
        self.children = [Child(n, list(a)) for n, a in children]
        self.env = env
        self.grace_s = grace_s
        self._out = out or (lambda line: print(line, flush=True))
        self._stop = threading.Event()
        self._stop_reason = ""
        self._lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        width = max(len(c.name) for c in self.children)
        for c in self.children:
            c.proc = subprocess.Popen(c.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, text=True, bufsize=1,
                                      preexec_fn=_die_with_parent)
            c.pump = threading.Thread(target=self._pump, args=(c, c.name.ljust(width)), daemon=True)
            c.pump.start()
            self._out(f"[supervisor] started {c.name} (pid {c.proc.pid})")

    def request_stop(self, reason: str) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._stop_reason = reason
                self._stop.set()

    def wait(self, timeout: float | None = None, poll_s: float = 0.1) -> GraphResult:
        """Block until a stop is requested, a node dies, or ``timeout``; then stop everything."""
        deadline = None if timeout is None else time.monotonic() + timeout
        died = None
        while not self._stop.is_set():
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    died = c
                    break
            if died:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop("time limit reached")
                break
            self._stop.wait(poll_s)
        if died:
            self.request_stop(f"node '{died.name}' exited with code {died.proc.returncode}")
        self._shutdown()
        code = 0
        if died:
            code = died.proc.returncode or 1
        return GraphResult(code, self._stop_reason, {c.name: c.exit_code for c in self.children})

    def run(self, timeout: float | None = None) -> GraphResult:
        """start + wait, with SIGINT/SIGTERM turned into a clean stop (main thread only)."""
        previous = {}

        def on_signal(signum, _frame):
            self.request_stop(f"received {signal.Signals(signum).name}")

        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.signal(s, on_signal)
        try:
            self.start()
            result = self.wait(timeout)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        self._out(f"[supervisor] stopped: {result.reason}; exit codes {result.children}")
        return result

    # ---- internals ------------------------------------------------------------------------
    def _shutdown(self) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for sig, wait_s in ((signal.SIGINT, self.grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            for c in running:
                _signal_group(c.proc, sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end and any(c.proc.poll() is None for c in running):
                time.sleep(0.05)
            running = [c for c in running if c.proc.poll() is None]
            if not running:
                break
            self._out(f"[supervisor] {', '.join(c.name for c in running)} still running after "
                      f"{signal.Signals(sig).name}; escalating")
        for c in self.children:
            if c.proc is not None:
                c.exit_code = c.proc.wait()
                if c.pump is not None:
                    c.pump.join(timeout=2.0)

    def _pump(self, child: Child, label: str) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for line in child.proc.stdout:
            self._out(f"[{label}] {line.rstrip()}")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so no node is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux/glibc: nodes then rely on the normal shutdown path
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def python_module_argv(module: str, ros_args: list[str]) -> list[str]:
    return [sys.executable, "-m", module, *ros_args]
