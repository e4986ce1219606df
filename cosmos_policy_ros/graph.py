"""The node graph of each launch mode, read from config/graph.yaml.

One definition serves two front ends: the launch files turn a resolved graph into launch_ros
``Node`` actions for ``ros2 launch``; the package CLI starts the same nodes as processes where
the ROS 2 CLI is absent. Resolution (argument defaults, ``$(arg x)`` substitution, use_sim
conditions) lives here so both front ends agree by construction.
"""
from __future__ import annotations

import difflib
import glob
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.deploy.bundle import launch_chunk_mode, launch_synchronous_steps

GRAPH_CONFIG = "graph.yaml"
PACKAGE = "cosmos_policy_ros"
_ARG_RE = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")
_SHARE = "$(share)"  # in a node's arguments: this package's share folder (config.share_dir())
ROBOT_DEVICE_GLOB = "/dev/ttyDXL_follower_*"


# What a launch argument's value must be; each reaches the node as that ROS parameter type.
ArgumentType = Literal["str", "path", "config", "int", "float", "bool"]
_EXPECTED = {"str": "text", "path": "a file or folder path", "config": "an existing config YAML",
             "int": "an integer", "float": "a number", "bool": "true or false"}


@dataclass
class ArgumentSpec:
    # The value when none is given. "" = not set: the node keeps its config file's value; an argument
    # whose default is "" may also be given as "" (for the others "" is refused like any wrong value).
    default: str | int | float | bool = ""
    help: str = ""
    # str: any text (passed as a string even when it looks like a number); path: a file or folder, ~ expanded;
    # config: a YAML found as a path or under config/ (must exist); int; float (an integer is taken: 10 -> 10.0);
    # bool: true / false (any case).
    type: ArgumentType = "str"
    # The allowed values (type str); empty = any value of the type.
    choices: list[str] = field(default_factory=list)
    # use_sim: the choices hold only when use_sim is true (a real robot takes any value, e.g. a task label).
    choices_when: Literal["", "use_sim"] = ""
    # Non-empty: with use_sim false, a mode whose nodes take this argument refuses to start without it; the
    # text says why ("the bundled checkpoint is a sim toy").
    required_on_robot: str = ""

    @property
    def default_text(self) -> str:
        """The default as launch-argument text (YAML may write it as a number or a boolean)."""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def describe(self) -> str:
        """What a value must be, for messages: 'a number (float)', 'one of a, b'."""
        if self.choices:
            return f"one of {', '.join(self.choices)}" + (" (simulated ALOHA)" if self.choices_when else "")
        return f"{_EXPECTED[self.type]} ({self.type})"


@dataclass
class NodeTemplate:
    executable: str
    name: str
    # python -m entry of a node of this package; "" for another package's executable (package below).
    module: str = ""
    # The ROS package the executable belongs to: ours (python module above), or another one run by name
    # (rviz2: launch_ros Node(package="rviz2"), `cosmos-aloha up` runs the executable from PATH).
    package: str = PACKAGE
    # Start only when this argument is true (use_sim, rviz, any bool argument); "not_<argument>" when false.
    when: str = ""
    parameters: dict[str, str | int | float | bool] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    # Command-line arguments before --ros-args; "$(arg x)" and "$(share)" (this package's share folder) are filled in.
    arguments: list[str] = field(default_factory=list)


@dataclass
class GraphConfig:
    arguments: dict[str, ArgumentSpec]
    nodes: dict[str, NodeTemplate]
    modes: dict[str, list[str]]
    # mode -> {argument: the value it takes when left ""}; chunk_mode asks the policy checkpoint first
    mode_defaults: dict[str, dict[str, str]] = field(default_factory=dict)

    def validate(self) -> None:
        for name, spec in self.arguments.items():
            if spec.choices and spec.type != "str":
                raise cfg.ConfigError(f"arguments.{name}: choices need type str, got type {spec.type}")
            if spec.choices_when and not spec.choices:
                raise cfg.ConfigError(f"arguments.{name}: choices_when without choices")
            check_argument(name, spec, spec.default_text, use_sim=True, where=f"arguments.{name}.default")
        for key, node in self.nodes.items():
            self._check_node(key, node)
            values = [(f"parameters.{k}", v) for k, v in node.parameters.items()]
            values += [(f"remappings.{k}", v) for k, v in node.remappings.items()]
            values += [(f"arguments[{i}]", v) for i, v in enumerate(node.arguments)]
            for where, value in values:
                for arg in _ARG_RE.findall(str(value)):
                    if arg not in self.arguments:
                        raise cfg.ConfigError(f"nodes.{key}.{where}: unknown argument $(arg {arg})")
        for mode, keys in self.modes.items():
            for k in keys:
                if k not in self.nodes:
                    raise cfg.ConfigError(f"modes.{mode}: unknown node {k!r} (nodes: {', '.join(self.nodes)})")
        for mode, defaults in self.mode_defaults.items():
            if mode not in self.modes:
                raise cfg.ConfigError(f"mode_defaults.{mode}: unknown mode (modes: {', '.join(self.modes)})")
            for name, value in defaults.items():
                if name not in self.arguments:
                    raise cfg.ConfigError(f"mode_defaults.{mode}.{name}: unknown argument")
                check_argument(name, self.arguments[name], value, where=f"mode_defaults.{mode}.{name}")

    def _check_node(self, key: str, node: NodeTemplate) -> None:
        if node.package == PACKAGE and not node.module:
            raise cfg.ConfigError(f"nodes.{key}.module: a node of {PACKAGE} needs its python module")
        if node.when:
            arg = _when_argument(node.when)[0]
            spec = self.arguments.get(arg)
            if spec is None or not (spec.type == "bool" or arg == "use_sim"):
                bools = [k for k, a in self.arguments.items() if a.type == "bool" or k == "use_sim"]
                raise cfg.ConfigError(f"nodes.{key}.when: expected a true/false argument or not_<it> "
                                      f"({', '.join(bools)}), got {node.when!r}")


@dataclass(frozen=True)
class NodeSpec:
    """One node of a resolved graph: what to start and with which parameters."""

    key: str
    executable: str
    module: str
    name: str
    parameters: tuple[tuple[str, object], ...]
    remappings: tuple[tuple[str, str], ...]
    package: str = PACKAGE
    # command-line arguments before ros_args(), filled in
    arguments: tuple[str, ...] = ()

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


def check_argument(name: str, spec: ArgumentSpec, text: str, use_sim: bool = True, where: str = "") -> str:
    """``text`` as given for argument ``name``, checked against ``spec`` and written as its type's literal
    (``10`` for a float -> ``10.0``, ``TRUE`` -> ``true``); one ConfigError line naming the argument if it
    is not one."""
    text = str(text)
    if text == "" and spec.default_text == "":
        return text  # not set: the node keeps its config file's value
    literal = text if spec.type == "str" and not spec.choices else _literal(spec, text.strip(), use_sim)
    if literal is not None:
        return literal
    hint = ""
    if spec.choices:
        close = difflib.get_close_matches(text.strip(), spec.choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
    elif spec.type == "config":
        hint = f" (not found as a path or under {cfg.share_dir() / 'config'})"
    where = where or f"launch argument {name}"
    raise cfg.ConfigError(f"{where}: expected {spec.describe()}, got {text!r}{hint}")


def _literal(spec: ArgumentSpec, value: str, use_sim: bool) -> str | None:
    """``value`` written as ``spec``'s type ("10" -> "10.0" for a float), or None when it is not one."""
    if spec.choices:
        match = {c.lower(): c for c in spec.choices}.get(value.lower())  # True -> true, Blend -> blend
        free = spec.choices_when == "use_sim" and not use_sim
        return match or (value if free and value else None)
    if spec.type == "float":
        try:
            number = float(value)
        except ValueError:
            return None
        return repr(number) if math.isfinite(number) else None
    if spec.type == "int":
        try:
            return str(int(value, 10))
        except ValueError:
            return None
    if spec.type == "bool":
        return value.lower() if value.lower() in ("true", "false") else None
    if spec.type == "path":
        return str(Path(value).expanduser()) if value else None
    if spec.type == "config":
        try:
            return value if value and cfg.config_path(value) else None
        except cfg.ConfigError:
            return None
    return value


def resolve_arguments(graph: GraphConfig, given: dict[str, str] | None = None) -> dict[str, str]:
    """Defaults overlaid with ``given``, each checked against its declared type and written as that
    type's literal; ``use_sim: auto`` becomes true/false. An unknown name or a wrong value fails in one line."""
    given = dict(given or {})
    for name in given:
        if name not in graph.arguments:
            close = difflib.get_close_matches(name, graph.arguments, n=3)
            known = f"did you mean {' or '.join(close)}?" if close else f"arguments: {', '.join(graph.arguments)}"
            raise cfg.ConfigError(f"unknown launch argument {name!r} ({known})")
    args = {k: spec.default_text for k, spec in graph.arguments.items()}
    args.update({k: str(v) for k, v in given.items()})
    if "use_sim" in graph.arguments:
        use_sim = check_argument("use_sim", graph.arguments["use_sim"], args["use_sim"])
        if use_sim == "auto":
            use_sim = "false" if robot_attached() else "true"
        args["use_sim"] = use_sim
    sim = args.get("use_sim", "false") == "true"
    for name, spec in graph.arguments.items():
        args[name] = check_argument(name, spec, args[name], use_sim=sim)
    if args.get("backend") == "auto":
        args["backend"] = "sim" if sim else "interbotix"
    return args


def resolve_mode_arguments(graph: GraphConfig, mode: str, given: dict[str, str] | None = None) -> dict[str, str]:
    """resolve_arguments, then what depends on the mode: an argument a real robot requires (policy_checkpoint)
    is refused when missing, and one left "" takes the policy checkpoint's value (chunk_mode, and in chunk mode
    synchronous synchronous_steps, in its policy.json) or the mode's default (mode_defaults). Reads only the
    checkpoint's metadata JSON."""
    if mode not in graph.modes:
        raise cfg.ConfigError(f"unknown mode {mode!r} (modes: {', '.join(graph.modes)})")
    args = resolve_arguments(graph, given)
    nodes = [graph.nodes[k] for k in started_keys(graph, mode, args)]
    used = {a for t in nodes for v in t.parameters.values() for a in _ARG_RE.findall(str(v))}
    if args.get("use_sim") == "false":
        for name, spec in graph.arguments.items():
            if spec.required_on_robot and name in used and args[name] == "":
                what = "<folder>" if spec.type == "path" else "<value>"
                raise cfg.ConfigError(f"use_sim is false: {name}:={what} is required; {spec.required_on_robot}")
    if args.get("lockstep") == "true":
        _lockstep_arguments(graph, mode, args)
    for name, value in graph.mode_defaults.get(mode, {}).items():
        if args[name] == "":
            stated = launch_chunk_mode(args.get("policy_checkpoint", ""), mode) if name == "chunk_mode" else None
            args[name] = check_argument(name, graph.arguments[name], stated or value)
    if args.get("chunk_mode") == "synchronous" and args.get("synchronous_steps") == "":
        stated_steps = launch_synchronous_steps(args.get("policy_checkpoint", ""))
        if stated_steps is not None:   # how the checkpoint was evaluated (else config/executor.yaml's)
            args["synchronous_steps"] = check_argument("synchronous_steps", graph.arguments["synchronous_steps"],
                                                       str(stated_steps))
    return args


def _lockstep_arguments(graph: GraphConfig, mode: str, args: dict[str, str]) -> None:
    """lockstep:=true: only the sim can wait for the executor, and the executor waits for whole chunks
    (synchronous); anything else is refused in one line. Sets chunk_mode synchronous."""
    if args.get("use_sim") != "true":
        raise cfg.ConfigError("lockstep:=true needs the simulated ALOHA (use_sim:=true): only the sim can wait "
                              "for the executor's commands")
    if "executor" not in started_keys(graph, mode, args):
        raise cfg.ConfigError(f"lockstep:=true needs the executor to drive the sim; mode {mode} does not start it "
                              "(modes direct, planning)")
    if args.get("chunk_mode", "") not in ("", "synchronous"):
        raise cfg.ConfigError(f"lockstep:=true runs chunk_mode synchronous (the sim waits while the policy computes "
                              f"each chunk), got chunk_mode:={args['chunk_mode']}")
    args["chunk_mode"] = "synchronous"


def started_keys(graph: GraphConfig, mode: str, args: dict[str, str]) -> list[str]:
    """The node keys mode ``mode`` starts with resolved arguments ``args`` (``when: use_sim`` nodes only in
    simulation, ``when: not_use_sim`` only on the robot, ``when: rviz`` only with rviz:=true)."""
    keys = []
    for k in graph.modes[mode]:
        when = graph.nodes[k].when
        if when:
            arg, wanted = _when_argument(when)
            if (args.get(arg) == "true") != wanted:
                continue
        keys.append(k)
    return keys


def _when_argument(when: str) -> tuple[str, bool]:
    """A node's ``when``: the argument it names and whether it must be true ('not_use_sim' -> use_sim, False)."""
    return (when[len("not_"):], False) if when.startswith("not_") else (when, True)


def resolve(mode: str, given: dict[str, str] | None = None, graph: GraphConfig | None = None) -> list[NodeSpec]:
    """The nodes mode ``mode`` starts, with every argument substituted."""
    graph = graph or load_graph()
    args = resolve_mode_arguments(graph, mode, given)
    specs = []
    for key in started_keys(graph, mode, args):
        t = graph.nodes[key]
        params = tuple((k, _substitute(v, args, graph.arguments)) for k, v in t.parameters.items())
        if args.get("lockstep") == "true":  # every node on the sim's /clock
            params += (("use_sim_time", True),)
        remaps = tuple((a, str(_substitute(b, args, graph.arguments))) for a, b in t.remappings.items())
        specs.append(NodeSpec(key, t.executable, t.module, t.name, params, remaps, package=t.package,
                              arguments=tuple(_fill_argument(a, args) for a in t.arguments)))
    return specs


def _fill_argument(text: str, args: dict[str, str]) -> str:
    """A node's command-line argument with $(arg x) and $(share) filled in."""
    text = _ARG_RE.sub(lambda m: args[m.group(1)], text)
    return text.replace(_SHARE, str(cfg.share_dir())) if _SHARE in text else text


def _substitute(value, args: dict[str, str], specs: dict[str, ArgumentSpec]):
    """Replace $(arg x). A value that is exactly one $(arg x) takes x's declared type (ROS parameters
    are typed: camera_rate_hz must arrive as a double, width as an integer, a str argument as a string
    even when it reads "640"); "" stays "" (not set). Other values are text."""
    if not isinstance(value, str):
        return value
    whole = _ARG_RE.fullmatch(value)
    if whole:
        text, kind = args[whole.group(1)], specs[whole.group(1)].type
        if text == "" or specs[whole.group(1)].choices:
            return text
        if kind == "float":
            return float(text)
        if kind == "int":
            return int(text)
        if kind == "bool":
            return text == "true"
        return text
    return _ARG_RE.sub(lambda m: args[m.group(1)], value)


def _param_text(value) -> str:
    """A value as ROS 2 ``-p`` syntax (YAML); strings stay strings even when they look like numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # 10.0 stays a double literal
    text = str(value)
    try:
        if text and yaml.safe_load(text) == text:
            return text  # reads back as the same string: no quotes needed
    except yaml.YAMLError:
        pass
    return "'" + text.replace("'", "''") + "'"
