"""Filling ActionChunk messages from predicted actions (duck-typed: works on any object with the fields)."""
from __future__ import annotations

import numpy as np


def duration(seconds: float):
    from builtin_interfaces.msg import Duration

    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def time_msg(seconds: float):
    """builtin_interfaces/Time for a time in seconds (message stamps)."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def fill_action_chunk(msg, actions: np.ndarray, joint_names: list[str], stamp, period_s: float, *,
                      value: float = float("nan"), sequence: int = 0, source: str = "policy",
                      model_name: str = "", checkpoint_id: str = "", instruction: str = "",
                      latency_s: float = float("nan"), num_steps: int = 0):
    """Action i is due at stamp + i * period_s (action 0 = now at the observation time)."""
    from trajectory_msgs.msg import JointTrajectoryPoint

    a = np.asarray(actions, dtype=float)
    if a.ndim != 2 or a.shape[1] != len(joint_names):
        raise ValueError(f"actions must be (N, {len(joint_names)}), got {a.shape}")
    if not period_s > 0:
        raise ValueError(f"action period must be positive, got {period_s}")
    msg.header.stamp = stamp
    msg.trajectory.header.stamp = stamp
    msg.trajectory.joint_names = list(joint_names)
    msg.trajectory.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=duration(i * period_s))
                             for i, row in enumerate(a)]
    msg.value = float(value)
    msg.sequence = int(sequence)
    msg.source, msg.model_name, msg.checkpoint_id, msg.instruction = source, model_name, checkpoint_id, instruction
    msg.inference_latency_s = float(latency_s)
    msg.num_steps = int(num_steps)
    return msg
