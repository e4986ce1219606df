"""Builders of small bag messages for the data tests (no ROS: made with the rosbags typestore)."""
from __future__ import annotations

import math

import numpy as np

from cosmos_policy_ros.data.msg_types import typestore
from cosmos_policy_ros.data.session import EpisodeSession

S = 10**9

TS = typestore()
T = TS.types


def stamp(t_ns: int):
    return T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](t_ns // 10**9, t_ns % 10**9), "")


def image_cdr(t_ns: int, h: int = 12, w: int = 16, fill: int = 0) -> bytes:
    data = (np.arange(h * w * 3, dtype=np.uint32) + fill).astype(np.uint8)
    msg = T["sensor_msgs/msg/Image"](stamp(t_ns), h, w, "rgb8", 0, w * 3, data)
    return TS.serialize_cdr(msg, "sensor_msgs/msg/Image")


def joint_state_cdr(t_ns: int, position, velocity=None, effort=None) -> bytes:
    names = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper",
             "left_finger", "right_finger"]
    p = np.asarray(position, float)
    v = np.zeros(9) if velocity is None else np.asarray(velocity, float)
    e = np.zeros(9) if effort is None else np.asarray(effort, float)
    msg = T["sensor_msgs/msg/JointState"](stamp(t_ns), names, p, v, e)
    return TS.serialize_cdr(msg, "sensor_msgs/msg/JointState")


def record_episode(bag_dir, seconds=1.0, t0=5 * S, seed=0, outcome="success", cams=("cam_high", "cam_left_wrist"),
                   value=math.nan):
    """A teleop episode through the recorder's session: returns what was 'published' per topic."""
    rng = np.random.default_rng(seed)
    s = EpisodeSession(bag_dir, default_task="transfer_cube")
    s.command("start", t0, kind="teleop")
    sent = {}
    for k in range(int(seconds * 100)):           # joint states at 100 Hz, 3 ms after the grid
        t = t0 + 3_000_000 + k * 10_000_000
        for role in ("follower", "leader"):
            for side in ("left", "right"):
                topic = f"/{role}_{side}/joint_states"
                pos, vel, eff = rng.normal(size=9), rng.normal(size=9), rng.normal(size=9)
                s.write(topic, "sensor_msgs/msg/JointState", t, joint_state_cdr(t, pos, vel, eff))
                sent.setdefault(topic, []).append((t, pos, vel, eff))
        if k % 4 == 0:                             # cameras at 25 Hz
            for i, cam in enumerate(cams):
                topic = f"/{cam}/camera/color/image_rect_raw"
                s.write(topic, "sensor_msgs/msg/Image", t + 1_000_000, image_cdr(t, fill=k + i))
                sent.setdefault(topic, []).append((t + 1_000_000, k + i))
    s.command("stop", t0 + int(seconds * S), outcome=outcome, value=value)
    return sent
