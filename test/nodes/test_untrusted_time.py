"""Time and edges as untrusted input, over real DDS: future chunks, a stale start, a NaN flood
(executor node), future and degenerate camera frames (policy node)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from helpers import spin_until  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

from cosmos_policy_ros import topics  # noqa: E402
from cosmos_policy_ros.config import config_path, read_yaml  # noqa: E402
from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus  # noqa: E402
from cosmos_policy_ros.nodes.chunk_msgs import time_msg  # noqa: E402
from cosmos_policy_ros.perception.cameras import load_cameras  # noqa: E402
from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.ros_env import local_ros_env  # noqa: E402

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)
FINGER = float(ROBOT.normalized_to_follower_finger(0.5))


def chunk_msg(stamp_s: float, seq: int, value: float = 0.0, n: int = 50) -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp = msg.trajectory.header.stamp = time_msg(stamp_s)
    msg.trajectory.joint_names = ROBOT.joint_names
    for i in range(n):
        q = START + value
        p = JointTrajectoryPoint(positions=[float(x) for x in q])
        p.time_from_start = Duration(sec=0, nanosec=int(i * 0.04e9) % 1_000_000_000)
        p.time_from_start.sec = int(i * 0.04)
        msg.trajectory.points.append(p)
    msg.sequence, msg.source = seq, "adversary"
    return msg


def joint_state(node) -> JointState:
    msg = JointState(name=ROBOT.driver_joint_names, position=[float(x) for x in START[:6]] + [1.0, FINGER, -FINGER])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def start_node(module: str, *params: str) -> subprocess.Popen:
    args = [a for p in params for a in ("-p", p)]
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *args],
                            env=local_ros_env(int(os.environ["ROS_DOMAIN_ID"])),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


class Harness:
    """A test node on the graph with an executor spinning it."""

    def __init__(self, ctx, name: str):
        self.node = rclpy.create_node(name, context=ctx)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)

    def spin(self, pred, timeout: float) -> bool:
        return spin_until(self.ex, pred, timeout=timeout)

    def call(self, client, timeout: float = 10.0):
        fut = client.call_async(Trigger.Request())
        assert self.spin(fut.done, timeout)
        return fut.result()


def without_driver_setup(tmp_path) -> str:
    """executor.yaml with interbotix.configure_driver false: this test plays the driver's joint states itself
    (stale, then fresh); the driver set-up is test_interbotix_bringup.py's."""
    data = read_yaml(config_path("executor.yaml"))
    data["interbotix"]["configure_driver"] = False
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump(data))
    return f"config:={path}"


def test_executor_refuses_a_stale_start_a_future_chunk_and_throttles_a_nan_flood(ros_context, tmp_path):
    proc = start_node("cosmos_policy_ros.nodes.executor_node", "backend:=interbotix", "chunk_mode:=blend",
                      without_driver_setup(tmp_path))
    try:
        h = Harness(ros_context, "untrusted_time_executor_test")
        js = [h.node.create_publisher(JointState, ROBOT.follower_topic(s, "joint_states"), qos_profile_sensor_data)
              for s in ("left", "right")]
        chunk_pub = h.node.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
        statuses: list[ExecutorStatus] = []
        h.node.create_subscription(ExecutorStatus, topics.EXECUTOR_STATUS, statuses.append, 10)
        start = h.node.create_client(Trigger, f"{topics.EXECUTOR_SERVICES}/start")
        home = h.node.create_client(Trigger, f"{topics.EXECUTOR_SERVICES}/home")
        assert h.spin(start.service_is_ready, 30), "executor services never appeared"

        # joint states that then stop: 1 s later they are stale (watchdog limit 0.5 s)
        for _ in range(5):
            for p in js:
                p.publish(joint_state(h.node))
            h.spin(lambda: False, 0.02)
        h.spin(lambda: False, 1.0)
        for client in (start, home):
            res = h.call(client)
            assert not res.success and "s old (limit watchdog.joint_state_timeout_s 0.50 s)" in res.message

        # fresh joint states again: start works
        h.node.create_timer(0.01, lambda: [p.publish(joint_state(h.node)) for p in js])
        h.spin(lambda: False, 0.3)
        res = h.call(start)
        assert res.success, res.message

        now = h.node.get_clock().now().nanoseconds * 1e-9
        chunk_pub.publish(chunk_msg(now + 1e6, 1))                       # from the future
        assert h.spin(lambda: statuses and "from the future" in statuses[-1].last_rejection, 5)
        chunk_pub.publish(chunk_msg(h.node.get_clock().now().nanoseconds * 1e-9, 2))   # valid: accepted
        assert h.spin(lambda: statuses and statuses[-1].chunks_accepted >= 1, 5)

        flood = chunk_msg(now, 3, value=math.nan)
        t_end = time.monotonic() + 3.0
        n = 0
        while time.monotonic() < t_end:
            chunk_pub.publish(flood)
            n += 1
            h.ex.spin_once(timeout_sec=0.002)
        assert h.spin(lambda: statuses and statuses[-1].rejection_lines_suppressed > 0, 5)
        rejected = statuses[-1].chunks_rejected
    finally:
        out = stop_node(proc)
    flood_lines = [ln for ln in out.splitlines() if "non-finite" in ln]
    assert rejected > 50, out[-2000:]
    assert 1 <= len(flood_lines) <= 6, flood_lines      # ~one line per second, not one per chunk
    assert any("more like it in the last" in ln for ln in flood_lines)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("untrusted") / "bundle", "tiny_test")


def image(node, cam: str, h: int, w: int, stamp_s: float | None = None) -> Image:
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=np.zeros(h * w * 3, np.uint8).tobytes())
    msg.header.stamp = node.get_clock().now().to_msg() if stamp_s is None else time_msg(stamp_s)
    msg.header.frame_id = cam
    return msg


@pytest.mark.slow
def test_policy_node_refuses_future_and_degenerate_frames(ros_context, tiny_bundle):
    cams = load_cameras()
    proc = start_node("cosmos_policy_ros.nodes.policy_node", f"checkpoint:={tiny_bundle}", "trigger:=continuous",
                      "refuse_log_period_s:=0.5")
    try:
        h = Harness(ros_context, "untrusted_time_policy_test")
        js = [h.node.create_publisher(JointState, ROBOT.follower_topic(s, "joint_states"), qos_profile_sensor_data)
              for s in ("left", "right")]
        model_cams = ["cam_high", "cam_left_wrist", "cam_right_wrist"]
        img_pubs = {c: h.node.create_publisher(Image, cams.topic(c), qos_profile_sensor_data) for c in cams.names}
        status: list[str] = []
        chunks: list[ActionChunk] = []
        h.node.create_subscription(String, topics.POLICY_STATUS, lambda m: status.append(m.data), 50)
        h.node.create_subscription(ActionChunk, topics.ACTION_CHUNK, chunks.append, 10)
        mode = {"future": 0.0, "size": (64, 64)}

        def publish():
            for p in js:
                p.publish(joint_state(h.node))
            now = h.node.get_clock().now().nanoseconds * 1e-9
            for c in model_cams + ["cam_low"]:
                future = mode["future"] if c == "cam_high" else 0.0
                img_pubs[c].publish(image(h.node, c, *mode["size"], stamp_s=now + future))

        h.node.create_timer(0.05, publish)
        assert h.spin(lambda: len(chunks) > 0, 120), "policy never published a chunk from good input"
        mode["future"] = 6.0                        # a frozen frame stamped 6 s ahead
        status.clear()
        assert h.spin(lambda: any("cam_high is stamped" in s and "in the future" in s for s in status), 20), status[-3:]
        mode["future"], mode["size"] = 0.0, (24, 32)   # degenerate frames: refused, so they go stale
        status.clear()
        assert h.spin(lambda: any("stale" in s for s in status), 20), status[-3:]
    finally:
        out = stop_node(proc)
    refused = [ln for ln in out.splitlines() if "frame refused (degenerate" in ln]
    assert refused and any("32x24" in ln for ln in refused), out[-2000:]
    assert len(refused) <= 3 * 20, len(refused)    # throttled per camera, not one per frame
    assert "64x64 frames, configured 640x480" in out
