"""Shared start-up of the package's nodes: parameters read one way, one clear error line instead of a traceback.

Parameters come in two kinds. ``declare`` reads a parameter that has a default of its own (which
config file, which robot). ``config_overrides`` reads parameters that override keys of a config
file: one the user did not set is simply absent from the result, so the file's value stands. There
are no sentinel defaults (-1, 0, "") to mean "not set". Both accept what a person types on the command
line (``-p camera_rate_hz:=10`` is an integer; ``-p autostart:=true`` a boolean) and turn a wrong type
into a ConfigError naming the parameter, which ``run_node`` prints as one line before exiting 1.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import typing
from typing import Any, Callable, Literal, Mapping

from rcl_interfaces.msg import ParameterDescriptor

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line

_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _checked(name: str, value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` (str, int, float, bool or Literal[...] of strings); ConfigError if it is not one."""
    if typing.get_origin(kind) is Literal:
        choices = list(typing.get_args(kind))
        if value in choices:
            return value
        raise ConfigError(f"parameter {name}: expected one of {choices}, got {value!r}")
    if kind not in _EXPECTED:
        raise TypeError(f"parameter {name}: unsupported parameter type {kind!r}")
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # launch files may pass booleans as text
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # -p rate_hz:=10 arrives as an integer
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ConfigError(f"parameter {name}: expected {_EXPECTED[kind]}, got {value!r}")


def declare(node, name: str, default):
    """Declare a parameter with a default and return its value, of the default's type (an int is taken for a float)."""
    value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
    return _checked(name, value, type(default))


def config_overrides(node, params: Mapping[str, Any]) -> dict[str, Any]:
    """Declare each parameter without a default; return ``{name: value}`` for those the user set.

    ``params`` maps a parameter name to its type: str, int, float, bool or a ``Literal`` of strings
    (``field_types`` reads them from a config dataclass). An empty string counts as not set, because a
    launch argument always has a value and graph.yaml passes ``""`` for "as the config file says".
    """
    out = {}
    for name, kind in params.items():
        value = node.declare_parameter(name, None, ParameterDescriptor(dynamic_typing=True)).value
        if value is None or value == "":
            continue
        out[name] = _checked(name, value, kind)
    return out


def field_types(schema: type, *names: str) -> dict[str, Any]:
    """``{name: type}`` of fields of config dataclass ``schema``: the parameter types of ``config_overrides``."""
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise TypeError(f"{schema.__name__} has no field(s) {unknown}")
    return {n: hints[n] for n in names}


def run_node(make_node: Callable, args: list[str] | None = None, executor_threads: int = 1,
             name: str | None = None, on_ready: Callable[[Any], None] | None = None,
             start_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Init rclpy, build the node, spin until Ctrl-C/SIGTERM; a project error exits 1 with one line.

    The line is ``[<node>] error: <message>`` (``errors.one_line``: no traceback, no ANSI escapes) for
    every project error type (``errors.CosmosError``: a config, checkpoint, statistics or embeddings
    file that cannot be used), an OSError (a file that cannot be opened) and a ValueError.

    ``on_ready(node)`` runs once the node is built and added to the executor, just before spinning:
    the start hook of a node that needs more than callbacks (the executor's loop thread).
    ``start_errors`` are further exception types that mean "cannot run" for this node (hardware
    that does not answer) and are reported the same way.

    rclpy's SIGINT handler wakes the executor and calls Python's handler. Once spinning, that handler
    (``_SpinSigint``) shuts the context down (spin returns) and does not raise: a KeyboardInterrupt between
    two bytecodes of the executor once left a half-built rclpy Task whose ``__del__`` printed a traceback at
    exit. Before spinning (a node that waits for hardware) and for a second Ctrl-C it raises as usual.
    Clean-up steps are guarded, and a late KeyboardInterrupt still means a clean exit (0).
    """
    sigint = _SpinSigint.install()
    try:
        return _run_node(make_node, args, executor_threads, name, on_ready, start_errors, sigint)
    except KeyboardInterrupt:
        return 0
    finally:
        if sigint is not None:
            sigint.restore()


class _SpinSigint:
    """Python's SIGINT handler while a node spins: stop the spin by shutting the context down, never by raising.

    Kilted's rclpy has shut the context down already when it calls this handler; Jazzy's has not (there the
    KeyboardInterrupt was what stopped the spin). The shutdown runs in a thread of its own: this handler runs
    between two bytecodes of the main thread, which may hold a lock the shutdown needs.
    """

    def __init__(self, previous: Any):
        self.previous = previous
        self.spinning = threading.Event()
        self.count = 0

    @classmethod
    def install(cls) -> "_SpinSigint | None":
        """Set before rclpy.init (rclpy chains to it); None off the main thread, where signals cannot be set."""
        if threading.current_thread() is not threading.main_thread():
            return None
        handler = cls(signal.getsignal(signal.SIGINT))
        signal.signal(signal.SIGINT, handler)
        return handler

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        if not self.spinning.is_set() or self.count > 1:
            raise KeyboardInterrupt
        threading.Thread(target=_shutdown_rclpy, name="sigint-shutdown", daemon=True).start()

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.default_int_handler)


def _shutdown_rclpy() -> None:
    import rclpy  # noqa: PLC0415 - loaded by run_node already

    rclpy.try_shutdown()


def _guarded(step: Callable[[], object]) -> None:
    try:
        step()
    except KeyboardInterrupt:  # interrupted once mid-step: finish the step
        try:
            step()
        except Exception:  # noqa: BLE001 - partially done already; nothing more to do
            pass


def _run_node(make_node: Callable, args: list[str] | None, executor_threads: int, name: str | None,
              on_ready: Callable[[Any], None] | None, start_errors: tuple[type[BaseException], ...],
              sigint: _SpinSigint | None) -> int:
    import rclpy  # noqa: PLC0415 - CLI code: rclpy is loaded only when a node is started
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    node = executor = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(executor_threads) if executor_threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        if on_ready is not None:
            on_ready(node)
        if sigint is not None:
            sigint.spinning.set()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ValueError, *EXPECTED_ERRORS, *start_errors) as exc:
        label = node.get_name() if node is not None else (name or getattr(make_node, "__name__", "node"))
        print(f"[{label}] error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # noqa: BLE001 - re-raised unless the context is gone
        # A shutdown signal between two waits of a spinning executor leaves it building a wait set on the shut
        # context (RCLError "the given context is not valid"): that is a stop, not a crash.
        if rclpy.ok():
            raise
    finally:
        failed = bool(getattr(node, "failed", False))
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                _guarded(close)
            _guarded(node.destroy_node)
        if executor is not None:
            # A MultiThreadedExecutor's worker pool is not daemonic: left running, it kept the interpreter
            # from exiting after Ctrl-C (seen: the sim node hung in threading._shutdown).
            _guarded(lambda: executor.shutdown(timeout_sec=5.0))
        _guarded(rclpy.try_shutdown)  # also after a SIGINT already shut the context down
    return 1 if failed else 0
