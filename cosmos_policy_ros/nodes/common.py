"""Shared start-up for the package's nodes: one clear error line instead of a traceback."""
from __future__ import annotations

import sys
from typing import Callable

from cosmos_policy_ros.config import ConfigError


def run_node(make_node: Callable, args: list[str] | None = None, executor_threads: int = 1,
             name: str | None = None) -> int:
    """Init rclpy, build the node, spin until Ctrl-C/SIGTERM; config errors exit 1 with one line.

    rclpy's SIGINT handler shuts the context down (spin returns) and then raises KeyboardInterrupt
    once, wherever the main thread happens to be — possibly inside the clean-up. Clean-up steps are
    therefore guarded, and a late KeyboardInterrupt still means a clean exit (0).
    """
    try:
        return _run_node(make_node, args, executor_threads, name)
    except KeyboardInterrupt:
        return 0


def _guarded(step: Callable[[], object]) -> None:
    try:
        step()
    except KeyboardInterrupt:  # interrupted once mid-step: finish the step
        try:
            step()
        except Exception:  # noqa: BLE001 - partially done already; nothing more to do
            pass


def _run_node(make_node: Callable, args: list[str] | None, executor_threads: int, name: str | None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(executor_threads) if executor_threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        label = node.get_name() if node is not None else (name or getattr(make_node, "__name__", "node"))
        print(f"[{label}] error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        failed = bool(getattr(node, "failed", False))
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                _guarded(close)
            _guarded(node.destroy_node)
        _guarded(lambda: rclpy.ok() and rclpy.shutdown())
    return 1 if failed else 0


def declare(node, name: str, default):
    """Declare a parameter and return its value (the node's config in one line per parameter)."""
    return node.declare_parameter(name, default).value
