"""The package CLI starts a real node graph, forwards Ctrl-C, and fails fast when a node dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ros

GRAPH = {
    "arguments": {"use_sim": {"default": "true"}, "robot_config": {"default": "robot/aloha_interbotix.yaml"}},
    "nodes": {"monitor": {"executable": "monitor_node", "module": "cosmos_policy_ros.nodes.monitor_node",
                          "name": f"cli_test_monitor_{os.getpid()}",
                          "parameters": {"robot_config": "$(arg robot_config)", "period_s": 0.2}}},
    "modes": {"watch": ["monitor"]},
}


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    graph = tmp_path / "graph.yaml"
    graph.write_text(yaml.safe_dump(GRAPH, sort_keys=False))
    return subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.cli", "up", "watch", "--graph", str(graph),
                             *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def test_cli_starts_graph_and_stops_cleanly_on_ctrl_c(tmp_path, ros_context):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from helpers import spin_until
    from rclpy.executors import SingleThreadedExecutor

    proc = _cli(tmp_path)
    node = rclpy.create_node("cli_test_listener", context=ros_context)
    got = []
    node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        # this run's node (unique name), then its diagnostics
        assert spin_until(ex, lambda: f"cli_test_monitor_{os.getpid()}" in node.get_node_names(), timeout=30)
        got.clear()
        assert spin_until(ex, lambda: len(got) >= 2, timeout=20), "the monitor node never published"
        names = {s.name for s in got[-1].status}
        assert "observation: /cam_high/camera/color/image_rect_raw" in names
        assert "observation: /follower_left/joint_states" in names
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # never leave the graph running: Ctrl-C first, then kill
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        node.destroy_node()
    assert proc.returncode == 0, out
    assert "received SIGINT" in out
    assert "exit codes {'monitor': 0}" in out


def test_cli_exits_nonzero_naming_the_node_that_died(tmp_path):
    proc = _cli(tmp_path, "robot_config:=does_not_exist.yaml")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "node 'monitor' exited with code 1" in out
    assert "does_not_exist.yaml: config file not found" in out


def test_nodes_do_not_outlive_a_killed_supervisor(tmp_path):
    proc = _cli(tmp_path)
    pid = None
    deadline = time.monotonic() + 30
    while pid is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "started monitor (pid " in line:
            pid = int(line.split("pid ")[1].rstrip(")\n"))
    assert pid is not None
    proc.kill()  # SIGKILL: the supervisor cannot forward anything
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
        except OSError:
            break
        time.sleep(0.1)
    alive = Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    assert not alive, "the monitor node survived its supervisor"


def test_cli_rejects_unknown_arguments_with_one_line(tmp_path):
    proc = _cli(tmp_path, "robot_cfg:=x.yaml")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out.strip() == "cosmos-aloha: unknown launch argument 'robot_cfg' (did you mean robot_config?)"
