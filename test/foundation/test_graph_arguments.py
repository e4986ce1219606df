"""Launch arguments as people type them: checked against their declared types before any node starts.

`sim_camera_rate_hz:=10` once killed the sim node with a 20-line InvalidParameterTypeException and the
supervisor stopped the whole graph. Every argument of config/graph.yaml now declares a type (or choices);
resolve_arguments takes what a person types, passes each node the ROS parameter literal it accepts
(10 -> 10.0 for a float), and turns anything else into one line naming the argument.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from cosmos_policy_ros import cli
from cosmos_policy_ros import graph as graph_mod
from cosmos_policy_ros.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph():
    return graph_mod.load_graph()


def _params(mode: str, given: dict[str, str]) -> dict[str, dict[str, str]]:
    """node key -> {parameter: the text after ``-p name:=``} of the resolved graph."""
    out = {}
    for spec in graph_mod.resolve(mode, given):
        args = spec.ros_args()
        out[spec.key] = dict(args[i + 1].split(":=", 1) for i, a in enumerate(args) if a == "-p")
    return out


def test_every_argument_declares_what_its_value_must_be(graph):
    typed = {name: spec.choices or spec.type for name, spec in graph.arguments.items()}
    assert typed["sim_camera_rate_hz"] == "float"
    assert typed["sim_width"] == typed["sim_height"] == "int"
    assert typed["autostart"] == "bool"
    for name in ("use_sim", "chunk_mode", "backend", "task"):
        assert graph.arguments[name].choices, name


def test_choices_agree_with_the_code_that_takes_them(graph):
    from cosmos_policy_ros.robot.executor_config import ExecutorConfig
    from cosmos_policy_ros.robot.scheduler import MODES
    from cosmos_policy_ros.sim.tasks import TASKS

    assert sorted(graph.arguments["chunk_mode"].choices) == sorted(MODES)
    assert sorted(graph.arguments["task"].choices) == sorted(TASKS)
    backends = typing.get_args(typing.get_type_hints(ExecutorConfig)["backend"])
    assert sorted(graph.arguments["backend"].choices) == sorted(["auto", *backends])


def test_argument_types_match_the_parameters_the_sim_node_reads(graph):
    from cosmos_policy_ros.nodes.sim_node import SimNodeConfig

    hints = typing.get_type_hints(SimNodeConfig)
    sim = graph.nodes["sim"].parameters
    for param in ("width", "height", "camera_rate_hz"):
        arg = graph_mod._ARG_RE.fullmatch(sim[param]).group(1)
        assert graph.arguments[arg].type == hints[param].__name__, param


def test_an_integer_for_a_float_reaches_the_node_as_a_double():
    """ROS reads -p x:=10 as an integer, which a double parameter refuses: the graph writes 10.0."""
    args = graph_mod.resolve_arguments(graph_mod.load_graph(), {"sim_camera_rate_hz": "10"})
    assert args["sim_camera_rate_hz"] == "10.0"
    sim = _params("sim", {"use_sim": "true", "sim_camera_rate_hz": "10", "sim_width": "320"})["sim"]
    assert sim["camera_rate_hz"] == "10.0"
    assert sim["width"] == "320"
    assert _params("sim", {"use_sim": "true"})["sim"]["camera_rate_hz"] == "25.0"


@pytest.mark.parametrize("given, literal", [
    ({"autostart": "TRUE"}, "true"), ({"autostart": "false"}, "false"), ({"autostart": ""}, "''"),
])
def test_a_bool_reaches_the_node_as_a_ros_bool_and_empty_as_not_set(given, literal):
    assert _params("direct", {"use_sim": "true", **given})["executor"]["autostart"] == literal


def test_text_arguments_stay_strings_even_when_they_read_as_numbers_or_booleans():
    policy = _params("direct", {"use_sim": "true", "instruction": "640"})["policy"]
    assert policy["instruction"] == "'640'"
    policy = _params("direct", {"use_sim": "true", "instruction": "yes"})["policy"]
    assert policy["instruction"] == "'yes'"


def test_choices_are_matched_in_any_case_and_passed_as_written_in_the_graph():
    args = graph_mod.resolve_arguments(graph_mod.load_graph(), {"use_sim": "True", "chunk_mode": "Blend"})
    assert (args["use_sim"], args["chunk_mode"], args["backend"]) == ("true", "blend", "sim")


def test_a_path_argument_expands_the_home_folder():
    args = graph_mod.resolve_arguments(graph_mod.load_graph(), {"bag_dir": "~/bags"})
    assert args["bag_dir"] == str(Path.home() / "bags")


@pytest.mark.parametrize("given, message", [
    ({"sim_camera_rate_hz": "abc"}, "launch argument sim_camera_rate_hz: expected a number (float), got 'abc'"),
    ({"sim_camera_rate_hz": "nan"}, "launch argument sim_camera_rate_hz: expected a number (float), got 'nan'"),
    ({"sim_camera_rate_hz": ""}, "launch argument sim_camera_rate_hz: expected a number (float), got ''"),
    ({"sim_width": "640.5"}, "launch argument sim_width: expected an integer (int), got '640.5'"),
    ({"autostart": "maybe"}, "launch argument autostart: expected true or false (bool), got 'maybe'"),
    ({"use_sim": "maybe"}, "launch argument use_sim: expected one of auto, true, false, got 'maybe'"),
    ({"chunk_mode": "blnd"}, "launch argument chunk_mode: expected one of blend, open_loop, temporal_ensemble, "
                             "synchronous, got 'blnd' (did you mean blend?)"),
    ({"backend": "dynamxel"}, "launch argument backend: expected one of auto, interbotix, dynamixel, sim, "
                              "got 'dynamxel' (did you mean dynamixel?)"),
    ({"use_sim": "true", "task": "fold_towel"},
     "launch argument task: expected one of transfer_cube, insertion (simulated ALOHA), got 'fold_towel'"),
    ({"sim_camera_rate_hz": "10", "tsk": "insertion"}, "unknown launch argument 'tsk' (did you mean task?)"),
    ({"camera_rate_hz": "10"}, "unknown launch argument 'camera_rate_hz' (did you mean sim_camera_rate_hz?)"),
])
def test_a_wrong_value_or_name_is_one_line_naming_the_argument(given, message):
    with pytest.raises(ConfigError) as err:
        graph_mod.resolve("sim", given)
    assert str(err.value) == message


def test_an_unknown_name_with_no_close_match_lists_the_arguments(graph):
    with pytest.raises(ConfigError, match=r"unknown launch argument 'zzz' \(arguments: use_sim, robot_config, "):
        graph_mod.resolve_arguments(graph, {"zzz": "1"})


def test_a_missing_config_file_is_caught_before_start():
    with pytest.raises(ConfigError, match=r"^launch argument robot_config: expected an existing config YAML "
                                          r"\(config\), got 'robot/nope.yaml' \(not found as a path or under "
                                          r".*config\)$"):
        graph_mod.resolve("sim", {"robot_config": "robot/nope.yaml"})


def test_a_real_robot_takes_any_task_label():
    assert graph_mod.resolve_arguments(graph_mod.load_graph(), {"use_sim": "false", "task": "fold_towel"})["task"] \
        == "fold_towel"


def test_resolved_arguments_resolve_again_unchanged(graph):
    """cli passes resolve_arguments' result to resolve, which checks it again."""
    once = graph_mod.resolve_arguments(graph, {"use_sim": "true", "sim_camera_rate_hz": "10", "autostart": "True"})
    assert graph_mod.resolve_arguments(graph, once) == once


def test_the_graph_file_refuses_a_default_of_the_wrong_type(tmp_path):
    g = tmp_path / "graph.yaml"
    g.write_text("arguments: {rate: {default: fast, type: float}}\nnodes: {}\nmodes: {}\n")
    with pytest.raises(ConfigError, match=r"graph.yaml: arguments.rate.default: expected a number \(float\), "
                                          r"got 'fast'$"):
        graph_mod.load_graph(g)
    g.write_text("arguments: {rate: {default: 1, type: float, choices: ['1', '2']}}\nnodes: {}\nmodes: {}\n")
    with pytest.raises(ConfigError, match="arguments.rate: choices need type str, got type float"):
        graph_mod.load_graph(g)
    g.write_text("arguments: {rate: {default: 1, type: double}}\nnodes: {}\nmodes: {}\n")
    with pytest.raises(ConfigError, match=r"arguments.rate.type: expected one of \['str', 'path', 'config'"):
        graph_mod.load_graph(g)


# ---- the CLI: one line, exit 2, nothing started ------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run([sys.executable, "-m", "cosmos_policy_ros.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("command", ["graph direct --sim", "up direct --sim", "up sim --sim --duration 5"])
def test_cli_refuses_a_wrong_value_in_one_line_before_starting_anything(command):
    done = _run_cli(*command.split(), "sim_camera_rate_hz:=abc")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "cosmos-aloha: launch argument sim_camera_rate_hz: expected a number (float), got 'abc'"]
    assert done.stdout == ""  # `up` prints its mode line just before the supervisor starts the nodes


def test_cli_never_starts_the_supervisor_for_a_wrong_value(monkeypatch, capsys):
    def no_supervisor(*args, **kwargs):
        raise AssertionError("the supervisor was started")

    monkeypatch.setattr(cli, "Supervisor", no_supervisor)
    assert cli.main(["up", "sim", "--sim", "autostart:=maybe", "sim_width:=wide"]) == 2
    err = capsys.readouterr().err
    assert err == "cosmos-aloha: launch argument autostart: expected true or false (bool), got 'maybe'\n"
    assert cli.main(["up", "direct", "--sim", "chunk_mod:=blend"]) == 2
    assert capsys.readouterr().err == "cosmos-aloha: unknown launch argument 'chunk_mod' (did you mean chunk_mode?)\n"


def test_cli_graph_shows_the_double_literal():
    done = _run_cli("graph", "sim", "--sim", "sim_camera_rate_hz:=10")
    assert done.returncode == 0, done.stderr
    assert "camera_rate_hz:=10.0" in done.stdout


@pytest.mark.ros
def test_cli_up_sim_with_an_integer_rate_starts_the_sim_node():
    """The reported case end to end: `cosmos-aloha up sim --sim sim_camera_rate_hz:=10` runs the sim node."""
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.cli", "up", "sim", "--sim",
                             "sim_camera_rate_hz:=10", "sim_width:=160", "sim_height:=120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines, ready = [], False
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "simulated ALOHA: task" in line:
                ready = True
                break
        assert ready, "".join(lines)
        assert "at 10 Hz" in lines[-1]
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # never leave the graph running
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "InvalidParameterTypeException" not in text
    # the point is the sim node: it started with the integer rate and exited cleanly on Ctrl-C (the monitor's own
    # shutdown sometimes ends in an rcl error under load, exit 1: a separate, known flake)
    assert "exit codes {'sim': 0," in text


def test_demo_refuses_execute_where_the_executor_would_ignore_it(capsys):
    """--execute K acts only in chunk_mode synchronous: a blending graph refuses it in one line before any node
    starts, and K < 1 is refused by the parser."""
    pytest.importorskip("torch", reason="the demo reads the bundled checkpoint (not installed in this CI stage)")
    from cosmos_policy_ros import demo

    saved = dict(os.environ)   # demo.main puts its private ROS domain into this process's environment
    try:
        assert demo.main(["--chunk-mode", "blend", "--execute", "25", "--episodes", "1"]) == 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--execute 25" in err[0] and "runs blend" in err[0]
    with pytest.raises(SystemExit) as exc:
        demo.parse(["--execute", "0"])
    assert exc.value.code == 2 and "--execute: expected an integer >= 1" in capsys.readouterr().err
