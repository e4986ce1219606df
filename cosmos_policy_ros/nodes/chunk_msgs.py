"""The ActionChunk message both ways, and the ROS time <-> seconds conversions it needs.

Why one module: the policy and planner fill ActionChunk, the executor reads it back into a
``robot.scheduler.Chunk``; when the two directions lived in two folders, and the stamp helper in
three files, nothing kept them consistent. The functions work on message objects only (no node, no
rclpy), so a round trip is tested without starting ROS.

    ActionChunk.header.stamp                 observation time  -> Chunk.stamp
    trajectory.joint_names                   any order         -> robot joint order
    trajectory.points[i].positions           action i          -> Chunk.actions[i]
    trajectory.points[i].time_from_start     i * period_s      -> Chunk.times[i] = stamp + that
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from trajectory_msgs.msg import JointTrajectoryPoint

from cosmos_policy_ros.robot.scheduler import Chunk, ChunkError


def seconds(t) -> float:
    """Seconds of a builtin_interfaces Time or Duration (anything with ``sec`` and ``nanosec``)."""
    return t.sec + t.nanosec * 1e-9


def _sec_nanosec(s: float) -> tuple[int, int]:
    return divmod(int(round(s * 1e9)), 1_000_000_000)


def time_msg(s: float) -> Time:
    """builtin_interfaces/Time for a time in seconds (message stamps)."""
    sec, nanosec = _sec_nanosec(s)
    return Time(sec=sec, nanosec=nanosec)


def duration_msg(s: float) -> Duration:
    """builtin_interfaces/Duration for a span in seconds."""
    sec, nanosec = _sec_nanosec(s)
    return Duration(sec=sec, nanosec=nanosec)


def fill_action_chunk(msg, actions: np.ndarray, joint_names: list[str], stamp, period_s: float, *,
                      value: float = float("nan"), sequence: int = 0, source: str = "policy",
                      model_name: str = "", checkpoint_id: str = "", instruction: str = "",
                      latency_s: float = float("nan"), num_steps: int = 0):
    """Fill ActionChunk ``msg``: action i is due at stamp + i * period_s (action 0 = the observation time)."""
    a = np.asarray(actions, dtype=float)
    if a.ndim != 2 or a.shape[1] != len(joint_names):
        raise ValueError(f"actions must be (N, {len(joint_names)}), got {a.shape}")
    if not period_s > 0:
        raise ValueError(f"action period must be positive, got {period_s}")
    msg.header.stamp = stamp
    msg.trajectory.header.stamp = stamp
    msg.trajectory.joint_names = list(joint_names)
    msg.trajectory.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=duration_msg(i * period_s))
                             for i, row in enumerate(a)]
    msg.value = float(value)
    msg.sequence = int(sequence)
    msg.source, msg.model_name, msg.checkpoint_id, msg.instruction = source, model_name, checkpoint_id, instruction
    msg.inference_latency_s = float(latency_s)
    msg.num_steps = int(num_steps)
    return msg


def _joint_order(names: list[str], joint_names: list[str]) -> list[int]:
    """Index into ``names`` of each robot joint; ChunkError when the two sets differ."""
    if not names:
        raise ChunkError(f"trajectory.joint_names is empty (expected the {len(joint_names)} robot joint names)")
    if len(names) != len(joint_names) or sorted(names) != sorted(joint_names):
        missing = sorted(set(joint_names) - set(names))
        raise ChunkError(f"trajectory.joint_names do not match the robot (missing {missing[:3]}, "
                         f"got {len(names)} names for {len(joint_names)} joints)")
    return [names.index(n) for n in joint_names]


def chunk_from_msg(msg, joint_names: list[str]) -> Chunk:
    """ActionChunk -> Chunk in the robot's joint order; ChunkError (one line) when it cannot be executed."""
    names = list(msg.trajectory.joint_names)
    order = _joint_order(names, joint_names)
    points = msg.trajectory.points
    rows = []
    for i, p in enumerate(points):
        if len(p.positions) != len(names):
            raise ChunkError(f"point {i} has {len(p.positions)} positions for {len(names)} joint names")
        rows.append(np.asarray(p.positions, dtype=float)[order])
    actions = np.array(rows).reshape(len(points), len(joint_names))
    return Chunk.build(seconds(msg.header.stamp), [seconds(p.time_from_start) for p in points], actions,
                       dim=len(joint_names), sequence=int(msg.sequence), source=msg.source,
                       latency_s=float(msg.inference_latency_s))
