"""Emulated Interbotix xs_sdk for both follower arms, without MuJoCo: the driver's topics, services and semantics.

For tests and dry runs of the executor's interbotix backend where the real robot is absent and the
sim is too heavy: per follower namespace it serves what nodes/xs_driver_server.py lists, publishes
/<ns>/joint_states (xs_sdk layout, reliable, depth 10) at ``rate_hz`` (the driver's update_rate: 100)
and moves the motors with the kinematic model of robot/xs_driver_emulation.py, starting in the
Interbotix follower bring-up modes (gripper linear_position).

Parameters: robot_config; pose (sleep | start: where the arms are at power-up, default sleep);
rate_hz; gripper_object_m (left-finger position, m, where an object between the fingers of both
grippers stops them closing; 0 = empty grippers).

Run: python -m cosmos_policy_ros.nodes.xs_sdk_emulator_node --ros-args -p pose:=start
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.nodes.common import declare, run_node
from cosmos_policy_ros.nodes.xs_driver_server import XsDriverServer
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.xs_driver_emulation import XsDriverEmulation


@dataclass
class _Arm:
    emu: XsDriverEmulation
    server: XsDriverServer
    pub: object
    last: float = field(default_factory=time.monotonic)


class XsSdkEmulatorNode(Node):
    def __init__(self):
        super().__init__("xs_sdk_emulator")
        self.robot = robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        pose = declare(self, "pose", "sleep")
        if pose not in ("sleep", "start"):
            raise ConfigError(f"parameter pose: expected sleep or start, got {pose!r}")
        rate = declare(self, "rate_hz", 100.0)
        if rate <= 0:
            raise ConfigError(f"parameter rate_hz: must be positive, got {rate}")
        self.object_finger = declare(self, "gripper_object_m", 0.0) or None
        initial = np.append(getattr(robot.config.poses, pose), robot.config.gripper.follower_joint_close)
        self.arms = {}
        for side in robot.config.arms:  # one callback group per arm: each real arm has an xs_sdk process of its own
            group = MutuallyExclusiveCallbackGroup()
            emu = XsDriverEmulation(robot, initial=initial)
            arm = _Arm(emu, XsDriverServer(self, robot, side, emu, callback_group=group),
                       self.create_publisher(JointState, robot.follower_topic(side, "joint_states"), 10))
            self.arms[side] = arm
            self.create_timer(1.0 / rate, lambda arm=arm: self._update(arm), callback_group=group)
        self.get_logger().info(f"emulated xs_sdk for {', '.join(robot.config.follower_namespaces.values())}: "
                               f"{pose} pose, gripper in linear_position (Interbotix follower bring-up modes)")

    def _update(self, arm: _Arm) -> None:
        """The driver's joint-state timer: move the motors, publish their state."""
        now = time.monotonic()
        dt, arm.last = min(now - arm.last, 0.1), now
        arm.emu.step(dt, self.object_finger)
        arm.server.flush_events()
        name, pos, vel, eff = arm.emu.joint_state()
        msg = JointState(name=name, position=pos, velocity=vel, effort=eff)
        msg.header.stamp = self.get_clock().now().to_msg()
        arm.pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(XsSdkEmulatorNode, args, executor_threads=2, name="xs_sdk_emulator")


if __name__ == "__main__":
    sys.exit(main())
