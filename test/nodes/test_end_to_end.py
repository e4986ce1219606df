"""The suite end to end over real DDS: sim -> observations -> policy (tiny random model) -> chunks
-> executor -> sim commands -> the simulated arm moves; a dead camera pauses the policy and the
executor holds."""
from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import start_node, stop_processes

from cosmos_policy_ros import topics

pytestmark = [pytest.mark.ros, pytest.mark.slow]




@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("bundle"), action_period_s=0.08)


def test_policy_drives_sim_through_executor_and_dead_camera_pauses(bundle, ros_context):
    import rclpy
    from helpers import spin_until
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus

    procs = {
        # the sim renders two of the model's cameras; this test publishes the third (cam_high) itself
        "sim": start_node("cosmos_policy_ros.nodes.sim_node", "width:=96", "height:=72", "camera_rate_hz:=10.0",
                      "cameras:=cam_left_wrist,cam_right_wrist", name="e2e_sim"),
        "executor": start_node("cosmos_policy_ros.nodes.executor_node", "backend:=sim", "autostart:=true",
                           "chunk_mode:=open_loop", name="e2e_executor"),
        "policy": start_node("cosmos_policy_ros.nodes.policy_node", f"checkpoint:={bundle}", "trigger:=continuous",
                         name="e2e_policy"),
    }
    node = rclpy.create_node("e2e_test", context=ros_context)
    chunks, states, status, policy_status, wrist = [], [], [], [], []
    arrived = []  # monotonic arrival time of each chunk
    node.create_subscription(ActionChunk, topics.ACTION_CHUNK,
                             lambda m: (chunks.append(m), arrived.append(time.monotonic())), 10)
    node.create_subscription(JointState, "/follower_left/joint_states", states.append, qos_profile_sensor_data)
    node.create_subscription(ExecutorStatus, topics.EXECUTOR_STATUS, status.append, 10)
    node.create_subscription(String, topics.POLICY_STATUS, lambda m: policy_status.append(m.data), 10)
    node.create_subscription(Image, "/cam_left_wrist/camera/color/image_rect_raw", wrist.append,
                             qos_profile_sensor_data)
    cam_high = node.create_publisher(Image, "/cam_high/camera/color/image_rect_raw", 2)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    publish_cam = [True]

    def pump(timeout):
        """Spin while standing in for cam_high: re-publish the latest wrist frame, restamped now."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if publish_cam[0] and wrist:
                m = wrist[-1]
                m.header.stamp = node.get_clock().now().to_msg()
                cam_high.publish(m)
            ex.spin_once(timeout_sec=0.05)

    try:
        deadline = time.monotonic() + 240
        while len(chunks) < 3 and time.monotonic() < deadline:
            for name, p in procs.items():
                assert p.poll() is None, f"{name} died:\n{stop_processes(procs)[name]}"
            pump(0.5)
        assert len(chunks) >= 3, f"policy published {len(chunks)} chunks; status {policy_status[-3:]}"
        c = chunks[-1]
        assert c.source == "policy" and len(c.trajectory.joint_names) == 14 and len(c.trajectory.points) == 50
        assert c.inference_latency_s > 0 and c.checkpoint_id
        start = np.array(states[0].position[:6])
        assert spin_until(ex, lambda: status and status[-1].chunks_accepted >= 1, timeout=30), \
            [(s.state, s.chunks_rejected, s.last_intervention) for s in status[-3:]]
        pump(5.0)
        moved = np.abs(np.array(states[-1].position[:6]) - start).max()
        assert moved > 0.02, f"left arm moved only {moved:.4f} rad; executor {status[-1].state}"

        # kill the cam_high stream: the policy refuses with a reason, the executor holds
        publish_cam[0] = False
        killed = time.monotonic()
        pump(0.1)
        assert spin_until(ex, lambda: any("cam_high is stale" in s for s in policy_status[-5:]), timeout=30), \
            policy_status[-5:]
        # an inference already under way may still land: wait until no chunk arrived for 3 s and the
        # executor holds (its chunk timeout is 1.5 s)
        last_count, quiet_since = len(chunks), time.monotonic()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            pump(0.2)
            if len(chunks) != last_count:
                last_count, quiet_since = len(chunks), time.monotonic()
            if time.monotonic() - quiet_since > 3.0 and status and status[-1].state == "HOLDING":
                break
        assert status[-1].state == "HOLDING", status[-1].state
        # frames stay usable for the cache's max_age_s (0.5 s) after the last one; an inference started by then
        # may still land: nothing later than that (how many chunks fit in the window depends on the CPU)
        window = 0.5 + max(c.inference_latency_s for c in chunks) + 0.5
        late = [round(t - killed, 2) for t in arrived if t - killed > window]
        assert not late, f"the policy kept publishing without cam_high: chunks {late} s after it died"
        settled = len(chunks)
        held_cmd = np.array(status[-1].last_command)
        held = np.array(states[-1].position[:6])
        pump(3.0)
        assert len(chunks) == settled, "a chunk was published while cam_high was dead"
        assert status[-1].state == "HOLDING"
        assert np.array_equal(np.array(status[-1].last_command), held_cmd), "the held command changed"
        # the arm only settles onto the held command (it may lag it when the loaded sim runs slower than
        # real time); it never moves away from it
        before = np.abs(held - held_cmd[:6]).max()
        after = np.abs(np.array(states[-1].position[:6]) - held_cmd[:6]).max()
        assert after <= max(0.05, before + 0.01), \
            f"arm moved away from the held command ({before:.3f} -> {after:.3f} rad)"
    finally:
        node.destroy_node()
        outs = stop_processes(procs)
    assert "not publishing: cam_high is stale" in outs["policy"]
