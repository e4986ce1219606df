"""Gripper units between the simulated fingers, the policy's 0..1 and the real robot's driver units.

The sim's fingers are slides in the sim's own metres (gym-aloha geometry); the real follower is
commanded in gripper-motor radians and reports motor radians plus finger metres whose open/close
values depend on the robot stack (config/robot/*.yaml). Everything meets in the normalised 0..1 space,
so whichever robot config is selected, a policy sees the same 0..1 values from sim and robot.
"""
from __future__ import annotations

import numpy as np

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.sim.world_config import SimGripperConfig


class SimGripperUnits:
    def __init__(self, robot: AlohaRobot, sim: SimGripperConfig):
        self.robot = robot
        self.sim = sim
        self._span = sim.finger_open - sim.finger_close

    # sim finger metres <-> policy 0..1
    def finger_to_normalized(self, finger_m):
        return (np.asarray(finger_m, dtype=float) - self.sim.finger_close) / self._span

    def normalized_to_finger(self, x):
        return np.asarray(x, dtype=float) * self._span + self.sim.finger_close

    def finger_velocity_to_normalized(self, v):
        return np.asarray(v, dtype=float) / self._span

    # robot driver units
    def command_rad_to_finger(self, rad):
        """JointSingleCommand 'gripper' (follower motor rad) -> sim finger target (m)."""
        return self.normalized_to_finger(self.robot.follower_joint_to_normalized(rad))

    def finger_to_command_rad(self, finger_m):
        return self.robot.normalized_to_follower_joint(self.finger_to_normalized(finger_m))

    def driver_reading(self, finger_m: float, finger_vel: float) -> tuple[float, float, float]:
        """(gripper motor rad, gripper motor rad/s, left_finger m in the robot's units)."""
        x = self.finger_to_normalized(finger_m)
        g = self.robot.config.gripper
        rad = float(self.robot.normalized_to_follower_joint(x))
        rad_s = float(self.finger_velocity_to_normalized(finger_vel) * (g.follower_joint_open - g.follower_joint_close))
        finger = float(self.robot.normalized_to_follower_finger(x))
        return rad, rad_s, finger
