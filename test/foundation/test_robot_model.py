import numpy as np
import pytest

from cosmos_policy_ros.robot.aloha import AlohaRobot


@pytest.fixture(scope="module")
def robot():
    return AlohaRobot.from_yaml()


def test_joint_order_limits_and_poses(robot):
    assert robot.joint_names[:7] == ["left_waist", "left_shoulder", "left_elbow", "left_forearm_roll",
                                     "left_wrist_angle", "left_wrist_rotate", "left_gripper"]
    assert robot.joint_names[7] == "right_waist" and robot.gripper_indices == (6, 13)
    assert robot.lower[1] == pytest.approx(-1.85005)
    # grippers: the robot config's gripper_command_range (a squeeze past the calibrated close is allowed)
    assert (robot.lower[6], robot.upper[13]) == tuple(robot.config.gripper_command_range) == (-0.1, 1.0)
    start = robot.pose14("start", gripper=1.0)
    assert np.all(start >= robot.lower) and np.all(start <= robot.upper)
    assert robot.dt == pytest.approx(0.02)
    assert robot.follower_topic("right", "joint_single") == "/follower_right/commands/joint_single"
    assert robot.leader_topic("left", "joint_states") == "/leader_left/joint_states"


def test_gripper_conversions_match_the_interbotix_constants(robot):
    assert robot.normalized_to_follower_joint(1.0) == pytest.approx(1.6214)
    assert robot.normalized_to_follower_joint(0.0) == pytest.approx(0.6197)
    assert robot.follower_finger_to_normalized(0.0579) == pytest.approx(1.0)
    assert robot.leader_joint_to_normalized(-0.0552) == pytest.approx(0.0)
    x = np.linspace(-0.2, 1.2, 15)
    assert np.allclose(robot.follower_joint_to_normalized(robot.normalized_to_follower_joint(x)), x)
    assert np.allclose(robot.follower_finger_to_joint(robot.follower_joint_to_finger(1.1)), 1.1)


def test_driver_targets_are_what_the_interbotix_messages_carry(robot):
    """Per arm the 6 joint targets and the gripper motor angle, rounded to the messages' float32."""
    q = robot.pose14("start", gripper=1.0) + 1e-9    # not representable in float32
    q[13] = 0.0
    (left_arm, left_grip), (right_arm, right_grip) = robot.driver_targets(q)
    np.testing.assert_array_equal(left_arm, q[:6].astype(np.float32))
    np.testing.assert_array_equal(right_arm, q[7:13].astype(np.float32))
    assert not np.array_equal(left_arm, q[:6])
    assert left_grip == np.float32(robot.normalized_to_follower_joint(q[6])) == pytest.approx(1.6214, abs=1e-6)
    assert right_grip == pytest.approx(0.6197, abs=1e-6)


def test_state_from_driver_joint_states_by_name(robot):
    names = robot.driver_joint_names
    assert names == ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper",
                     "left_finger", "right_finger"]
    pos = [0.1, -0.9, 1.1, 0.0, -0.3, 0.2, 1.0, 0.0579, -0.0579]
    state = robot.arm_state_from_joint_state(list(reversed(names)), list(reversed(pos)))
    assert np.allclose(state, [0.1, -0.9, 1.1, 0.0, -0.3, 0.2, 1.0])
    with pytest.raises(ValueError, match="joint_states lacks joint 'left_finger'"):
        robot.arm_state_from_joint_state(names[:7], pos[:7])
