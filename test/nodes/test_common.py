"""Node parameters are read one way (set / unset / what a person types / wrong type), and run_node starts
and fails every node the same way (start hook, one error line, exit 1)."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Literal

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402

from cosmos_policy_ros.config import ConfigError  # noqa: E402
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types, run_node  # noqa: E402

SPEC = {"episodes": int, "seed": int, "rate_hz": float, "mode": Literal["wall", "fast"], "autostart": bool,
        "task": str}


def make_node(ros_context, *params: str):
    """A real rclpy node given ``-p`` parameters as on the command line (``name:=value``)."""
    args = ["--ros-args"] + [x for p in params for x in ("-p", p)]
    return rclpy.create_node("params_test", context=ros_context, cli_args=args)


def test_overrides_hold_only_the_parameters_the_user_set(ros_context):
    node = make_node(ros_context, "episodes:=3", "mode:=fast", "autostart:=true", "task:=insertion")
    try:
        assert config_overrides(node, SPEC) == {"episodes": 3, "mode": "fast", "autostart": True, "task": "insertion"}
    finally:
        node.destroy_node()


def test_nothing_set_gives_no_overrides_and_empty_text_counts_as_unset(ros_context):
    node = make_node(ros_context, "task:=''")
    try:
        assert config_overrides(node, SPEC) == {}
    finally:
        node.destroy_node()


def test_an_integer_is_taken_for_a_float_and_text_for_a_boolean(ros_context):
    node = make_node(ros_context, "rate_hz:=10", "autostart:=False")
    try:
        got = config_overrides(node, SPEC)
        assert got == {"rate_hz": 10.0, "autostart": False} and isinstance(got["rate_hz"], float)
        assert declare(node, "period_s", 0.5) == 0.5
    finally:
        node.destroy_node()


@pytest.mark.parametrize("param, words", [
    ("episodes:=2.5", "parameter episodes: expected an integer, got 2.5"),
    ("episodes:=true", "parameter episodes: expected an integer, got True"),
    ("rate_hz:=fast", "parameter rate_hz: expected a number, got 'fast'"),
    ("mode:=slow", "parameter mode: expected one of ['wall', 'fast'], got 'slow'"),
    ("autostart:=3", "parameter autostart: expected true or false, got 3"),
    ("task:=[1, 2]", "parameter task: expected a string, got [1, 2]"),
])
def test_a_wrong_type_is_one_line_naming_the_parameter_and_the_type(ros_context, param, words):
    node = make_node(ros_context, param)
    try:
        with pytest.raises(ConfigError) as info:
            config_overrides(node, SPEC)
        assert str(info.value) == words
    finally:
        node.destroy_node()


def test_declare_checks_against_the_default_type(ros_context):
    node = make_node(ros_context, "stale_after_s:=1", "robot_config:=7")
    try:
        assert declare(node, "stale_after_s", 0.5) == 1.0
        with pytest.raises(ConfigError, match="parameter robot_config: expected a string, got 7"):
            declare(node, "robot_config", "robot/aloha_interbotix.yaml")
    finally:
        node.destroy_node()


def test_field_types_read_the_config_dataclass():
    @dataclass
    class Cfg:
        width: int = 640
        time_mode: Literal["wall", "fast"] = "wall"

    assert field_types(Cfg, "width", "time_mode") == {"width": int, "time_mode": Literal["wall", "fast"]}
    with pytest.raises(TypeError, match="no field"):
        field_types(Cfg, "height")


class HookedNode(Node):
    """Records what run_node does with it; the timer proves spinning started after the hook."""

    def __init__(self, events: list):
        super().__init__("hooked_test")
        self.events = events
        events.append("built")

    def start(self) -> None:
        self.events.append("ready")
        self.create_timer(0.01, self._once)

    def _once(self) -> None:
        self.events.append("spun")
        self.context.try_shutdown()

    def close(self) -> None:
        self.events.append("closed")


def test_run_node_calls_the_start_hook_before_spinning_and_closes_the_node():
    events: list[str] = []
    code = run_node(lambda: HookedNode(events), ["test"], on_ready=HookedNode.start)
    assert code == 0
    assert events == ["built", "ready", "spun", "closed"]


def test_run_node_prints_a_config_error_in_one_line_and_exits_1(capsys):
    def broken():
        raise ConfigError("executor.yaml: rate_hz: expected 1..1000, got 0")

    assert run_node(broken, ["test"], name="cosmos_executor") == 1
    err = capsys.readouterr().err
    assert err == "[cosmos_executor] error: executor.yaml: rate_hz: expected 1..1000, got 0\n"


def test_run_node_reports_a_start_error_of_the_node_in_one_line(capsys):
    def no_hardware():
        raise RuntimeError("dynamixel left: cannot open port /dev/ttyDXL_follower_left")

    assert run_node(no_hardware, ["test"], name="cosmos_executor", start_errors=(RuntimeError,)) == 1
    assert capsys.readouterr().err.count("\n") == 1


class InterruptedNode(Node):
    """A callback that gets Ctrl-C halfway: it must run to its end (no KeyboardInterrupt inside the executor)."""

    def __init__(self, events: list):
        super().__init__("interrupted_test")
        self.events = events
        self.create_timer(0.01, self._interrupted)

    def _interrupted(self) -> None:
        if self.events:
            return
        self.events.append("signalled")
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # bytecodes at which Python's handler runs
            pass
        self.events.append("finished")

    def close(self) -> None:
        self.events.append("closed")


def test_ctrl_c_while_spinning_stops_the_node_without_interrupting_a_callback():
    events: list[str] = []
    previous = signal.getsignal(signal.SIGINT)
    assert run_node(lambda: InterruptedNode(events), ["test"]) == 0
    assert events == ["signalled", "finished", "closed"]
    assert signal.getsignal(signal.SIGINT) is previous


def test_ctrl_c_before_spinning_still_interrupts_the_start():
    """A node that waits for hardware in its constructor must stay interruptible."""
    events: list[str] = []

    def waits_forever():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            pass
        events.append("waited")

    assert run_node(waits_forever, ["test"]) == 0
    assert events == []
