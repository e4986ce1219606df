"""A recording stand-in for launch / launch_ros (they cannot be installed here), importable by tests.

`install(monkeypatch)` puts it in sys.modules; `run_launch_file(mode, overrides)` runs a launch file of
launch/ and its OpaqueFunction the way ros2 launch would, returning (declared arguments, Node actions).
"""
from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = {"direct": "aloha_direct.launch.py", "planning": "aloha_planning.launch.py",
                "sim": "aloha_sim.launch.py", "record": "aloha_record.launch.py"}


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription(_Recorded):
    @property
    def entities(self):
        return self.args[0]


class DeclareLaunchArgument(_Recorded):
    pass


class OpaqueFunction(_Recorded):
    pass


class Node(_Recorded):
    pass


def install(monkeypatch) -> None:
    """Make `import launch`, `launch.actions`, `launch_ros.actions` resolve to the recording stand-in."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = LaunchDescription
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    launch.actions = actions
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    launch_ros.actions = ros_actions
    for name, mod in {"launch": launch, "launch.actions": actions,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)


def run_launch_file(mode: str, overrides: dict[str, str]):
    """(declared arguments, Node actions) of launch/<mode's file> with `overrides` given on the command line."""
    ld = runpy.run_path(str(ROOT / "launch" / LAUNCH_FILES[mode]))["generate_launch_description"]()
    declared = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    opaque = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    assert len(opaque) == 1
    configs = {d.args[0]: d.kwargs["default_value"] for d in declared}
    configs.update(overrides)
    context = types.SimpleNamespace(launch_configurations=configs)
    nodes = opaque[0].kwargs["function"](context)
    return declared, nodes
