"""The emulated xs_sdk driver (robot/xs_driver_emulation.py) behaves as the real one's code says."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.xs_driver_emulation import HW_OVERLOAD, GripperGeometry, XsDriverEmulation

ROBOT = AlohaRobot.from_yaml()
G = ROBOT.config.gripper
DT = 0.01


def make_driver(pose: str = "start") -> XsDriverEmulation:
    """A follower driver just after bring-up, arms at ``pose``, gripper at the closed joint constant."""
    return XsDriverEmulation(ROBOT, initial=np.append(getattr(ROBOT.config.poses, pose), G.follower_joint_close))


def run(drv: XsDriverEmulation, seconds: float, object_finger: float | None = None) -> None:
    for _ in range(int(round(seconds / DT))):
        drv.step(DT, object_finger)


def finger(drv: XsDriverEmulation) -> float:
    return drv.joint_state()[1][7]


def test_geometry_turns_the_joint_constants_into_the_finger_constants():
    geo = GripperGeometry()
    assert geo.finger_position(G.follower_joint_open) == pytest.approx(G.follower_position_open, abs=2e-4)
    assert geo.finger_position(G.follower_joint_close) == pytest.approx(G.follower_position_close, abs=2e-4)
    for rad in (0.3, 0.6197, 1.2):  # linear_position takes the distance between the fingers (2 x left finger)
        assert geo.motor_angle(2 * geo.finger_position(rad)) == pytest.approx(rad, abs=1e-4)
    assert math.isnan(geo.motor_angle(1.2))  # a radian value read as metres is outside acos' domain


def test_starts_in_the_interbotix_follower_bringup_modes_with_torque_on():
    drv = make_driver()
    arm, grip, everything = (drv.get_robot_info("group", "arm"), drv.get_robot_info("single", "gripper"),
                             drv.get_robot_info("group", "all"))
    assert (arm.mode, grip.mode, everything.mode) == ("position", "linear_position", "position")
    assert arm.joint_names == list(ROBOT.config.arm_joints) and arm.joint_ids == [1, 2, 4, 6, 7, 8]
    assert grip.joint_state_indices == [7] and (grip.joint_lower_limits, grip.joint_upper_limits) == ([0.021], [0.057])
    assert everything.name == ["all", "arm"]
    assert drv.get_motor_registers("group", "all", "Torque_Enable") == [1] * 7
    assert drv.get_robot_info("group", "legs") is None and "Group 'legs' does not exist" in drv.drain_events()[-1][1]


def test_radians_in_linear_position_close_the_gripper_and_current_based_position_obeys_them():
    drv = make_driver()
    drv.write_single("gripper", G.follower_joint_open)  # what our executor sends: rad
    run(drv, 1.0)
    assert finger(drv) < G.follower_position_close - 0.01  # the zero-radian goal: fingers closed past "closed"
    assert any("zero-radian goal" in line for _, line in drv.drain_events())
    drv.write_single("gripper", 2 * 0.05)  # metres are what that mode means
    run(drv, 1.0)
    assert finger(drv) == pytest.approx(0.05, abs=1e-4)
    drv.set_operating_modes("single", "gripper", "current_based_position")
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 1.0)
    assert finger(drv) == pytest.approx(G.follower_position_open, abs=2e-4)
    assert drv.get_robot_info("group", "all").mode == "position"  # a single request leaves the groups alone


def test_set_operating_modes_ends_with_torque_on_and_an_invalid_mode_is_left_on_the_group():
    drv = make_driver()
    drv.torque_enable("group", "arm", False)
    drv.set_operating_modes("group", "arm", "position")
    assert drv.get_motor_registers("group", "arm", "Torque_Enable") == [1] * 6  # as the driver: torque on again
    drv.set_operating_modes("group", "arm", "fast")
    assert drv.get_robot_info("group", "arm").mode == "fast"
    assert drv.get_motor_registers("group", "arm", "Operating_Mode") == [3] * 6  # the motors kept theirs
    assert not drv.write_group("arm", [0.0] * 6)
    assert any("Invalid command for argument 'mode'" in line for _, line in drv.drain_events())


def test_group_commands_of_the_wrong_length_and_goals_beyond_the_motor_limits_are_refused():
    drv = make_driver()
    assert not drv.write_group("arm", [0.0] * 5)
    before = drv.targets().copy()
    assert drv.write_group("arm", [0.0, -2.2, 0.0, 0.0, 0.0, 0.0])  # shoulder beyond 841 ticks
    run(drv, 0.5)
    assert drv.targets()[1] == before[1] and drv.targets()[0] == 0.0
    assert any("refused by the motor" in line for _, line in drv.drain_events())


def test_without_torque_commands_are_not_followed_the_arm_sags_and_torque_on_goes_to_the_stale_goal():
    drv = make_driver()
    start = np.array(ROBOT.config.poses.start)
    drv.torque_enable("group", "arm", False)
    drv.write_group("arm", list(start + 0.2))
    run(drv, 0.5)
    q = np.array(drv.joint_state()[1][:6])
    assert q[1] < start[1] - 0.1  # the shoulder falls toward its rest
    drv.torque_enable("group", "arm", True)
    run(drv, 2.0)
    assert np.allclose(drv.joint_state()[1][:6], start + 0.2, atol=1e-6)  # the goal written while it was off


def test_a_gripper_pushing_on_an_object_without_a_current_limit_faults_until_rebooted():
    drv = make_driver()
    obj = 0.05  # left-finger position where the object stops the fingers
    drv.set_operating_modes("single", "gripper", "position")  # no current limit (record_episodes leaves this)
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 0.5, obj)
    drv.write_single("gripper", G.follower_joint_close)
    run(drv, 0.5, obj)
    assert finger(drv) == pytest.approx(obj, abs=1e-4) and drv.get_motor_registers("single", "gripper",
                                                                                   "Hardware_Error_Status") == [0]
    run(drv, 1.0, obj)
    assert drv.get_motor_registers("single", "gripper", "Hardware_Error_Status") == [HW_OVERLOAD]
    assert any("overload" in line for _, line in drv.drain_events())
    drv.torque_enable("single", "gripper", True)  # refused while faulted
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 1.0, obj)
    assert finger(drv) == pytest.approx(obj, abs=1e-4) and drv.torque_mask()[6] == 0
    drv.reboot_motors("group", "arm", True, smart_reboot=True)  # smart: the arm has no fault, nothing happens
    assert drv.torque_mask()[6] == 0
    drv.reboot_motors("single", "gripper", True)
    assert drv.get_motor_registers("single", "gripper", "Hardware_Error_Status") == [0]
    run(drv, 0.2, obj)
    assert finger(drv) == pytest.approx(obj, abs=1e-4)  # after a reboot the goal is where it stands
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 1.0, obj)
    assert finger(drv) == pytest.approx(G.follower_position_open, abs=2e-4)


def test_current_limit_decides_whether_current_based_position_overloads():
    drv = make_driver()
    obj = 0.05
    drv.set_operating_modes("single", "gripper", "current_based_position")
    drv.set_motor_registers("single", "gripper", "Current_Limit", 200)  # torque on: EEPROM refused
    assert drv.get_motor_registers("single", "gripper", "Current_Limit") == [1193]
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 0.5, obj)
    drv.write_single("gripper", G.follower_joint_close)
    run(drv, 2.0, obj)
    assert drv.get_motor_registers("single", "gripper", "Hardware_Error_Status") == [HW_OVERLOAD]  # factory 3.2 A
    drv.reboot_motors("single", "gripper", False)
    drv.set_motor_registers("single", "gripper", "Current_Limit", 200)
    drv.set_motor_registers("single", "gripper", "current_limit", 300)  # upstream's spelling: no such item
    assert any("no control-table item 'current_limit'" in line for _, line in drv.drain_events())
    drv.torque_enable("single", "gripper", True)
    assert drv.get_motor_registers("single", "gripper", "Current_Limit") == [200]
    drv.write_single("gripper", G.follower_joint_open)
    run(drv, 0.5, obj)
    drv.write_single("gripper", G.follower_joint_close)
    run(drv, 3.0, obj)
    assert drv.get_motor_registers("single", "gripper", "Hardware_Error_Status") == [0]
    assert drv.joint_state()[3][6] == pytest.approx(200 * 2.69)  # effort: the limited current


def test_reboot_keeps_the_mode_and_restores_ram_registers():
    drv = make_driver()
    drv.set_operating_modes("single", "gripper", "current_based_position", "velocity", 100, 20)
    drv.set_motor_registers("single", "gripper", "Profile_Velocity", 100)
    assert drv.reboot_motors("single", "gripper", False) == 1
    assert drv.get_robot_info("single", "gripper").mode == "current_based_position"
    assert drv.get_motor_registers("single", "gripper", "Profile_Velocity") == [0]
    assert drv.get_motor_registers("single", "gripper", "Torque_Enable") == [0]
