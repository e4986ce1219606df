"""Interbotix xs_sdk backend: the topics ALOHA itself publishes to (also served by our sim node).

Per follower arm: JointGroupCommand{name="arm", cmd=[6 rad]} on /<ns>/commands/joint_group and
JointSingleCommand{name="gripper", cmd=rad} on /<ns>/commands/joint_single, exactly as
Interbotix/aloha's real_env does with blocking=False. We publish the messages directly instead of
calling ``arm.set_joint_positions`` because that call silently drops out-of-limit targets and
sleeps; our safety filter has already clipped. Joint states come back as ROS topics (read() is None).

A gripper command in radians is only right once the driver runs the gripper in
current_based_position: ``open`` and ``prepare`` (before start / home) configure the driver through
its services (xs_driver_client.py: modes, gripper reboot, Current_Limit, read back) and refuse to
stream, with one line, when the driver is absent or does not take the modes. Torque off (only ever
at the sleep pose, motion.torque_off_after_sleep) goes through the driver's torque_enable service.
"""
from __future__ import annotations

import threading

import numpy as np

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.base import Backend
from cosmos_policy_ros.robot.backends.xs_driver_client import DriverError, XsDriverClient
from cosmos_policy_ros.robot.executor_config import InterbotixConfig

try:  # the real package on a robot; the project's generated stand-in in the dev venv
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("interbotix_xs_msgs is not importable: install the Interbotix ROS 2 packages "
                      "or build dev/interbotix_xs_msgs into the venv") from exc


class InterbotixBackend(Backend):
    name = "interbotix"

    def __init__(self, node, robot: AlohaRobot, config: InterbotixConfig | None = None, qos_depth: int = 10):
        self.node = node
        self.robot = robot
        self.config = config or InterbotixConfig()
        self.group_name = robot.config.arm_group_name
        self.gripper_name = robot.config.gripper_joint
        self.pubs = []
        for side in robot.config.arms:
            self.pubs.append((
                node.create_publisher(JointGroupCommand, robot.follower_topic(side, "joint_group"), qos_depth),
                node.create_publisher(JointSingleCommand, robot.follower_topic(side, "joint_single"), qos_depth),
            ))
        self.driver = XsDriverClient(node, robot, self.config) if self.config.configure_driver else None

    def open(self) -> None:
        """Wait for the driver and configure it (see the module docstring); DriverError: refuse to stream."""
        log = self.node.get_logger()
        if self.driver is None:
            log.warning(f"{self.name} backend: interbotix.configure_driver is false: the driver's modes stay as they "
                        "are (its bring-up gripper mode, linear_position, reads our radians as metres)")
            return
        self.driver.wait_for_driver()
        for line in self.driver.prepare(starting=False):
            log.warning(f"{self.name} backend: {line}")
        log.info(f"{self.name} backend: driver configured: arm '{self.group_name}' position, gripper "
                 f"current_based_position, Current_Limit {self.config.gripper_current_limit}")

    def prepare(self) -> np.ndarray | None:
        if self.driver is None:
            return None
        for line in self.driver.prepare(starting=True):
            self.node.get_logger().warning(f"{self.name} backend: {line}")
        q = self.driver.fresh_state()
        if q is None:
            raise DriverError("no joint states from the driver after configuring it (2 s)")
        return q

    def write(self, command: np.ndarray) -> None:
        for (group_pub, single_pub), (arm, gripper_rad) in zip(self.pubs, self.robot.driver_targets(command)):
            group_pub.publish(JointGroupCommand(name=self.group_name, cmd=[float(x) for x in arm]))
            single_pub.publish(JointSingleCommand(name=self.gripper_name, cmd=gripper_rad))

    def set_torque(self, enabled: bool) -> None:
        """Called from the loop thread: the service calls run in a thread of their own."""
        log = self.node.get_logger()
        if enabled or self.driver is None:
            log.warning(f"{self.name} backend: torque {'on' if enabled else 'off'} is not switched here")
            return

        def torque_off():
            try:
                self.driver.torque_off()
                log.info(f"{self.name} backend: arms and grippers torqued off at the sleep pose")
            except DriverError as exc:
                log.error(f"{self.name} backend: torque off failed: {exc}")

        threading.Thread(target=torque_off, name="xs-torque-off", daemon=True).start()

    def close(self) -> None:
        for group_pub, single_pub in self.pubs:
            self.node.destroy_publisher(group_pub)
            self.node.destroy_publisher(single_pub)
        self.pubs = []
        if self.driver is not None:
            self.driver.close()
            self.driver = None


class SimBackend(InterbotixBackend):
    """The MuJoCo sim node serves the same Interbotix topics and services, with the driver's semantics."""

    name = "sim"
