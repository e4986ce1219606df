"""Interbotix xs_sdk backend: the topics ALOHA itself publishes to (also served by our sim node).

Per follower arm: JointGroupCommand{name="arm", cmd=[6 rad]} on /<ns>/commands/joint_group and
JointSingleCommand{name="gripper", cmd=rad} on /<ns>/commands/joint_single, exactly as
Interbotix/aloha's real_env does with blocking=False. We publish the messages directly instead of
calling ``arm.set_joint_positions`` because that call silently drops out-of-limit targets and
sleeps; our safety filter has already clipped. Joint states come back as ROS topics (read() is None).
Torque switching (xs_sdk ``torque_enable`` service) is left to the Interbotix tools: the executor
never needs it except the optional torque-off after sleep, which is logged as unsupported here.
"""
from __future__ import annotations

import numpy as np

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.base import Backend

try:  # the real package on a robot; the project's generated stand-in in the dev venv
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("interbotix_xs_msgs is not importable: install the Interbotix ROS 2 packages "
                      "or build dev/interbotix_xs_msgs into the venv") from exc


class InterbotixBackend(Backend):
    name = "interbotix"

    def __init__(self, node, robot: AlohaRobot, qos_depth: int = 10):
        self.node = node
        self.robot = robot
        self.group_name = robot.config.arm_group_name
        self.gripper_name = robot.config.gripper_joint
        self.pubs = []
        for side in robot.config.arms:
            self.pubs.append((
                node.create_publisher(JointGroupCommand, robot.follower_topic(side, "joint_group"), qos_depth),
                node.create_publisher(JointSingleCommand, robot.follower_topic(side, "joint_single"), qos_depth),
            ))

    def write(self, command: np.ndarray) -> None:
        q = np.asarray(command, dtype=float)
        for i, (group_pub, single_pub) in enumerate(self.pubs):
            arm = q[7 * i: 7 * i + 6]
            gripper_rad = float(self.robot.normalized_to_follower_joint(q[7 * i + 6]))
            group_pub.publish(JointGroupCommand(name=self.group_name, cmd=[float(x) for x in arm]))
            single_pub.publish(JointSingleCommand(name=self.gripper_name, cmd=gripper_rad))

    def set_torque(self, enabled: bool) -> None:
        self.node.get_logger().warning(
            f"interbotix backend: torque {'on' if enabled else 'off'} is not switched by the executor; "
            "use the xs_sdk torque_enable service / sleep.py")

    def close(self) -> None:
        for group_pub, single_pub in self.pubs:
            self.node.destroy_publisher(group_pub)
            self.node.destroy_publisher(single_pub)
        self.pubs = []


class SimBackend(InterbotixBackend):
    """The MuJoCo sim node subscribes to the same Interbotix topics."""

    name = "sim"
