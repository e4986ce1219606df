"""The node graph of each launch mode, read from config/graph.yaml.

One definition serves two front ends: the launch files turn a resolved graph into launch_ros
``Node`` actions for ``ros2 launch``; the package CLI starts the same nodes as processes where
the ROS 2 CLI is absent. Resolution (argument defaults, ``$(arg x)`` substitution, use_sim
conditions) lives here so both front ends agree by construction.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cosmos_policy_ros import config as cfg

GRAPH_CONFIG = "graph.yaml"
PACKAGE = "cosmos_policy_ros"
_ARG_RE = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")
_WHEN = ("use_sim", "not_use_sim")
ROBOT_DEVICE_GLOB = "/dev/ttyDXL_follower_*"


@dataclass
class ArgumentSpec:
    default: str
    help: str = ""


@dataclass
class NodeTemplate:
    executable: str
    module: str
    name: str
    when: str = ""
    parameters: dict[str, str | int | float | bool] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)


@dataclass
class GraphConfig:
    arguments: dict[str, ArgumentSpec]
    nodes: dict[str, NodeTemplate]
    modes: dict[str, list[str]]

    def validate(self) -> None:
        for key, node in self.nodes.items():
            if node.when and node.when not in _WHEN:
                raise cfg.ConfigError(f"nodes.{key}.when: expected one of {list(_WHEN)}, got {node.when!r}")
            values = [(f"parameters.{k}", v) for k, v in node.parameters.items()]
            values += [(f"remappings.{k}", v) for k, v in node.remappings.items()]
            for where, value in values:
                for arg in _ARG_RE.findall(str(value)):
                    if arg not in self.arguments:
                        raise cfg.ConfigError(f"nodes.{key}.{where}: unknown argument $(arg {arg})")
        for mode, keys in self.modes.items():
            for k in keys:
                if k not in self.nodes:
                    raise cfg.ConfigError(f"modes.{mode}: unknown node {k!r} (nodes: {', '.join(self.nodes)})")


@dataclass(frozen=True)
class NodeSpec:
    """One node of a resolved graph: what to start and with which parameters."""

    key: str
    executable: str
    module: str
    name: str
    parameters: tuple[tuple[str, object], ...]
    remappings: tuple[tuple[str, str], ...]

    def ros_args(self) -> list[str]:
        """``--ros-args`` tail that gives the node its name, parameters and remappings."""
        out = ["--ros-args", "-r", f"__node:={self.name}"]
        for k, v in self.parameters:
            out += ["-p", f"{k}:={_param_text(v)}"]
        for a, b in self.remappings:
            out += ["-r", f"{a}:={b}"]
        return out


def load_graph(path: str | Path = GRAPH_CONFIG) -> GraphConfig:
    return cfg.load(GraphConfig, path)


def robot_attached() -> bool:
    """True when the Interbotix udev names of the follower arms exist (a real ALOHA is plugged in)."""
    return bool(glob.glob(ROBOT_DEVICE_GLOB))


def resolve_arguments(graph: GraphConfig, given: dict[str, str] | None = None) -> dict[str, str]:
    """Defaults overlaid with ``given``; ``use_sim: auto`` becomes true/false. Unknown names fail."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(graph.arguments))
    if unknown:
        raise cfg.ConfigError(f"unknown launch argument {unknown[0]!r} (known: {', '.join(graph.arguments)})")
    args = {k: spec.default for k, spec in graph.arguments.items()}
    args.update({k: str(v) for k, v in given.items()})
    use_sim = args.get("use_sim", "false").lower()
    if use_sim == "auto":
        use_sim = "false" if robot_attached() else "true"
    if use_sim not in ("true", "false"):
        raise cfg.ConfigError(f"use_sim: expected true, false or auto, got {args['use_sim']!r}")
    args["use_sim"] = use_sim
    if args.get("backend") == "auto":
        args["backend"] = "sim" if use_sim == "true" else "interbotix"
    return args


def resolve(mode: str, given: dict[str, str] | None = None, graph: GraphConfig | None = None) -> list[NodeSpec]:
    """The nodes mode ``mode`` starts, with every argument substituted."""
    graph = graph or load_graph()
    if mode not in graph.modes:
        raise cfg.ConfigError(f"unknown mode {mode!r} (modes: {', '.join(graph.modes)})")
    args = resolve_arguments(graph, given)
    use_sim = args.get("use_sim") == "true"
    specs = []
    for key in graph.modes[mode]:
        t = graph.nodes[key]
        if (t.when == "use_sim" and not use_sim) or (t.when == "not_use_sim" and use_sim):
            continue
        params = tuple((k, _substitute(v, args)) for k, v in t.parameters.items())
        remaps = tuple((a, _substitute(b, args)) for a, b in t.remappings.items())
        specs.append(NodeSpec(key, t.executable, t.module, t.name, params, remaps))
    return specs


def _substitute(value, args: dict[str, str]):
    """Replace $(arg x). A value that is exactly one $(arg x) whose text reads as a number or a
    boolean becomes that type (ROS parameters are typed: width:=640 must arrive as an integer)."""
    if not isinstance(value, str):
        return value
    whole = _ARG_RE.fullmatch(value)
    if whole:
        text = args[whole.group(1)]
        try:
            typed = yaml.safe_load(text) if text else text
        except yaml.YAMLError:
            typed = text
        return typed if isinstance(typed, (bool, int, float)) else text
    return _ARG_RE.sub(lambda m: args[m.group(1)], value)


def _param_text(value) -> str:
    """A value as ROS 2 ``-p`` syntax (YAML); strings stay strings even when they look like numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text in ("true", "false"):
        return text
    try:
        if text and yaml.safe_load(text) == text:
            return text  # reads back as the same string: no quotes needed
    except yaml.YAMLError:
        pass
    return "'" + text.replace("'", "''") + "'"
