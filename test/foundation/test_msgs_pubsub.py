"""The project's ActionChunk crosses a real process boundary over DDS (loopback) intact."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
HERE = Path(__file__).parent


def _chunk(seq: int, joint_names):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectoryPoint

    from cosmos_policy_ros.msg import ActionChunk

    m = ActionChunk()
    m.header.stamp.sec = 1000 + seq
    m.trajectory.joint_names = list(joint_names)
    for i in range(50):
        p = JointTrajectoryPoint()
        p.positions = [0.01 * i + seq] * 14
        p.time_from_start = Duration(sec=(i + 1) * 40_000_000 // 1_000_000_000,
                                     nanosec=(i + 1) * 40_000_000 % 1_000_000_000)
        m.trajectory.points.append(p)
    m.value, m.sequence, m.source, m.num_steps = 0.75, seq, "policy", 10
    return m


def test_action_chunk_two_process_pubsub(ros_context):
    import rclpy

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    names = AlohaRobot.from_yaml().joint_names
    sub = subprocess.Popen([sys.executable, str(HERE / "chunk_subscriber.py"), "3"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    node = rclpy.create_node("chunk_publisher", context=ros_context)
    pub = node.create_publisher(ActionChunk, "/test/action_chunk", 50)
    try:
        assert sub.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.get_subscription_count() == 1, "subscriber process never matched"
        for seq in range(3):
            pub.publish(_chunk(seq, names))
        out, _ = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
        node.destroy_node()
    lines = [line for line in out.splitlines() if line.startswith("CHUNK")]
    assert len(lines) == 3, out
    for seq, line in enumerate(lines):
        assert (f"CHUNK seq={seq} src=policy joints=14 first=left_waist points=50 last_pos={0.49 + seq:.4f} "
                f"last_t=2.000000000 value=0.750 stamp={1000 + seq} steps=10") == line
