"""An ActionChunk filled by the policy reads back as the same chunk in the executor (no node, no DDS)."""
from __future__ import annotations

import math

import numpy as np
import pytest

msgs = pytest.importorskip("cosmos_policy_ros.msg")

from cosmos_policy_ros.nodes.chunk_msgs import chunk_from_msg, duration_msg, fill_action_chunk, seconds, time_msg  # noqa: E402
from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.robot.scheduler import ChunkError  # noqa: E402

ROBOT = AlohaRobot.from_yaml()
STAMP_S = 1_700_000_123.25


def make_chunk_msg(n: int = 6, period_s: float = 0.04, order: list[int] | None = None):
    """An ActionChunk whose action i, joint j is i + j/100, with joint names in ``order`` (default: robot order)."""
    names = ROBOT.joint_names
    order = order if order is not None else list(range(len(names)))
    actions = np.array([[i + j / 100 for j in order] for i in range(n)])
    return fill_action_chunk(msgs.ActionChunk(), actions, [names[j] for j in order], time_msg(STAMP_S), period_s,
                             value=0.5, sequence=7, source="planner", latency_s=0.3)


def test_time_helpers_round_trip_and_carry_the_nanoseconds():
    for s in (0.0, 12.25, STAMP_S, 0.9999999999):
        assert abs(seconds(time_msg(s)) - s) < 1e-6
    t = time_msg(0.9999999999)
    assert (t.sec, t.nanosec) == (1, 0)
    d = duration_msg(1.04)
    assert (d.sec, d.nanosec) == (1, 40_000_000)


def test_round_trip_restores_robot_joint_order_stamp_and_times():
    order = list(range(len(ROBOT.joint_names)))[::-1]  # the producer lists the joints backwards
    chunk = chunk_from_msg(make_chunk_msg(order=order), ROBOT.joint_names)
    expected = np.array([[i + j / 100 for j in range(14)] for i in range(6)])
    np.testing.assert_allclose(chunk.actions, expected)
    assert abs(chunk.stamp - STAMP_S) < 1e-6
    # times are absolute float seconds: about 0.2 us resolution at epoch times
    np.testing.assert_allclose(chunk.times - chunk.stamp, 0.04 * np.arange(6), atol=1e-6)
    assert (chunk.sequence, chunk.source, chunk.latency_s) == (7, "planner", 0.3)


def test_a_non_finite_action_is_one_chunk_error_line_naming_action_and_joint():
    msg = make_chunk_msg()
    msg.trajectory.points[3].positions[2] = math.nan
    with pytest.raises(ChunkError) as info:
        chunk_from_msg(msg, ROBOT.joint_names)
    assert str(info.value) == "chunk action 3 joint 2 is nan (non-finite)"


@pytest.mark.parametrize("spoil, words", [
    (lambda m: setattr(m.trajectory, "joint_names", []), "trajectory.joint_names is empty"),
    (lambda m: setattr(m.trajectory, "joint_names", list(m.trajectory.joint_names[:13])),
     "trajectory.joint_names do not match the robot (missing ['right_gripper'], got 13 names for 14 joints)"),
    (lambda m: setattr(m.trajectory.points[1], "positions", [0.0] * 13), "point 1 has 13 positions for 14 joint names"),
    (lambda m: setattr(m.trajectory, "points", []), "chunk has no actions"),
])
def test_an_unusable_message_is_one_chunk_error_line(spoil, words):
    msg = make_chunk_msg()
    spoil(msg)
    with pytest.raises(ChunkError) as info:
        chunk_from_msg(msg, ROBOT.joint_names)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_fill_refuses_actions_that_do_not_fit_the_joint_names():
    with pytest.raises(ValueError, match=r"actions must be \(N, 14\), got \(6, 13\)"):
        fill_action_chunk(msgs.ActionChunk(), np.zeros((6, 13)), ROBOT.joint_names, time_msg(0.0), 0.04)
