"""The policy node over loopback DDS from compressed camera topics (sensor_msgs/CompressedImage JPEG on
<topic>/compressed, as realsense2_camera's image_transport publishes) gives the chunk the same model computes
from the JPEG-decoded frames, so it differs from the raw-topic chunk by the JPEG error alone; and with
observation_time: arrival a node whose sources' clock is 30 s behind still acts, stamping chunks on that clock."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cosmos_policy_ros import topics
from cosmos_policy_ros.config import share_dir

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMERAS = ("cam_left_wrist", "cam_right_wrist", "cam_high")


def smooth_frame(index: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A camera-like frame: colour gradients and a soft disc (JPEG at quality 95 changes it by ~1 level)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    disc = 120 * np.exp(-(((x - 40 - 20 * index) ** 2 + (y - 48) ** 2) / 300.0))
    rgb = np.stack([60 + x + disc, 40 + y * 1.5 + 20 * index, 200 - x * 0.8 + disc / 2], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    d = tmp_path_factory.mktemp("compressed")
    bundle = make_random_bundle(d / "bundle")
    policy = yaml.safe_load((share_dir() / "config" / "policy.yaml").read_text())
    policy.update(seed=0, seed_mode="fixed", warmup=False, torch_threads=1, trigger="continuous", max_obs_age_s=2.0)
    (d / "policy.yaml").write_text(yaml.safe_dump(policy))
    (d / "policy_arrival.yaml").write_text(yaml.safe_dump({**policy, "observation_time": "arrival"}))
    cams = yaml.safe_load((share_dir() / "config" / "cameras.yaml").read_text())
    for spec in cams["cameras"].values():
        spec["transport"] = "compressed"
    (d / "cameras_compressed.yaml").write_text(yaml.safe_dump(cams))
    return d, bundle


def _policy(name: str, bundle: Path, config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.policy_node", "--ros-args",
                             "-r", f"__node:={name}", "-p", f"checkpoint:={bundle}", "-p", f"config:={config}",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ.copy())


def _stop(procs: list[subprocess.Popen]) -> list[str]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(2)
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=20)[0])
        except subprocess.TimeoutExpired:
            p.kill()
            outs.append(p.communicate()[0])
    return outs


class Sources:
    """Stands in for the robot PC: raw and JPEG camera topics plus both arms' joint states, restamped."""

    def __init__(self, node, robot, clock_offset_s: float = 0.0):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image, JointState

        from cosmos_policy_ros.perception.cameras import COMPRESSED_SUFFIX, load_cameras

        cams = load_cameras()
        self.node, self.offset = node, clock_offset_s
        self.frames = {c: smooth_frame(i) for i, c in enumerate(CAMERAS)}
        self.raw = {c: node.create_publisher(Image, cams.topic(c), qos_profile_sensor_data) for c in CAMERAS}
        self.jpeg = {c: node.create_publisher(CompressedImage, cams.subscribed_topic(c) + COMPRESSED_SUFFIX,
                                              qos_profile_sensor_data) for c in CAMERAS}
        self.joints = {s: node.create_publisher(JointState, robot.follower_topic(s, "joint_states"),
                                                qos_profile_sensor_data) for s in robot.config.arms}
        start = robot.pose14("start", gripper=0.5)
        finger = float(robot.normalized_to_follower_finger(0.5))
        self.names = robot.driver_joint_names
        self.positions = {s: [*start[7 * i: 7 * i + 6], 0.0, finger, -finger]
                          for i, s in enumerate(robot.config.arms)}
        self.qpos = np.concatenate([robot.arm_state_from_joint_state(self.names, self.positions[s])
                                    for s in robot.config.arms])
        self.Image, self.CompressedImage, self.JointState = Image, CompressedImage, JointState

    def publish(self) -> None:
        from cosmos_policy_ros.nodes.chunk_msgs import time_msg
        from cosmos_policy_ros.perception.image_codec import fill_compressed, fill_image

        stamp = time_msg(self.node.get_clock().now().nanoseconds * 1e-9 + self.offset)
        for c in CAMERAS:
            raw = fill_image(self.Image(), self.frames[c])
            jpeg = fill_compressed(self.CompressedImage(), self.frames[c])
            raw.header.stamp = jpeg.header.stamp = stamp
            self.raw[c].publish(raw)
            self.jpeg[c].publish(jpeg)
        for side, pub in self.joints.items():
            msg = self.JointState(name=self.names, position=[float(v) for v in self.positions[side]])
            msg.header.stamp = stamp
            pub.publish(msg)


def _run(ros_context, sources_offset: float, procs: dict[str, subprocess.Popen], want: dict[str, str],
         timeout: float = 240.0, linger_s: float = 0.0):
    """Publish sources at ~10 Hz until one chunk arrived on each topic in `want` ({label: topic}), and
    `linger_s` longer."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    node = rclpy.create_node("compressed_test", context=ros_context)
    got: dict[str, list] = {label: [] for label in want}
    for label, topic in want.items():
        node.create_subscription(ActionChunk, topic, got[label].append, 10)
    sources = Sources(node, AlohaRobot.from_yaml(), sources_offset)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end and all(p.poll() is None for p in procs.values()):
            if all(got.values()):
                end = min(end, time.monotonic() + linger_s)
            sources.publish()
            ex.spin_once(timeout_sec=0.1)
    finally:
        outs = dict(zip(procs, _stop(list(procs.values()))))
        node.destroy_node()
    return got, sources, outs


def _positions(msg) -> np.ndarray:
    return np.array([p.positions for p in msg.trajectory.points])


def test_compressed_camera_topics_give_the_raw_chunk_up_to_the_jpeg_error(setup, ros_context):
    from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
    from cosmos_policy_ros.perception.image_codec import compressed_to_rgb, fill_compressed

    d, bundle = setup
    procs = {"raw": _policy("policy_raw", bundle, d / "policy.yaml"),
             "jpeg": _policy("policy_jpeg", bundle, d / "policy.yaml",
                             "-p", f"camera_config:={d / 'cameras_compressed.yaml'}",
                             "-r", f"{topics.ACTION_CHUNK}:=/test/chunk_from_jpeg")}
    got, sources, outs = _run(ros_context, 0.0, procs,
                              {"raw": topics.ACTION_CHUNK, "jpeg": "/test/chunk_from_jpeg"})
    assert got["raw"] and got["jpeg"], {k: v[-2000:] for k, v in outs.items()}
    assert "/camera/color/image_rect_raw/compressed" in outs["jpeg"]   # the start-up line names the subscriptions
    raw, jpeg = _positions(got["raw"][0]), _positions(got["jpeg"][0])

    # the same model in-process, on the raw frames and on the frames as the JPEG decoder returns them
    bundle_ = resolve_bundle(bundle)
    engine = build_engine(bundle_, device="cpu")
    obs = {"images": dict(sources.frames), "proprio": sources.qpos, "instruction": bundle_.instruction}
    decoded = {c: compressed_to_rgb(fill_compressed(sources.CompressedImage(), f)) for c, f in sources.frames.items()}
    want_raw = engine.act(obs, seed=0).actions
    want_jpeg = engine.act({**obs, "images": decoded}, seed=0).actions
    # DDS, conversion and the observation cache add nothing: each node's chunk is the in-process one (float32)
    assert np.allclose(raw, want_raw, atol=1e-5) and np.allclose(jpeg, want_jpeg, atol=1e-5)
    # so raw and compressed differ by exactly what the JPEG error does to the model's output, no more. The
    # tolerance that follows: quality 95 moves these smooth frames by 0.6 grey levels on average (max 4), and
    # this model's chunk by 3e-4 rad (measured; 1e-3 of the normalised range). 0.01 rad leaves a factor 30
    pixel_error = np.mean([np.abs(decoded[c].astype(int) - sources.frames[c]).mean() for c in CAMERAS])
    assert 0 < pixel_error < 2.0
    assert np.abs(raw - jpeg).max() <= np.abs(want_raw - want_jpeg).max() + 1e-5
    assert 0 < np.abs(raw - jpeg).max() < 0.01


def test_arrival_time_lets_a_policy_act_on_sources_whose_clock_is_behind(setup, ros_context):
    d, bundle = setup
    procs = {"arrival": _policy("policy_arrival", bundle, d / "policy_arrival.yaml"),
             "stamp": _policy("policy_stamp", bundle, d / "policy.yaml",
                              "-r", f"{topics.ACTION_CHUNK}:=/test/chunk_by_stamp",
                              "-r", f"{topics.POLICY_STATUS}:=/test/status_by_stamp")}
    # 20 messages per stream measure the offset (2 s at 10 Hz); the refusal log repeats every 2 s
    got, sources, outs = _run(ros_context, -30.0, procs, {"arrival": topics.ACTION_CHUNK}, timeout=180.0,
                              linger_s=4.0)
    assert got["arrival"], outs["arrival"][-2000:]
    chunk = got["arrival"][0]
    behind = time.time() - (chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9)
    assert 29.0 < behind < 40.0   # stamped on the sources' clock, which the executor beside them shares
    assert "observation_time: arrival" in outs["arrival"] and "+30.0" in outs["arrival"]
    # the stamp-judged node refused everything as stale, and its start-up warning says what to do
    assert "is stale" in outs["stamp"] and "set observation_time: arrival" in outs["stamp"]
