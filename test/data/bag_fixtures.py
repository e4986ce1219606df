"""Builders of small bag messages for the data tests (no ROS: made with the rosbags typestore)."""
from __future__ import annotations

import numpy as np

from cosmos_policy_ros.data.msg_types import typestore

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
