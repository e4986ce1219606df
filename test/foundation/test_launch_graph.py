"""Each launch file yields exactly the graph defined in config/graph.yaml.

launch / launch_ros cannot be installed here, so a recording stand-in replaces them at that one
boundary: it records what the launch file asks for, and the test compares that to graph.resolve().
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from launch_standin import LAUNCH_FILES, install, run_launch_file

from cosmos_policy_ros import driver_check
from cosmos_policy_ros import graph as graph_mod

ROOT = Path(__file__).resolve().parents[2]
# A real-robot graph needs a policy checkpoint (the bundled one is a sim toy); any existing bundle folder will do.
ROBOT_CHECKPOINT = str(ROOT / "checkpoints" / "sim_small_transfer_cube")


@pytest.fixture
def launch_standin(monkeypatch):
    install(monkeypatch)
    # the sim's driver check still runs (test/foundation/test_launch_safety.py tests it), with a short window
    monkeypatch.setattr(driver_check, "DISCOVERY_S", 0.2)


_launch = run_launch_file


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
@pytest.mark.parametrize("overrides", [{"use_sim": "true"},
                                       {"use_sim": "false", "task": "insertion", "policy_checkpoint": ROBOT_CHECKPOINT},
                                       {"use_sim": "true", "chunk_mode": "temporal_ensemble", "backend": "auto"},
                                       {"use_sim": "true", "rviz": "true"}])
def test_launch_file_yields_the_defined_graph(launch_standin, mode, overrides):
    declared, nodes = _launch(mode, overrides)
    graph = graph_mod.load_graph()
    assert [(d.args[0], d.kwargs["default_value"]) for d in declared] == [
        (k, a.default_text) for k, a in graph.arguments.items()]
    expected = graph_mod.resolve(mode, overrides, graph)
    assert expected, "a mode with no nodes"
    got = [(n.kwargs["package"], n.kwargs["executable"], n.kwargs["name"], n.kwargs["arguments"],
            n.kwargs["parameters"], n.kwargs["remappings"]) for n in nodes]
    want = [(s.package, s.executable, s.name, list(s.arguments), [dict(s.parameters)], list(s.remappings))
            for s in expected]
    assert got == want


def test_use_sim_switches_the_sim_node(launch_standin):
    _, with_sim = _launch("direct", {"use_sim": "true"})
    _, without = _launch("direct", {"use_sim": "false", "policy_checkpoint": ROBOT_CHECKPOINT})
    assert "sim_node" in [n.kwargs["executable"] for n in with_sim]
    assert "sim_node" not in [n.kwargs["executable"] for n in without]
    executor = next(n for n in with_sim if n.kwargs["executable"] == "executor_node")
    assert executor.kwargs["parameters"][0]["backend"] == "sim"
    executor = next(n for n in without if n.kwargs["executable"] == "executor_node")
    assert executor.kwargs["parameters"][0]["backend"] == "interbotix"


def test_every_launch_mode_has_a_launch_file_and_every_executable_a_ros2_run_script():
    graph = graph_mod.load_graph()
    assert set(graph.modes) == set(LAUNCH_FILES)
    for node in graph.nodes.values():
        if node.package != graph_mod.PACKAGE:
            continue  # another package's executable (rviz2)
        script = ROOT / "scripts" / "ros2_run" / node.executable
        assert script.is_file(), script
        assert node.module in script.read_text()


def test_unknown_argument_and_mode_fail_clearly():
    with pytest.raises(graph_mod.cfg.ConfigError, match=r"unknown launch argument 'tsk' \(did you mean task\?\)"):
        graph_mod.resolve("direct", {"tsk": "x"})
    with pytest.raises(graph_mod.cfg.ConfigError, match="unknown mode 'fly'"):
        graph_mod.resolve("fly")
    with pytest.raises(graph_mod.cfg.ConfigError, match="launch argument use_sim: expected one of auto, true, false"):
        graph_mod.resolve("direct", {"use_sim": "maybe"})


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
def test_a_wrong_launch_argument_stops_ros2_launch_with_the_cli_line(launch_standin, mode):
    """Launch arguments arrive as text; the launch file checks them as the CLI does, before any Node exists."""
    with pytest.raises(graph_mod.cfg.ConfigError) as err:
        _launch(mode, {"use_sim": "true", "sim_camera_rate_hz": "abc"})
    assert str(err.value) == "launch argument sim_camera_rate_hz: expected a number (float), got 'abc'"
    with pytest.raises(graph_mod.cfg.ConfigError, match="launch argument autostart: expected true or false"):
        _launch(mode, {"use_sim": "false", "autostart": "maybe"})


def test_launch_arguments_reach_launch_ros_as_their_declared_types(launch_standin):
    _, nodes = _launch("sim", {"use_sim": "true", "sim_camera_rate_hz": "10", "sim_width": "320"})
    sim = next(n for n in nodes if n.kwargs["executable"] == "sim_node")
    params = sim.kwargs["parameters"][0]
    assert params["camera_rate_hz"] == 10.0 and isinstance(params["camera_rate_hz"], float)
    assert params["width"] == 320 and type(params["width"]) is int
    _, nodes = _launch("direct", {"use_sim": "true", "autostart": "TRUE", "instruction": "640"})
    executor = next(n for n in nodes if n.kwargs["executable"] == "executor_node")
    assert executor.kwargs["parameters"][0]["autostart"] is True
    policy = next(n for n in nodes if n.kwargs["executable"] == "policy_node")
    assert policy.kwargs["parameters"][0]["instruction"] == "640"  # a str argument stays text


def test_every_graph_node_module_exists_and_has_main():
    import importlib

    for key, node in graph_mod.load_graph().nodes.items():
        if node.package != graph_mod.PACKAGE:
            continue  # another package's executable (rviz2)
        mod = importlib.import_module(node.module)
        assert callable(getattr(mod, "main", None)), f"{key}: {node.module} has no main()"


def test_a_remapping_in_the_graph_reaches_the_node_ros_args(tmp_path):
    """Topic names are fixed in code (topics.py) and renamed here: the remap must reach the node's command line."""
    from cosmos_policy_ros import topics

    g = tmp_path / "graph.yaml"
    g.write_text(
        "arguments: {lab: {default: lab1}}\n"
        "nodes:\n"
        "  executor:\n"
        "    executable: executor_node\n"
        "    module: cosmos_policy_ros.nodes.executor_node\n"
        "    name: executor\n"
        f"    remappings: {{{topics.ACTION_CHUNK}: /$(arg lab)/chunk, {topics.ESTOP}: /lab/estop}}\n"
        "modes: {direct: [executor]}\n")
    graph = graph_mod.load_graph(g)
    (spec,) = graph_mod.resolve("direct", {"lab": "cell7"}, graph)
    args = spec.ros_args()
    assert args[0] == "--ros-args"
    remaps = [args[i + 1] for i, a in enumerate(args) if a == "-r"]
    assert remaps == ["__node:=executor", f"{topics.ACTION_CHUNK}:=/cell7/chunk", f"{topics.ESTOP}:=/lab/estop"]
    g.write_text(g.read_text().replace("$(arg lab)", "$(arg cell)"))
    with pytest.raises(graph_mod.cfg.ConfigError, match=r"nodes.executor.remappings./cosmos/action_chunk: "
                                                        r"unknown argument \$\(arg cell\)"):
        graph_mod.load_graph(g)


# ---- rviz:=true ----------------------------------------------------------------------------------------
RVIZ_LAYOUT = str(graph_mod.cfg.share_dir() / "rviz" / "aloha.rviz")


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
def test_rviz_true_adds_rviz2_with_the_aloha_layout_and_the_marker_node_in_every_mode(launch_standin, mode):
    _, plain = _launch(mode, {"use_sim": "true"})
    _, nodes = _launch(mode, {"use_sim": "true", "rviz": "true"})
    assert "rviz2" not in [n.kwargs["executable"] for n in plain]
    assert [n.kwargs["executable"] for n in nodes] == [n.kwargs["executable"] for n in plain] + [
        "safety_viz_node", "rviz2"]
    rviz = nodes[-1]
    assert rviz.kwargs["package"] == "rviz2" and rviz.kwargs["arguments"] == ["-d", RVIZ_LAYOUT]
    assert Path(RVIZ_LAYOUT).is_file()


def test_the_rviz_layout_shows_every_safety_marker_namespace():
    import yaml

    from cosmos_policy_ros import topics
    from cosmos_policy_ros.robot.collision_markers import NAMESPACES

    displays = yaml.safe_load(Path(RVIZ_LAYOUT).read_text())["Visualization Manager"]["Displays"]
    (markers,) = [d for d in displays if d["Class"] == "rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == topics.SAFETY_MARKERS
    assert set(markers["Namespaces"]) == set(NAMESPACES)


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
def test_rviz_true_in_the_cli_graph_runs_rviz2_with_the_aloha_layout(mode, capsys):
    from cosmos_policy_ros import cli

    assert cli.main(["graph", mode, "--sim", "rviz:=true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"ros2 run rviz2 rviz2 -d {RVIZ_LAYOUT} --ros-args -r __node:=rviz" in lines[-1]
    assert "ros2 run cosmos_policy_ros safety_viz_node" in lines[-2]
    assert cli.main(["graph", mode, "--sim"]) == 0
    assert "rviz" not in capsys.readouterr().out


def test_a_node_condition_must_name_a_true_false_argument(tmp_path):
    g = tmp_path / "graph.yaml"
    g.write_text("arguments: {use_sim: {default: \"true\"}, rviz: {default: false, type: bool}, task: {default: x}}\n"
                 "nodes: {viewer: {package: rviz2, executable: rviz2, name: rviz, when: task}}\n"
                 "modes: {sim: [viewer]}\n")
    with pytest.raises(graph_mod.cfg.ConfigError, match=r"nodes.viewer.when: expected a true/false argument or "
                                                        r"not_<it> \(use_sim, rviz\), got 'task'"):
        graph_mod.load_graph(g)
    g.write_text(g.read_text().replace("when: task", "when: not_rviz"))
    assert [s.key for s in graph_mod.resolve("sim", {}, graph_mod.load_graph(g))] == ["viewer"]
    assert graph_mod.resolve("sim", {"rviz": "true"}, graph_mod.load_graph(g)) == []
    g.write_text(g.read_text().replace("package: rviz2, ", ""))
    with pytest.raises(graph_mod.cfg.ConfigError, match="nodes.viewer.module: a node of cosmos_policy_ros needs"):
        graph_mod.load_graph(g)


def _up_with_rviz(tmp_path: Path, path: str) -> subprocess.CompletedProcess:
    """`cosmos-aloha up` of a small graph (a monitor node and RViz) with rviz:=true, PATH as given, 6 s."""
    g = tmp_path / "graph.yaml"
    g.write_text(
        "arguments: {use_sim: {default: \"true\"}, rviz: {default: false, type: bool}}\n"
        "nodes:\n"
        "  monitor: {executable: monitor_node, module: cosmos_policy_ros.nodes.monitor_node,\n"
        f"            name: rviz_test_monitor_{os.getpid()}, parameters: {{period_s: 0.5}}}}\n"
        "  rviz: {package: rviz2, executable: rviz2, name: rviz, when: rviz,\n"
        "         arguments: [-d, $(share)/rviz/aloha.rviz]}\n"
        "modes: {watch: [monitor, rviz]}\n")
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "cosmos_policy_ros.cli", "up", "watch", "--graph", str(g),
                           "--duration", "6", "rviz:=true"], env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.ros
def test_up_with_rviz_but_no_rviz2_says_so_in_one_line_and_starts_the_rest(tmp_path):
    assert shutil.which("rviz2", path="/usr/bin:/bin") is None
    proc = _up_with_rviz(tmp_path, "/usr/bin:/bin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "rviz2" in ln]
    assert said == ["cosmos-aloha: rviz2 is not installed (package rviz2, not on PATH); starting the graph without "
                    "node 'rviz'"]
    assert "started monitor" in proc.stdout and "exit codes {'monitor': 0}" in proc.stdout


@pytest.mark.ros
def test_up_with_rviz_runs_rviz2_from_path_with_the_aloha_layout(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rviz2"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'rviz_argv'}\nexec sleep 60\n")
    fake.chmod(0o755)
    proc = _up_with_rviz(tmp_path, f"{bin_dir}:/usr/bin:/bin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started rviz" in proc.stdout and "not installed" not in proc.stderr
    assert (tmp_path / "rviz_argv").read_text().split() == ["-d", RVIZ_LAYOUT, "--ros-args", "-r", "__node:=rviz"]
