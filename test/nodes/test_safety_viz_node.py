"""Safety marker node over real DDS (loopback): joint states, a chunk and a plan in, RViz markers out."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from helpers import spin_until  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from cosmos_policy_ros import topics  # noqa: E402
from cosmos_policy_ros.msg import ActionChunk, PlanResult  # noqa: E402
from cosmos_policy_ros.nodes.chunk_msgs import fill_action_chunk  # noqa: E402
from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.robot.collision import CollisionModel  # noqa: E402
from cosmos_policy_ros.ros_env import local_ros_env  # noqa: E402

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)
# This run's own topic names (other test runs may share the ROS domain): every topic of the node is remapped.
PREFIX = f"/viz_test_{os.getpid()}"
JOINT_STATES = {side: f"{PREFIX}/{side}/joint_states" for side in ("left", "right")}


@pytest.fixture
def viz_proc():
    remaps = {ROBOT.follower_topic(s, "joint_states"): JOINT_STATES[s] for s in JOINT_STATES}
    remaps.update({t: PREFIX + t for t in (topics.ACTION_CHUNK, topics.PLAN_RESULT, topics.SAFETY_MARKERS)})
    cmd = [sys.executable, "-m", "cosmos_policy_ros.nodes.safety_viz_node", "--ros-args", "-p", "rate_hz:=20.0"]
    for a, b in remaps.items():
        cmd += ["-r", f"{a}:={b}"]
    proc = subprocess.Popen(cmd, env=local_ros_env(int(os.environ["ROS_DOMAIN_ID"])),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_chunk(node, n: int = 25) -> ActionChunk:
    """Both arms' waists turning 0.3 rad over n actions."""
    actions = START + np.linspace(0.0, 0.3, n)[:, None] * np.isin(np.arange(14), (0, 7))
    return fill_action_chunk(ActionChunk(), actions, ROBOT.joint_names, node.get_clock().now().to_msg(), 0.04,
                             source="test")


def test_joint_states_chunks_and_plans_become_markers(ros_context, viz_proc):
    node = rclpy.create_node("safety_viz_test", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    arrays: list[MarkerArray] = []
    node.create_subscription(MarkerArray, PREFIX + topics.SAFETY_MARKERS, arrays.append, 10)
    js = {s: node.create_publisher(JointState, t, qos_profile_sensor_data) for s, t in JOINT_STATES.items()}
    chunk_pub = node.create_publisher(ActionChunk, PREFIX + topics.ACTION_CHUNK, 10)
    plan_pub = node.create_publisher(PlanResult, PREFIX + topics.PLAN_RESULT, 10)
    finger = float(ROBOT.normalized_to_follower_finger(0.5))

    def publish_joint_states():
        for pub in js.values():
            pub.publish(JointState(name=ROBOT.driver_joint_names,
                                   position=[float(x) for x in START[:6]] + [1.0, finger, -finger]))

    node.create_timer(0.05, publish_joint_states)
    model = CollisionModel.from_config(ROBOT.config.collision, ROBOT.config.arm_joints)
    n_caps = len(model.capsules.radius)
    try:
        assert spin_until(ex, lambda: arrays, timeout=30), "no MarkerArray from the safety marker node"
        markers = arrays[-1].markers
        assert markers[0].action == Marker.DELETEALL and all(m.action == Marker.ADD for m in markers[1:])
        kinds = Counter((m.ns, m.type) for m in markers[1:])
        assert kinds[("capsules", Marker.CYLINDER)] == n_caps and kinds[("capsules", Marker.SPHERE_LIST)] == n_caps
        assert kinds[("margins", Marker.CYLINDER)] == n_caps  # every capsule keeps 2 cm to some link of the other arm
        assert kinds[("closest", Marker.LINE_LIST)] == 1 and kinds[("table", Marker.CUBE)] == 2
        text = next(m.text for m in markers if m.ns == "closest" and m.type == Marker.TEXT_VIEW_FACING)
        assert text == str(model.closest(START))
        assert {m.header.frame_id for m in markers} == {"world"}

        chunk_pub.publish(make_chunk(node))
        assert spin_until(ex, lambda: any(m.ns == "chunk" for m in arrays[-1].markers), timeout=10)
        paths = [m for m in arrays[-1].markers if m.ns == "chunk"]
        assert [(m.type, len(m.points)) for m in paths] == [(Marker.LINE_STRIP, 25)] * 2

        plan = PlanResult(num_candidates=3, candidate_scores=[0.2, 0.9, 0.5], chosen_index=1, chosen=make_chunk(node))
        plan_pub.publish(plan)
        assert spin_until(ex, lambda: any(m.ns == "plan" for m in arrays[-1].markers), timeout=10)
        texts = [m.text for m in arrays[-1].markers if m.ns == "plan" and m.type == Marker.TEXT_VIEW_FACING]
        assert texts == ["best of 3: 0.20 [0.90] 0.50 (chose 1)"]
    finally:
        node.destroy_node()
    viz_proc.send_signal(signal.SIGINT)
    out, _ = viz_proc.communicate(timeout=15)
    assert "Traceback" not in out, out
    assert f"safety markers on {topics.SAFETY_MARKERS}" in out  # the node logs its own (unremapped) name


def test_a_bad_rate_is_one_error_line_and_exit_1():
    cmd = [sys.executable, "-m", "cosmos_policy_ros.nodes.safety_viz_node", "--ros-args", "-p", "rate_hz:=0.0"]
    proc = subprocess.run(cmd, env=local_ros_env(int(os.environ["ROS_DOMAIN_ID"])), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[safety_viz] error: parameter rate_hz: must be positive, got 0.0"
    assert "Traceback" not in proc.stderr
