"""Lockstep graph (lockstep:=true): the result does not depend on how fast this machine is.

Real nodes over DDS on loopback and real MuJoCo. (b) the sim's /clock stands still while the executor waits
for a chunk, and a chunk of N actions advances it by exactly N steps; (a) a short episode of the bundled
checkpoint gives the same executed trajectory twice, once beside a CPU burner; (c) that episode equals the
in-process evaluation of the same seed (first chunk after the SafetyFilter, the whole trajectory, max stage).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from helpers import spin_until  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from cosmos_policy_ros import topics  # noqa: E402
from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus  # noqa: E402
from cosmos_policy_ros.nodes.chunk_msgs import fill_action_chunk, seconds  # noqa: E402
from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "sim_small_transfer_cube"
ROBOT = AlohaRobot.from_yaml()
DT = 0.02
SEED = 3
EPISODE_S = 1.2  # 60 steps: two chunks (queries at steps 0 and 50)
# rad / normalised gripper: the same graph episode twice (float noise of DDS-free arithmetic only)
REPEAT_TOL = 1e-6


def _node_proc(module: str, *params: str, name: str):
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def _stop(procs: dict) -> dict:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(2)
    outs = {}
    for name, p in procs.items():
        try:
            outs[name] = p.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            outs[name] = p.communicate()[0]
    return outs


def test_sim_time_stands_still_while_no_chunk_has_arrived(ros_context):
    """(b) strict lockstep: no chunk -> no command -> no step; a chunk of 20 actions -> exactly 20 steps."""
    procs = {
        "sim": _node_proc("cosmos_policy_ros.nodes.sim_node", "lockstep:=true", "use_sim_time:=true", "width:=64",
                          "height:=48", "cameras:=cam_high", name="ls_sim"),
        "executor": _node_proc("cosmos_policy_ros.nodes.executor_node", "lockstep:=true", "use_sim_time:=true",
                               "backend:=sim", "chunk_mode:=synchronous", "autostart:=true", name="ls_executor"),
    }
    node = rclpy.create_node("ls_clock_listener", context=ros_context)
    clocks, requests, status = [], [], []
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(seconds(m.clock)), 10)
    node.create_subscription(Header, topics.CHUNK_REQUEST, requests.append, 10)
    node.create_subscription(ExecutorStatus, topics.EXECUTOR_STATUS, status.append, 10)
    chunk_pub = node.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        assert spin_until(ex, lambda: requests, timeout=90), \
            f"no chunk request; executor {[s.state for s in status[-2:]]}\n{_stop(procs)}"
        asked = seconds(requests[-1].stamp)
        spin_until(ex, lambda: False, timeout=2.0)  # the policy is "slow": 2 s of wall time, no chunk
        assert clocks and max(clocks) == pytest.approx(asked, abs=1e-9), \
            f"/clock moved to {max(clocks):.3f} s while no chunk had arrived (asked at {asked:.3f} s)"
        assert status[-1].state == "RUNNING", status[-1].state  # no watchdog tripped: sim time stood still
        n = 20
        actions = np.tile(ROBOT.pose14("start", gripper=0.8), (n, 1))
        actions[:, 0] += np.linspace(0.0, 0.1, n)  # the left waist turns a little
        chunk = fill_action_chunk(ActionChunk(), actions, ROBOT.joint_names, requests[-1].stamp, DT, source="test")
        n_requests = len(requests)
        chunk_pub.publish(chunk)
        assert spin_until(ex, lambda: len(requests) > n_requests, timeout=30), "no request after the chunk"
        spin_until(ex, lambda: False, timeout=1.0)
        assert seconds(requests[-1].stamp) == pytest.approx(asked + n * DT, abs=1e-6)
        assert max(clocks) == pytest.approx(asked + n * DT, abs=1e-6), \
            f"a chunk of {n} actions moved the sim {(max(clocks) - asked) / DT:.2f} steps"
    finally:
        node.destroy_node()
        outs = _stop(procs)
    assert "lockstep" in outs["executor"], outs["executor"]
